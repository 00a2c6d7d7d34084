"""genisss check on real PostgreSQL: all pass after migrate up in the Supabase
shape; each thing broken in turn fails its own row, and the fix it prints
repairs it; --live sees both paths and never leaves a replication slot."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import realtime_schema
from conftest import clean_env, require_plain

from genisss_cli.conn import db as dbmod
from genisss_cli.core import checks
from genisss_cli.core.checks import model

VENV_BIN = Path(sys.executable).parent

ROWS = ["connection", "migration", "table", "functions", "privileges: PUBLIC", "privileges: anon",
        "privileges: authenticated", "privileges: service_role", "write paths",
        "realtime visibility", "publication",
        "wal_level", "trigger", "broadcast", "broadcast private", "broadcast trailing send",
        "drift", "notify queue", "replication slot"]


def check(genisss, testdb, *args, dsn=None, env=None):
    """Run `genisss check --json`: (exit code, {name: row})."""
    r = genisss("check", "--json", *args, dsn=dsn or testdb.dsn, env=env)
    assert r.err == "", r.err
    data = json.loads(r.out)
    assert set(data) == {"database", "checks", "summary"}
    for row in data["checks"]:
        assert set(row) == {"name", "status", "detail", "fix"}
        assert row["status"] in ("pass", "warn", "fail", "skipped")
    return r.code, {row["name"]: row for row in data["checks"]}


def failing(rows) -> set[str]:
    return {name for name, row in rows.items() if row["status"] == "fail"}


def expected_failures(server) -> set[str]:
    """What fails on a correct database: wal_level, where the server is not logical."""
    return set() if server.wal_logical else {"wal_level"}


def apply_fix(testdb, fix: str, tmp_path) -> None:
    """Run a printed fix as the operator would: SQL through the database, or a
    genisss/psql command line in a shell with DATABASE_URL set."""
    if fix == model.REPAIR and subprocess.run([VENV_BIN / "genisss", "migrate", "repair", "--help"],
                                              capture_output=True).returncode != 0:
        pytest.skip("`genisss migrate repair` is not in this build (another branch builds it)")
    if fix.startswith("genisss "):
        env = clean_env(tmp_path, DATABASE_URL=testdb.dsn,
                        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        subprocess.run(["bash", "-o", "pipefail", "-c", fix], env=env, cwd=tmp_path, check=True,
                       capture_output=True, timeout=120)
    else:
        testdb.execute(fix)


def slots(testdb) -> list[str]:
    with testdb.server.admin() as conn:
        return [r[0] for r in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", [testdb.name])]


def wait_for(predicate, seconds: float = 30) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def as_dicts(rows) -> dict:
    return {name: dataclasses.asdict(row) for name, row in rows.items()}


def in_process(testdb, **options):
    results = checks.run(dbmod.Database(testdb.dsn, "test", False), checks.Options(**options)).results
    return {r.name: r for r in results}


# -- a correct database -----------------------------------------------------------------


def test_supabase_shape_after_migrate_up_passes(supabase_migrated_db, genisss):
    code, rows = check(genisss, supabase_migrated_db)
    assert list(rows) == ROWS
    bad = expected_failures(supabase_migrated_db.server)
    assert failing(rows) == bad
    assert code == (1 if bad else 0)
    assert rows["replication slot"]["status"] == "skipped"
    assert rows["broadcast"]["status"] == "skipped"  # no realtime schema here
    assert rows["broadcast"]["detail"] == "Broadcast: not available here (no realtime.send())"
    others = set(ROWS) - bad - {"replication slot", "broadcast", "broadcast private",
                                "broadcast trailing send"}
    assert {n: rows[n]["status"] for n in others} == dict.fromkeys(others, "pass")
    assert "can LISTEN" in rows["connection"]["detail"]
    if bad:
        assert "ALTER SYSTEM SET wal_level = logical" in rows["wal_level"]["fix"]


def test_live_sees_both_paths_and_leaves_no_slot(supabase_migrated_db, genisss):
    db = supabase_migrated_db
    before = db.scalar("SELECT total_stories + total_audio_generations FROM global_stats")
    _, rows = check(genisss, db, "--live")
    assert rows["live: LISTEN"]["status"] == "pass", rows["live: LISTEN"]
    assert "after COMMIT" in rows["live: LISTEN"]["detail"]
    pub = rows["live: publication"]
    if db.server.wal_logical:
        assert pub["status"] == "pass", pub
        assert "UPDATE of public.global_stats decoded from supabase_realtime" in pub["detail"]
    else:
        assert pub["status"] == "skipped" and "wal_level" in pub["detail"]
    assert slots(db) == []
    assert db.scalar("SELECT total_stories + total_audio_generations FROM global_stats") == before


def test_table_output_for_people(supabase_migrated_db, genisss):
    supabase_migrated_db.execute("GRANT EXECUTE ON FUNCTION increment_story_counter() TO anon")
    r = genisss("check", dsn=supabase_migrated_db.dsn)
    assert r.code == 1 and r.err == ""
    for word in ("check", "status", "found", "fix", "privileges: anon", "fail"):
        assert word in r.out
    assert "REVOKE EXECUTE ON FUNCTION public.increment_story_counter() FROM anon" in " ".join(
        r.out.split())


def test_check_imports_neither_alembic_nor_sqlalchemy(supabase_migrated_db, tmp_path):
    script = ("import sys; from genisss_cli import cli; code = cli.run(['check', '--json']); "
              "sys.stderr.write(repr(sorted({m.split('.')[0] for m in sys.modules} "
              "& {'alembic', 'sqlalchemy'})))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=clean_env(tmp_path, DATABASE_URL=supabase_migrated_db.dsn))
    assert json.loads(proc.stdout)["checks"]
    assert proc.stderr == "[]"


# -- break each thing in turn --------------------------------------------------------------

BREAKS = {
    "a view anon may update": ("CREATE VIEW public.gs_view AS SELECT * FROM global_stats; "
                               "GRANT SELECT, UPDATE ON public.gs_view TO anon", "write paths"),
    "a definer function anon may call": (
        "CREATE FUNCTION public.reset_counter() RETURNS void LANGUAGE sql SECURITY DEFINER "
        "SET search_path = '' AS 'UPDATE public.global_stats SET total_stories = 0'", "write paths"),
    "a plpgsql definer function authenticated may call": (
        "CREATE FUNCTION public.bump_twice() RETURNS void LANGUAGE plpgsql SECURITY DEFINER "
        "SET search_path = '' AS $$ BEGIN PERFORM public.increment_story_counter(); END $$; "
        "REVOKE EXECUTE ON FUNCTION public.bump_twice() FROM PUBLIC; "
        "GRANT EXECUTE ON FUNCTION public.bump_twice() TO authenticated", "write paths"),
    "drop the policy": ("DROP POLICY global_stats_read ON global_stats", "realtime visibility"),
    "disable RLS": ("ALTER TABLE global_stats DISABLE ROW LEVEL SECURITY", "realtime visibility"),
    "drop the primary key": ("ALTER TABLE global_stats DROP CONSTRAINT global_stats_pkey",
                             "realtime visibility"),
    "anon loses SELECT": ("REVOKE SELECT ON global_stats FROM anon", "realtime visibility"),
    "grant EXECUTE to anon": ("GRANT EXECUTE ON FUNCTION increment_story_counter() TO anon",
                              "privileges: anon"),
    "anon may update a column": ("GRANT UPDATE (total_stories) ON global_stats TO anon",
                                 "privileges: anon"),
    "authenticated may truncate": ("GRANT TRUNCATE ON global_stats TO authenticated",
                                   "privileges: authenticated"),
    "anon owns a function": ("ALTER FUNCTION increment_story_counter() OWNER TO anon", "privileges: anon"),
    "grant EXECUTE to PUBLIC": ("GRANT EXECUTE ON FUNCTION sync_story_counter() TO PUBLIC",
                                "privileges: PUBLIC"),
    "service_role cannot execute": ("REVOKE EXECUTE ON FUNCTION increment_audio_counter() "
                                    "FROM service_role", "privileges: service_role"),
    "remove the table from the publication": (
        "ALTER PUBLICATION supabase_realtime DROP TABLE global_stats", "publication"),
    "publication without UPDATE": (
        "ALTER PUBLICATION supabase_realtime SET (publish = 'insert, delete')", "publication"),
    "drop the publication": ("DROP PUBLICATION supabase_realtime", "publication"),
    "drop the trigger": ("DROP TRIGGER global_stats_notify ON global_stats", "trigger"),
    "disable the trigger": ("ALTER TABLE global_stats DISABLE TRIGGER global_stats_notify", "trigger"),
    "add a second row": ("ALTER TABLE global_stats DROP CONSTRAINT global_stats_singleton; "
                         "INSERT INTO global_stats (id) VALUES ('second')", "table"),
    "delete the row": ("DELETE FROM global_stats", "table"),
    "change a column type": ("ALTER TABLE global_stats ALTER COLUMN total_audio_generations TYPE integer",
                             "table"),
    "set a mutable search_path": ("ALTER FUNCTION increment_story_counter() RESET search_path",
                                  "functions"),
    "SECURITY INVOKER": ("ALTER FUNCTION sync_story_counter() SECURITY INVOKER", "functions"),
    "drop a function": ("DROP FUNCTION increment_audio_counter()", "functions"),
}


@pytest.mark.parametrize("what", list(BREAKS))
def test_break_fails_its_row_and_the_fix_repairs_it(what, supabase_migrated_db, genisss, tmp_path):
    db = supabase_migrated_db
    sql, row = BREAKS[what]
    db.execute("INSERT INTO user_stories (title) SELECT 's' FROM generate_series(1, 3)")
    db.execute("SELECT * FROM sync_story_counter()")
    db.execute(sql)
    baseline = expected_failures(db.server)

    code, rows = check(genisss, db)
    assert code == 1
    assert failing(rows) == {row} | baseline, rows
    broken = rows[row]
    assert broken["detail"] and broken["fix"], broken
    assert {r["status"] for r in rows.values()} <= {"pass", "fail", "skipped"}

    apply_fix(db, broken["fix"], tmp_path)
    rows = as_dicts(in_process(db))  # in process: quicker, the same rows
    assert failing(rows) == baseline, rows
    assert rows[row]["status"] == "pass"
    assert rows["drift"]["status"] == "pass"  # no fix moved the counter
    assert db.scalar("SELECT total_stories FROM global_stats") == 3


# -- broadcast (migration 035), against tests/realtime_schema.py -----------------------------


def broadcasts(testdb) -> int:
    return testdb.scalar("SELECT count(*) FROM realtime.messages WHERE topic = 'global_stats'")


def test_broadcast_passes_where_realtime_exists(broadcast_db, genisss):
    db = broadcast_db
    code, rows = check(genisss, db)
    assert failing(rows) == expected_failures(db.server), rows
    row = rows["broadcast"]
    assert row["status"] == "pass", row
    assert "global_stats_broadcast: AFTER UPDATE FOR EACH ROW, enabled" in row["detail"]
    assert "now() goes to realtime.messages_" in row["detail"]
    assert db.scalar("SELECT count(*) FROM realtime.messages") == 0  # the probe was rolled back


def _owner_name() -> str:
    """A role name that needs quoting, so that the printed fixes must quote it."""
    return f"Gt bc {uuid.uuid4().hex[:8]}"


def _owned_by(db, role: str) -> None:
    """Hand the broadcast function to a role that is not a superuser, with what it
    needs: BYPASSRLS too, as Supabase's postgres has (realtime.messages has row
    level security on and no INSERT policy)."""
    db.execute(f'CREATE ROLE "{role}" NOLOGIN BYPASSRLS')
    db.execute(f'GRANT USAGE ON SCHEMA realtime TO "{role}"')
    db.execute(f'GRANT INSERT ON TABLE realtime.messages TO "{role}"')
    db.execute(f'GRANT USAGE ON SCHEMA genisss TO "{role}"')  # 037's settings, read by the trigger
    db.execute(f'GRANT SELECT, UPDATE ON TABLE genisss.broadcast_settings TO "{role}"')
    db.execute(f'ALTER FUNCTION public.global_stats_broadcast() OWNER TO "{role}"')


def _drop_role(db, role: str) -> None:
    with db.server.admin() as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            with db.connect() as conn:
                conn.execute(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
                conn.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')


BROADCAST_BREAKS = {
    "drop the broadcast trigger": "DROP TRIGGER global_stats_broadcast ON global_stats",
    "drop the broadcast function": "DROP FUNCTION global_stats_broadcast() CASCADE",
    "disable the broadcast trigger": "ALTER TABLE global_stats DISABLE TRIGGER global_stats_broadcast",
    "replica-only broadcast trigger": ("ALTER TABLE global_stats "
                                       "ENABLE REPLICA TRIGGER global_stats_broadcast"),
    "owner may not insert": 'REVOKE INSERT ON TABLE realtime.messages FROM "{role}"',
    "owner may not use realtime": 'REVOKE USAGE ON SCHEMA realtime FROM "{role}"',
    # RLS on, no INSERT policy (as in Realtime's own schema): the grant alone is not enough
    "owner under row level security": 'ALTER ROLE "{role}" NOBYPASSRLS',
    "owner may not read the settings": 'REVOKE USAGE ON SCHEMA genisss FROM "{role}"',
    "no partition for today": None,  # realtime_schema.drop_partition
}


@pytest.mark.parametrize("what", list(BROADCAST_BREAKS))
def test_broadcast_break_fails_its_row_and_the_fix_repairs_it(what, broadcast_db, genisss, tmp_path):
    db = broadcast_db
    role = _owner_name()
    sql = BROADCAST_BREAKS[what]
    try:
        if sql and "{role}" in sql:
            _owned_by(db, role)
            assert in_process(db)["broadcast"].status == "pass"
            sql = sql.format(role=role)
        if sql:
            db.execute(sql)
        else:
            with db.connect() as conn:
                realtime_schema.drop_partition(conn, 0)
        baseline = expected_failures(db.server)

        code, rows = check(genisss, db)
        assert code == 1
        assert failing(rows) == {"broadcast"} | baseline, rows
        broken = rows["broadcast"]
        assert broken["detail"] and broken["fix"], broken
        assert {r["status"] for r in rows.values()} <= {"pass", "fail", "skipped"}

        apply_fix(db, broken["fix"], tmp_path)
        rows = as_dicts(in_process(db))
        assert failing(rows) == baseline, rows
        assert rows["broadcast"]["status"] == "pass", rows["broadcast"]
        before = broadcasts(db)
        db.execute("SELECT increment_story_counter()")  # and a change is broadcast again
        assert broadcasts(db) == before + 1
    finally:
        _drop_role(db, role)


def test_live_sees_the_broadcast(broadcast_db, genisss):
    db = broadcast_db
    before = db.scalar("SELECT total_stories + total_audio_generations FROM global_stats")
    _, rows = check(genisss, db, "--live")
    row = rows["live: broadcast"]
    assert row["status"] == "pass", row
    assert "topic 'global_stats', event 'counter', public, in realtime.messages_" in row["detail"]
    assert broadcasts(db) == 1  # --live's one harmless change, sent like any other
    assert db.scalar("SELECT total_stories + total_audio_generations FROM global_stats") == before


def test_live_broadcast_fails_with_the_warning_send_raised(broadcast_db, genisss):
    db = broadcast_db
    with db.connect() as conn:
        realtime_schema.drop_partition(conn, 0)
    _, rows = check(genisss, db, "--live")
    row = rows["live: broadcast"]
    assert row["status"] == "fail" and "WARNING" in row["detail"], row
    assert "no partition of relation" in row["detail"]
    assert rows["broadcast"]["status"] == "fail"  # and the static row says how to fix it


def test_live_broadcast_fails_when_the_trigger_is_disabled(broadcast_db, genisss):
    db = broadcast_db
    db.execute("ALTER TABLE global_stats DISABLE TRIGGER global_stats_broadcast")
    _, rows = check(genisss, db, "--live")
    row = rows["live: broadcast"]
    assert row["status"] == "fail" and "no message on topic 'global_stats'" in row["detail"], row
    assert broadcasts(db) == 0


def test_live_broadcast_is_skipped_without_realtime(supabase_migrated_db, genisss):
    _, rows = check(genisss, supabase_migrated_db, "--live")
    assert rows["live: broadcast"]["status"] == "skipped"
    assert rows["live: broadcast"]["detail"] == "Broadcast: not available here (no realtime.send())"


def test_broadcast_probe_that_cannot_insert_is_a_warning_that_says_why(broadcast_db):
    """A realtime.messages unlike the one 035 expects (a column the insert does not fill)."""
    db = broadcast_db
    db.execute("ALTER TABLE realtime.messages ADD COLUMN extra text NOT NULL DEFAULT 'x'")
    db.execute("ALTER TABLE realtime.messages ALTER COLUMN extra DROP DEFAULT")
    row = in_process(db)["broadcast"]
    assert row.status == "warn" and "the probe insert failed" in row.detail, row
    assert '"extra"' in row.detail


def test_broadcast_owner_without_usage_fails_the_increment(broadcast_db):
    """Why the broadcast row checks USAGE and EXECUTE too: there the trigger's own
    call fails (realtime.send() cannot turn that into a warning)."""
    db = broadcast_db
    role = _owner_name()
    try:
        _owned_by(db, role)
        db.execute(f'REVOKE USAGE ON SCHEMA realtime FROM "{role}"')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("SELECT increment_story_counter()")
        assert db.scalar("SELECT total_stories FROM global_stats") == 0
    finally:
        _drop_role(db, role)


def test_drift_is_a_warning_and_strict_fails_on_it(supabase_migrated_db, genisss, tmp_path):
    db = supabase_migrated_db
    db.execute("UPDATE global_stats SET total_stories = total_stories + 2")
    code, rows = check(genisss, db)
    assert rows["drift"]["status"] == "warn"
    assert "drift +2" in rows["drift"]["detail"]
    baseline = expected_failures(db.server)
    assert failing(rows) == baseline
    assert code == (1 if baseline else 0)
    strict_code, _ = check(genisss, db, "--strict")
    assert strict_code == 1
    apply_fix(db, rows["drift"]["fix"], tmp_path)
    _, rows = check(genisss, db)
    assert rows["drift"]["status"] == "pass"


def test_custom_publication_name_is_quoted(supabase_migrated_db, genisss, tmp_path):
    db = supabase_migrated_db
    code, rows = check(genisss, db, "--publication", "Realtime Pub")
    assert rows["publication"]["status"] == "fail"
    assert rows["publication"]["fix"] == 'CREATE PUBLICATION "Realtime Pub" FOR TABLE public.global_stats;'
    apply_fix(db, rows["publication"]["fix"], tmp_path)
    code, rows = check(genisss, db, "--publication", "Realtime Pub", "--live")
    assert failing(rows) == expected_failures(db.server)
    if db.server.wal_logical:
        assert rows["live: publication"]["status"] == "pass", rows["live: publication"]
        assert "Realtime Pub" in rows["live: publication"]["detail"]


# -- databases that are not ready ---------------------------------------------------------


def test_not_migrated_says_what_to_run_and_it_works(fresh_db, genisss, tmp_path):
    code, rows = check(genisss, fresh_db)
    assert code == 1
    assert rows["migration"]["status"] == "fail" and rows["migration"]["fix"] == "genisss migrate up"
    assert rows["table"]["status"] == "fail" and rows["table"]["fix"] == "genisss migrate up"
    for name in ("realtime visibility", "trigger", "drift"):
        assert rows[name]["status"] == "skipped"
    apply_fix(fresh_db, rows["migration"]["fix"], tmp_path)
    _, rows = check(genisss, fresh_db)
    assert failing(rows) == expected_failures(fresh_db.server)


def test_a_missing_table_at_head_is_restored_by_the_printed_script(supabase_migrated_db, genisss,
                                                                  tmp_path):
    db = supabase_migrated_db
    db.execute("DROP TABLE global_stats CASCADE")
    _, rows = check(genisss, db)
    assert rows["migration"]["status"] == "pass"
    assert rows["table"]["fix"] == model.RERUN_033
    apply_fix(db, rows["table"]["fix"], tmp_path)
    _, rows = check(genisss, db)
    assert failing(rows) == expected_failures(db.server)


def test_plain_postgres_skips_supabase_rows(migrated_db, genisss):
    require_plain(migrated_db.server)
    code, rows = check(genisss, migrated_db, "--live")
    for name in ("privileges: anon", "privileges: authenticated", "privileges: service_role",
                 "realtime visibility", "replication slot"):
        assert rows[name]["status"] == "skipped", rows[name]
        assert any(w in rows[name]["detail"] for w in ("does not exist", "do not exist", "no supabase_realt"))
    assert rows["privileges: PUBLIC"]["status"] == "pass"
    expected = expected_failures(migrated_db.server)  # a fresh machine's server: wal_level = replica
    assert failing(rows) == expected and code == (1 if expected else 0)
    assert rows["live: LISTEN"]["status"] == "pass"


def test_a_check_that_cannot_run_is_a_warning_that_says_why(supabase_migrated_db, genisss):
    """A role that may not read pg_policy (a catalog, in this database only)."""
    db = supabase_migrated_db
    role = f"checker_{uuid.uuid4().hex[:8]}"
    db.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        db.execute(f'GRANT SELECT ON global_stats, user_stories, alembic_version TO "{role}"')
        db.execute("REVOKE SELECT ON pg_catalog.pg_policy FROM PUBLIC")
        dsn = psycopg.conninfo.make_conninfo(db.dsn, user=role)
        code, rows = check(genisss, db, "--live", dsn=dsn)
        vis = rows["realtime visibility"]
        assert vis["status"] == "warn", vis
        assert "permission denied" in vis["detail"] and "pg_policy" in vis["detail"]
        live = rows["live: LISTEN"]
        assert live["status"] == "warn" and "may not UPDATE" in live["detail"]
        assert failing(rows) == expected_failures(db.server), rows
        for name in ("migration", "table", "drift"):
            assert rows[name]["status"] == "warn" and "row level security hides" in rows[name]["detail"]
    finally:
        db.server.drop_db(db.name)
        with db.server.admin() as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


class PoolerPort:
    """127.0.0.1:6543, the port of Supabase's transaction pooler, forwarding to
    the test server: the port is what tells genisss it is a pooler."""

    def __init__(self, server):
        params = psycopg.conninfo.conninfo_to_dict(server.admin_dsn)
        host, port = params.get("host") or "127.0.0.1", int(params.get("port") or 5432)
        self.target = (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}") if host.startswith("/") else \
            (socket.AF_INET, (host, port))
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind(("127.0.0.1", int(dbmod.TRANSACTION_POOLER_PORT)))
        except OSError as exc:
            self.listener.close()
            pytest.skip(f"port 6543 is taken: {exc}")
        self.listener.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(self.target[0])
            upstream.connect(self.target[1])
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() above
        except OSError:
            pass
        self.listener.close()


def test_transaction_pooler_fails_the_connection_row_and_refuses_live(supabase_migrated_db, genisss):
    db = supabase_migrated_db
    proxy = PoolerPort(db.server)
    try:
        user = psycopg.conninfo.conninfo_to_dict(db.dsn).get("user") or "postgres"
        dsn = f"postgresql://{user}@127.0.0.1:6543/{db.name}"
        code, rows = check(genisss, db, dsn=dsn)
        assert code == 1
        assert failing(rows) == {"connection"} | expected_failures(db.server)
        assert "transaction pooler" in rows["connection"]["detail"]
        assert rows["connection"]["fix"].startswith("use port 5432")
        r = genisss("check", "--live", dsn=dsn)
        assert r.code == 7 and r.out == ""
        assert len(r.err.strip().splitlines()) == 1 and "port 5432" in r.err
    finally:
        proxy.close()


def test_live_without_the_row_fails_as_it_cannot_run(supabase_migrated_db, genisss):
    """--live was asked for: a live row that cannot run fails (exit 1)."""
    db = supabase_migrated_db
    db.execute("DELETE FROM global_stats")
    code, rows = check(genisss, db, "--live")
    assert code == 1
    for name in ("live: LISTEN", "live: publication", "live: broadcast"):
        assert rows[name]["status"] == "fail" and "changed 0 rows" in rows[name]["detail"], rows[name]
    assert slots(db) == []


# -- --live --------------------------------------------------------------------------------


def _logical(testdb) -> None:
    if not testdb.server.wal_logical:
        pytest.skip(f"{testdb.server.name}: wal_level is not logical")


def test_live_publication_path_fails_when_the_table_is_not_published(supabase_migrated_db, genisss):
    db = supabase_migrated_db
    _logical(db)
    db.execute("ALTER PUBLICATION supabase_realtime DROP TABLE global_stats")
    _, rows = check(genisss, db, "--live")
    assert rows["live: LISTEN"]["status"] == "pass"
    assert rows["live: publication"]["status"] == "fail"
    assert "did not carry" in rows["live: publication"]["detail"]
    assert slots(db) == []


def test_live_interrupted_leaves_no_slot(supabase_migrated_db, popen_genisss):
    db = supabase_migrated_db
    _logical(db)
    proc = popen_genisss("check", "--live", dsn=db.dsn, env={"GENISSS_TEST_LIVE_PAUSE": "120"})
    try:
        assert wait_for(lambda: slots(db) != [] or proc.poll() is not None), "no slot was created"
        assert proc.poll() is None, proc.communicate()
        assert slots(db)[0].startswith("genisss_check_")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert wait_for(lambda: slots(db) == [], 10), slots(db)


# -- rows that are hard to reach from outside ------------------------------------------------


def test_realtime_slot_lag_and_its_fix(supabase_migrated_db, tmp_path):
    db = supabase_migrated_db
    _logical(db)
    db.execute("SELECT pg_create_logical_replication_slot('supabase_realtime_replication_slot', 'pgoutput')")
    try:
        rows = in_process(db)
        assert rows["replication slot"].status == "pass"
        assert "supabase_realtime_replication_slot: idle" in rows["replication slot"].detail
        rows = in_process(db, slot_lag_warn=0)
        slot = rows["replication slot"]
        assert slot.status == "warn" and "lag" in slot.detail
        assert slot.fix == "SELECT pg_drop_replication_slot('supabase_realtime_replication_slot');"
        apply_fix(db, slot.fix, tmp_path)
        assert in_process(db)["replication slot"].status == "skipped"
    finally:
        db.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                   "WHERE slot_name = 'supabase_realtime_replication_slot' AND database = current_database()")


def test_notify_queue_held_by_a_listener_in_a_transaction(supabase_migrated_db):
    """The queue is cluster-wide: only on the test session's own (embedded) cluster."""
    db = supabase_migrated_db
    if db.server.base is None:
        pytest.skip("the NOTIFY queue of the shared system server is used by others")
    with db.connect() as listener, db.connect() as sender:
        listener.execute("LISTEN genisss_test_queue")
        listener.execute("BEGIN")
        listener.execute("SELECT 1")  # idle in transaction: it reads nothing
        # Distinct payloads: PostgreSQL folds identical ones in a transaction
        # into one, and one 7 kB entry may not reach the next queue page.
        sender.execute("SELECT pg_notify('genisss_test_queue', repeat('x', 7000) || g) "
                       "FROM generate_series(1, 10) g")
        assert in_process(db)["notify queue"].status == "pass"  # far below 50%
        queue = in_process(db, queue_warn=1e-9)["notify queue"]
        assert queue.status == "warn"
        pid = listener.info.backend_pid
        assert f"pid {pid}" in queue.detail
        assert queue.fix == f"SELECT pg_terminate_backend({pid});"
        listener.execute("ROLLBACK")


def test_a_write_path_check_sees_is_real_and_its_fix_closes_it(supabase_migrated_db, genisss, tmp_path):
    """The hole is real (anon zeroes the counter through a view it may update),
    check names it, and the printed fix closes it."""
    db = supabase_migrated_db
    db.execute("CREATE VIEW public.gs_view AS SELECT * FROM global_stats; "
               "GRANT SELECT, UPDATE ON public.gs_view TO anon")

    def as_anon(statement):
        with db.connect(autocommit=False) as conn:
            conn.execute("SET LOCAL ROLE anon")
            conn.execute(statement)
            conn.rollback()

    as_anon("UPDATE public.gs_view SET total_stories = 0")  # goes through: the view's owner writes
    _, rows = check(genisss, db)
    row = rows["write paths"]
    assert row["status"] == "fail" and "public.gs_view" in row["detail"], row
    apply_fix(db, row["fix"], tmp_path)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_anon("UPDATE public.gs_view SET total_stories = 0")
    assert check(genisss, db)[1]["write paths"]["status"] == "pass"


# -- a PostgreSQL without Supabase Realtime ------------------------------------------------


def test_no_realtime_skips_what_only_realtime_needs(migrated_db, genisss):
    """A plain PostgreSQL whose counter is read by `watch`, not by Realtime:
    no publication (and, on the system server, wal_level = replica)."""
    db = migrated_db
    db.execute("DROP PUBLICATION IF EXISTS supabase_realtime")
    code, rows = check(genisss, db)
    assert code == 1 and "publication" in failing(rows)
    for args, env, why in ((["--no-realtime"], None, "--no-realtime"),
                           ([], {"GENISSS_REALTIME": "off"}, "GENISSS_REALTIME=off"),
                           (["--no-realtime", "--live"], {"GENISSS_REALTIME": "on"}, "--no-realtime")):
        code, rows = check(genisss, db, *args, env=env)
        for name in model.REALTIME_ONLY:
            assert rows[name] == {"name": name, "status": "skipped", "fix": None,
                                  "detail": f"Realtime not used ({why})"}, rows[name]
        assert failing(rows) == set() and code == 0, rows
        assert rows["trigger"]["status"] == "pass" and rows["migration"]["status"] == "pass"
        if "--live" in args:
            assert rows["live: publication"]["detail"] == f"Realtime not used ({why})"
            assert rows["live: LISTEN"]["status"] == "pass"
    # --realtime overrides the setting; a bad setting is a configuration error
    code, rows = check(genisss, db, "--realtime", env={"GENISSS_REALTIME": "off"})
    assert code == 1 and rows["publication"]["status"] == "fail"
    r = genisss("check", dsn=db.dsn, env={"GENISSS_REALTIME": "sometimes"})
    assert r.code == 3 and r.err.strip() == "genisss: error: GENISSS_REALTIME must be on or off"
    r = genisss("check", "--no-realtime", dsn=db.dsn)
    assert r.code == 0 and "Realtime not used (--no-realtime)" in r.out
