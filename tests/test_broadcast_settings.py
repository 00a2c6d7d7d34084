"""Migration 037 against tests/realtime_schema.py (with Supabase's RLS and API
grants): public and private channels, coalescing to R sends a second with its
trailing send (flush and `genisss relay`), `genisss broadcast`, up/down/up,
no realtime schema, and each check row's failure with its fix."""

import json
import os
import re
import signal
import subprocess
import threading
import time

import psycopg
import pytest
import realtime_schema
from conftest import apply_supabase_shape, clean_env, clone_db, migrate_up
from test_broadcast import VENV_BIN
from test_check import apply_fix, check, in_process

from genisss_cli.core import schema

PRIVATE = "broadcast private"
TRAILING = "broadcast trailing send"


def _build(dsn: str) -> None:
    apply_supabase_shape(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        realtime_schema.install(conn)
        realtime_schema.with_api_roles(conn)
    migrate_up(dsn)


@pytest.fixture
def rls_db(supabase_server):
    """Supabase's shape, a realtime schema with RLS and the API roles' grants, after migrate up."""
    yield from clone_db(supabase_server, "broadcast_rls", _build)


def settings(genisss, db) -> dict:
    r = genisss("broadcast", "--json", dsn=db.dsn)
    assert r.code == 0, r.err
    return json.loads(r.out)["settings"]


def messages(db, topic=schema.BROADCAST_TOPIC) -> list[tuple]:
    with db.connect() as conn:
        return conn.execute("SELECT private, payload FROM realtime.messages WHERE topic = %s "
                            "ORDER BY inserted_at, id", [topic]).fetchall()


def as_browser(db, role: str, topic: str, query: str, params=None):
    """query as Realtime runs a private channel's check: the role, its claims, realtime.topic."""
    with db.connect(autocommit=False) as conn:
        conn.execute("SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true), "
                     "set_config('realtime.topic', %s, true)", [role, json.dumps({"role": role}), topic])
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.rollback()


# -- public and private -------------------------------------------------------------------------


def test_public_by_default_then_private_and_back(rls_db, genisss):
    db = rls_db
    assert settings(genisss, db) == {"private": False, "max_per_second": None, "realtime": True,
                                     "policy": False, "cron_job": False, "relays": [], "last_sent_at": None}
    db.execute("SELECT increment_story_counter()")
    assert [m[0] for m in messages(db)] == [False]

    # Switching changes what browsers receive: it needs --yes from a script.
    r = genisss("broadcast", "--private", dsn=db.dsn)
    assert r.code == 2 and "needs a confirmation" in r.err and "--yes" in r.err, r.err
    assert settings(genisss, db)["private"] is False

    dry = json.loads(genisss("broadcast", "--private", "--dry-run", "--json", dsn=db.dsn).out)
    assert dry["changed"] and dry["dry_run"] and dry["after"]["private"]
    assert not settings(genisss, db)["policy"]

    r = genisss("broadcast", "--private", "--yes", "--json", dsn=db.dsn)
    assert r.code == 0, r.err
    change = json.loads(r.out)
    assert change["changed"] and change["before"]["private"] is False
    assert change["after"]["private"] is True and change["after"]["policy"] is True
    db.execute("SELECT increment_story_counter()")
    assert [m[0] for m in messages(db)] == [False, True]
    assert db.scalar("SELECT count(*) FROM pg_policy WHERE polrelid = 'realtime.messages'::regclass") == 1

    again = genisss("broadcast", "--private", "--json", dsn=db.dsn)  # idempotent: nothing flips, no question
    assert again.code == 0 and json.loads(again.out)["changed"] is False, again.err
    r = genisss("broadcast", "--private", dsn=db.dsn)
    assert "already private, every change: nothing to change" in r.out

    r = genisss("broadcast", "--public", "--yes", dsn=db.dsn)
    assert r.code == 0 and "channel private -> public" in r.out, r.out
    assert db.scalar("SELECT count(*) FROM pg_policy WHERE polrelid = 'realtime.messages'::regclass") == 0
    db.execute("SELECT increment_story_counter()")
    assert [m[0] for m in messages(db)] == [False, True, False]


def test_anon_reads_the_topic_and_nothing_else(rls_db, genisss):
    db = rls_db
    assert genisss("broadcast", "--private", "--yes", dsn=db.dsn).code == 0
    db.execute("SELECT increment_story_counter()")
    db.execute("""INSERT INTO realtime.messages (topic, extension, payload, event, private) VALUES
                  ('global_stats', 'presence', '{}', 'x', true), ('other', 'broadcast', '{}', 'x', true)""")
    read = "SELECT topic, extension FROM realtime.messages ORDER BY topic, extension"
    for role in ("anon", "authenticated"):
        assert as_browser(db, role, schema.BROADCAST_TOPIC, read) == [("global_stats", "broadcast")]
        assert as_browser(db, role, "other", read) == []
        assert as_browser(db, role, "", read) == []
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_browser(db, role, schema.BROADCAST_TOPIC, "INSERT INTO realtime.messages (topic, extension) "
                       "VALUES ('global_stats', 'broadcast') RETURNING 1")
        # UPDATE is granted (as on Supabase), but no policy lets a row be changed; DELETE is not
        assert as_browser(db, role, schema.BROADCAST_TOPIC,
                          "UPDATE realtime.messages SET payload = '{}' RETURNING 1") == []
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_browser(db, role, schema.BROADCAST_TOPIC, "DELETE FROM realtime.messages RETURNING 1")
        # and nothing of 037 is theirs
        for query in ("SELECT * FROM genisss.broadcast_settings", "SELECT genisss.broadcast_flush()",
                      "SELECT genisss.broadcast_apply()"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                as_browser(db, role, schema.BROADCAST_TOPIC, query)
    assert db.scalar("SELECT count(*) FROM realtime.messages") == 3
    _, rows = check(genisss, db)
    assert rows[PRIVATE]["status"] == "pass", rows[PRIVATE]
    assert "anon, authenticated may read topic 'global_stats'" in rows[PRIVATE]["detail"]
    assert db.scalar("SELECT count(*) FROM realtime.messages") == 3  # the probes were rolled back


# -- coalescing -----------------------------------------------------------------------------------


def burst(db, total: int, sessions: int = 4) -> float:
    """total increments, each its own transaction, from `sessions` connections at once; seconds."""
    each = total // sessions
    loop = f"""DO $$ BEGIN FOR i IN 1..{each} LOOP
                 PERFORM public.increment_story_counter(); COMMIT; END LOOP; END $$"""
    errors = []

    def run():
        try:
            with db.connect() as conn:
                conn.execute(loop)
        except Exception as exc:  # seen by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(sessions)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert not errors, errors
    return elapsed


def test_a_burst_at_r_5_stays_within_the_bound_and_the_flush_sends_the_last(rls_db, genisss):
    db = rls_db
    r = genisss("broadcast", "--max-per-second", "5", dsn=db.dsn)
    assert r.code == 0 and "rate every change -> at most 5 a second" in r.out, r.out
    assert "trailing send: none" in r.out  # nothing runs the flush yet: said at once
    start_ts = db.scalar("SELECT clock_timestamp()")
    seconds = burst(db, 2000)
    assert db.scalar("SELECT total_stories FROM global_stats") == 2000
    sent = messages(db)
    assert 1 <= len(sent) <= 5 * seconds + 2, (len(sent), seconds)
    totals = [m[1]["total_stories"] for m in sent]
    assert totals == sorted(totals)
    # the trailing send: once 1/R has passed, the flush sends the final value, once
    time.sleep(0.25)
    payload = db.scalar("SELECT genisss.broadcast_flush()")
    if totals[-1] != 2000:
        assert payload["total_stories"] == 2000
    assert messages(db)[-1][1]["total_stories"] == 2000
    assert db.scalar("SELECT genisss.broadcast_flush()") is None  # nothing new: nothing sent
    assert db.scalar("SELECT min(inserted_at) >= %s FROM realtime.messages", [start_ts.replace(tzinfo=None)])


def test_relay_sends_the_last_value_and_check_sees_it(rls_db, genisss, popen_genisss, tmp_path):
    db = rls_db
    assert genisss("broadcast", "--max-per-second", "5", dsn=db.dsn).code == 0
    _, rows = check(genisss, db)
    assert rows[TRAILING]["status"] == "fail" and rows[TRAILING]["fix"] == "genisss relay", rows[TRAILING]

    relay = popen_genisss("relay", "--json", "--interval", "0.2", dsn=db.dsn)
    started = json.loads(relay.stdout.readline())
    assert started["event"] == "started" and started["max_per_second"] == 5.0, started
    _, rows = check(genisss, db)
    assert rows[TRAILING]["status"] == "pass", rows[TRAILING]
    assert f"genisss relay (pid {started['pid']}, {schema.RELAY_APPLICATION})" in rows[TRAILING]["detail"]

    burst(db, 400)
    end = time.monotonic()
    while messages(db)[-1][1]["total_stories"] != 400 and time.monotonic() - end < 10:
        time.sleep(0.05)
    delay = time.monotonic() - end
    assert messages(db)[-1][1]["total_stories"] == 400, f"not sent {delay:.1f} s after the burst"
    relay.send_signal(signal.SIGTERM)
    out, err = relay.communicate(timeout=30)
    assert relay.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines[-1]
    assert summary["event"] == "stopped" and summary["reason"] == "terminated", summary
    relayed = [line for line in lines if line["event"] == "sent"]
    assert summary["sent"] == len(relayed) >= 1 and summary["lost"] == 0
    assert summary["last"] == {"total_stories": 400, "total_audio_generations": 0}
    # honest: what it says it sent is in realtime.messages
    totals = [m[1]["total_stories"] for m in messages(db)]
    assert all(line["total_stories"] in totals for line in relayed)
    _, rows = check(genisss, db)
    assert rows[TRAILING]["status"] == "fail"  # the relay is gone, and check says so


def test_relay_text_once_and_its_refusals(rls_db, supabase_migrated_db, genisss):
    db = rls_db
    r = genisss("relay", "--once", dsn=db.dsn)
    assert r.code == 0, r.err
    assert "no limit set" in r.out and "relay stopped (once)" in r.out and "0 sent" in r.out
    genisss("broadcast", "--max-per-second", "5", dsn=db.dsn)
    db.execute("SELECT increment_story_counter()")  # held back: the limit counts from its setting
    db.execute("SELECT increment_story_counter()")
    time.sleep(0.25)
    r = genisss("relay", "--once", dsn=db.dsn)
    assert "sent total_stories 2, total_audio_generations 0" in r.out and "1 sent" in r.out, r.out
    r = genisss("relay", "--once", "--json", dsn=supabase_migrated_db.dsn)  # no realtime.send()
    assert r.code == 5 and "nothing to relay" in json.loads(r.err)["error"], r.err


# -- migrate: chosen at migrate time, up/down/up, no realtime ------------------------------------------


def test_migrate_up_chooses_the_settings(supabase_db, genisss):
    db = supabase_db
    with db.connect() as conn:
        realtime_schema.install(conn)
        realtime_schema.with_api_roles(conn)
    r = genisss("migrate", "up", "--broadcast-private", "--broadcast-rate", "2", "--json", dsn=db.dsn)
    assert r.code == 0, r.err
    migrated, change = (json.loads(line) for line in r.out.splitlines())
    assert migrated["after"] == schema.HEAD
    assert change["after"]["private"] is True and change["after"]["max_per_second"] == 2.0
    assert change["after"]["policy"] is True
    r = genisss("migrate", "up", "--broadcast-rate", "0", dsn=db.dsn)
    assert r.code == 2 and "must be above 0" in r.err
    r = genisss("migrate", "up", "--broadcast-no-limit", "--broadcast-rate", "3", dsn=db.dsn)
    assert r.code == 2 and "exclude each other" in r.err
    assert settings(genisss, db)["max_per_second"] == 2.0


def test_contradicting_broadcast_options_stop_migrate_up_before_it_migrates(fresh_db, genisss):
    r = genisss("migrate", "up", "--broadcast-no-limit", "--broadcast-rate", "3", dsn=fresh_db.dsn)
    assert r.code == 2 and r.out == ""
    assert r.err == ("genisss: error: --broadcast-rate and --broadcast-no-limit exclude each other\n")
    assert fresh_db.scalar("SELECT to_regclass('public.alembic_version')") is None  # nothing migrated
    r = genisss("broadcast", "--no-limit", "--max-per-second", "3", dsn=fresh_db.dsn)
    assert r.code == 2 and "--max-per-second and --no-limit exclude each other" in r.err


def test_up_down_up_removes_exactly_what_037_added(rls_db, genisss):
    db = rls_db
    genisss("broadcast", "--private", "--max-per-second", "5", "--yes", dsn=db.dsn)
    plan = json.loads(genisss("migrate", "down", "--dry-run", "--json", dsn=db.dsn).out)
    assert plan["reverts"] == [schema.SETTINGS]
    assert any("broadcast_settings" in d for d in plan["drops"])
    r = genisss("migrate", "down", "--yes", dsn=db.dsn)
    assert r.code == 0, r.err
    assert db.scalar("SELECT version_num FROM alembic_version") == schema.HINT
    assert db.scalar("SELECT to_regnamespace('genisss')") is None
    assert db.scalar("SELECT count(*) FROM pg_policy WHERE polrelid = 'realtime.messages'::regclass") == 0
    assert db.scalar("SELECT to_regprocedure('genisss.broadcast_flush(boolean)')") is None
    # 035's function again: public, every change
    db.execute("SELECT increment_story_counter()")
    db.execute("SELECT increment_story_counter()")
    assert [m[0] for m in messages(db)] == [False, False]
    assert "genisss.broadcast_settings" not in db.scalar(
        "SELECT prosrc FROM pg_proc WHERE oid = 'public.global_stats_broadcast()'::regprocedure")

    assert genisss("migrate", "up", dsn=db.dsn).code == 0
    assert settings(genisss, db)["private"] is False  # the defaults: the settings went with 037
    db.execute("SELECT increment_story_counter()")
    assert [m[0] for m in messages(db)] == [False, False, False]


def test_without_realtime_037_makes_the_settings_only_and_its_rerun_installs(supabase_db, genisss,
                                                                             tmp_path):
    db = supabase_db
    r = genisss("migrate", "up", "--broadcast-private", dsn=db.dsn)
    assert r.code == 0, r.err
    assert "no realtime.send() here" in r.out  # 035's notice, and the broadcast view's
    assert db.scalar("SELECT private FROM genisss.broadcast_settings")
    assert db.scalar("SELECT to_regprocedure('genisss.broadcast_flush(boolean)')") is None
    assert db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'global_stats_broadcast'") == 0
    assert db.scalar("SELECT to_regnamespace('realtime')") is None
    for role in ("anon", "authenticated", "service_role"):
        assert not db.scalar("SELECT has_schema_privilege(%s, 'genisss', 'USAGE')", [role])
    r = genisss("broadcast", "--max-per-second", "3", dsn=db.dsn)  # no question: nothing is broadcast
    assert r.code == 0 and "nothing is broadcast until Realtime exists" in r.out, r.out
    _, rows = check(genisss, db)
    assert rows[PRIVATE]["status"] == rows[TRAILING]["status"] == "skipped"

    # Realtime appears: the rerun 035's notice gives installs the trigger, the flush, the policy.
    with db.connect() as conn:
        realtime_schema.install(conn)
        realtime_schema.with_api_roles(conn)
    rerun = f'genisss migrate sql up --from {schema.WATCHED} | psql -v ON_ERROR_STOP=1 "$DATABASE_URL"'
    env = clean_env(tmp_path, DATABASE_URL=db.dsn, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    subprocess.run(["bash", "-o", "pipefail", "-c", rerun], env=env, cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    assert db.scalar("SELECT version_num FROM alembic_version") == schema.HEAD
    got = settings(genisss, db)
    assert got["private"] and got["policy"] and got["max_per_second"] == 3.0 and got["realtime"]
    db.execute("SELECT increment_story_counter()")
    assert [(m[0], m[1]["total_stories"]) for m in messages(db)] == [(True, 1)]


# -- check: each failure, and its fix ---------------------------------------------------------------

PRIVATE_BREAKS = {
    "policy dropped": "DROP POLICY genisss_global_stats_read ON realtime.messages",
    "policy narrowed to nothing": "ALTER POLICY genisss_global_stats_read ON realtime.messages USING (false)",
    "row level security off": "ALTER TABLE realtime.messages DISABLE ROW LEVEL SECURITY",
    "a policy opens every topic": ("CREATE POLICY open_read ON realtime.messages FOR SELECT TO anon "
                                   "USING (true)"),
    "a policy lets anon write": ("CREATE POLICY anon_write ON realtime.messages FOR INSERT TO anon "
                                 "WITH CHECK (true)"),
    "anon may not select": "REVOKE SELECT ON TABLE realtime.messages FROM anon",
}


@pytest.mark.parametrize("what", list(PRIVATE_BREAKS))
def test_private_break_fails_its_row_and_the_fix_repairs_it(what, rls_db, genisss, tmp_path):
    db = rls_db
    assert genisss("broadcast", "--private", "--yes", dsn=db.dsn).code == 0
    assert in_process(db)[PRIVATE].status == "pass"
    db.execute(PRIVATE_BREAKS[what])
    code, rows = check(genisss, db)
    row = rows[PRIVATE]
    assert code == 1 and row["status"] == "fail" and row["fix"], row
    apply_fix(db, row["fix"], tmp_path)
    row = in_process(db)[PRIVATE]
    assert row.status == "pass", row


def test_trailing_send_with_pg_cron_is_scheduled_by_the_fix(rls_db, genisss, tmp_path):
    """pg_cron cannot run here: a stand-in with its interface (cron.schedule, cron.unschedule,
    cron.job) shows that 037 schedules the flush while a limit is set, and that check's fix does."""
    db = rls_db
    db.execute("CREATE SCHEMA cron")
    db.execute("CREATE TABLE cron.job (jobid serial, jobname text UNIQUE, schedule text, command text, "
               "active boolean DEFAULT true)")
    db.execute("""CREATE FUNCTION cron.schedule(name text, sched text, cmd text) RETURNS bigint
                  LANGUAGE sql AS $$ INSERT INTO cron.job (jobname, schedule, command)
                  VALUES (name, sched, cmd)
                  ON CONFLICT (jobname) DO UPDATE SET schedule = sched, command = cmd RETURNING jobid $$""")
    db.execute("""CREATE FUNCTION cron.unschedule(name text) RETURNS boolean
                  LANGUAGE sql AS $$ DELETE FROM cron.job WHERE jobname = name RETURNING true $$""")
    r = genisss("broadcast", "--max-per-second", "2", "--json", dsn=db.dsn)
    assert json.loads(r.out)["after"]["cron_job"] is True, r.out
    assert db.connect().execute("SELECT schedule, command FROM cron.job").fetchall() == [
        ("1 seconds", "SELECT genisss.broadcast_flush()")]
    _, rows = check(genisss, db)
    assert rows[TRAILING]["status"] == "pass", rows[TRAILING]
    assert "pg_cron job genisss_broadcast_flush" in rows[TRAILING]["detail"]
    db.execute("DELETE FROM cron.job")
    _, rows = check(genisss, db)
    assert rows[TRAILING]["status"] == "fail" and rows[TRAILING]["fix"] == "SELECT genisss.broadcast_apply();"
    apply_fix(db, rows[TRAILING]["fix"], tmp_path)
    assert in_process(db)[TRAILING].status == "pass"
    genisss("broadcast", "--no-limit", dsn=db.dsn)
    assert db.scalar("SELECT count(*) FROM cron.job") == 0  # the job exists only while a limit is set


def test_live_passes_on_a_private_coalesced_broadcast(rls_db, genisss):
    db = rls_db
    genisss("broadcast", "--private", "--max-per-second", "1", "--yes", dsn=db.dsn)
    db.execute("SELECT increment_story_counter()")  # a send just now: --live waits out 1/R
    _, rows = check(genisss, db, "--live")
    row = rows["live: broadcast"]
    assert row["status"] == "pass" and ", private, in realtime.messages_" in row["detail"], row


def test_help_has_examples(genisss):
    for command in ("broadcast", "relay"):
        r = genisss(command, "--help")
        assert r.code == 0 and re.search(r"Examples?: genisss " + command, r.out), r.out
