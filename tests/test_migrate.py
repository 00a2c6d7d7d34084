"""migrate up/down/status/sql and the Supabase shape, on real PostgreSQL."""

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from conftest import REPO, require_plain
from tools import psql

from genisss_cli.core import migrate, schema


def test_head_constant_matches_alembic():
    assert migrate.ordered_revisions()[-1] == schema.HEAD
    assert migrate.ordered_revisions() == [schema.BASELINE, schema.REALTIME, schema.WATCHED,
                                           schema.BROADCAST, schema.HINT, schema.SETTINGS]
    assert list(schema.REVISIONS) == migrate.ordered_revisions()


def test_up_down_up_round_trip_keeps_user_stories(fresh_db, genisss):
    r = genisss("migrate", "up", dsn=fresh_db.dsn)
    assert r.code == 0, r.err
    assert f"upgraded base -> {schema.HEAD}" in r.out
    fresh_db.execute("INSERT INTO user_stories (title) SELECT 'story' FROM generate_series(1, 5)")
    assert fresh_db.scalar("SELECT increment_story_counter()") == 1

    r = genisss("migrate", "down", "base", "--yes", dsn=fresh_db.dsn)
    assert r.code == 0, r.err
    assert fresh_db.scalar("SELECT to_regclass('public.global_stats')") is None
    assert fresh_db.scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE '%story_counter'") == 0
    assert fresh_db.scalar("SELECT count(*) FROM user_stories") == 5  # never dropped

    r = genisss("migrate", "up", dsn=fresh_db.dsn)
    assert r.code == 0, r.err
    # The row starts at the real number of stories.
    assert fresh_db.scalar("SELECT total_stories FROM global_stats") == 5
    assert fresh_db.scalar("SELECT version_num FROM alembic_version") == schema.HEAD


def test_up_is_idempotent(migrated_db, genisss):
    r = genisss("migrate", "up", "--json", dsn=migrated_db.dsn)
    assert r.code == 0
    assert '"changed": false' in r.out


def test_status_exit_codes_and_json(fresh_db, genisss):
    r = genisss("migrate", "status", "--json", dsn=fresh_db.dsn)
    assert r.code == 1  # a finding: pending migrations
    assert json.loads(r.out)["pending"] == migrate.ordered_revisions()
    assert genisss("migrate", "up", dsn=fresh_db.dsn).code == 0
    r = genisss("migrate", "status", dsn=fresh_db.dsn)
    assert r.code == 0 and "up to date" in r.out


def test_down_asks_and_shows_what_is_lost(migrated_db, genisss):
    migrated_db.execute("SELECT increment_story_counter() FROM generate_series(1, 7)")
    r = genisss("migrate", "down", dsn=migrated_db.dsn)  # no terminal, no --yes
    assert r.code == 2
    assert "--yes" in r.err and len(r.err.strip().splitlines()) == 1
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == 7

    # One step down is 037: the broadcast's settings go, the counter stays.
    r = genisss("migrate", "down", "--dry-run", "--json", dsn=migrated_db.dsn)
    plan = json.loads(r.out)
    assert plan["reverts"] == [schema.SETTINGS] and plan["counters"] is None
    assert genisss("migrate", "down", "--yes", dsn=migrated_db.dsn).code == 0
    # Then 036: 034's payload again, nothing is lost.
    r = genisss("migrate", "down", "--dry-run", "--json", dsn=migrated_db.dsn)
    assert r.code == 0
    plan = json.loads(r.out)
    assert plan["reverts"] == [schema.HINT] and plan["counters"] is None
    assert plan["drops"] == ["global_stats_notify()'s empty payload and queue guard: 034's payload again"]
    assert genisss("migrate", "down", "--yes", dsn=migrated_db.dsn).code == 0
    # Then 035, which installed nothing here (no realtime.send()): nothing is lost.
    r = genisss("migrate", "down", "--dry-run", "--json", dsn=migrated_db.dsn)
    plan = json.loads(r.out)
    assert plan["reverts"] == [schema.BROADCAST] and plan["counters"] is None and plan["drops"] == []
    assert genisss("migrate", "down", "--yes", dsn=migrated_db.dsn).code == 0
    assert migrated_db.scalar("SELECT version_num FROM alembic_version") == schema.WATCHED
    # Then 034: the trigger notifies on every update again, nothing is lost.
    r = genisss("migrate", "down", "--dry-run", "--json", dsn=migrated_db.dsn)
    plan = json.loads(r.out)
    assert plan["reverts"] == [schema.WATCHED] and plan["counters"] is None
    assert plan["drops"] == ["trigger global_stats_notify's WHEN clause: it notifies on every update again"]
    r = genisss("migrate", "down", "--yes", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    assert migrated_db.scalar("SELECT version_num FROM alembic_version") == schema.REALTIME
    assert migrated_db.scalar("SELECT tgqual IS NULL FROM pg_trigger WHERE tgname = 'global_stats_notify'")
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == 7

    r = genisss("migrate", "down", "--dry-run", dsn=migrated_db.dsn)
    assert r.code == 0
    assert "total_stories = 7" in r.out and "public.global_stats" in r.out
    assert migrated_db.scalar("SELECT to_regclass('public.global_stats')::text") == "global_stats"

    r = genisss("migrate", "down", "--yes", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    assert migrated_db.scalar("SELECT version_num FROM alembic_version") == schema.BASELINE


CATALOG = {
    "columns": """SELECT table_name, column_name, data_type, is_nullable, column_default
                  FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2""",
    "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
                      FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "functions": """SELECT proname, prosecdef, proconfig, md5(pg_get_functiondef(oid)), proacl::text
                    FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1""",
    "triggers": """SELECT tgname, tgenabled, pg_get_triggerdef(oid) FROM pg_trigger
                   WHERE NOT tgisinternal ORDER BY 1""",
    "policies": "SELECT tablename, policyname, cmd, roles::text, qual FROM pg_policies ORDER BY 1, 2",
    "tables": """SELECT relname, relrowsecurity, relacl::text FROM pg_class
                 WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1""",
    "publication": "SELECT pubname, tablename FROM pg_publication_tables ORDER BY 1, 2",
    "version": "SELECT version_num FROM alembic_version",
    "row": "SELECT id, total_stories, total_audio_generations FROM global_stats",
}


def catalog(dsn: str) -> dict:
    with psycopg.connect(dsn) as conn:
        return {k: conn.execute(q).fetchall() for k, q in CATALOG.items()}


def _offline_matches_online(online, template, genisss):
    server = online.server
    offline_name = server.create_db(template)
    try:
        offline_dsn = server.dsn(offline_name)
        assert genisss("migrate", "up", dsn=online.dsn).code == 0
        script = genisss("migrate", "sql", "up")
        assert script.code == 0 and "CREATE TABLE IF NOT EXISTS public.global_stats" in script.out
        psql(offline_dsn, script.out, check=True)
        assert catalog(offline_dsn) == catalog(online.dsn)
    finally:
        server.drop_db(offline_name)


def test_down_takes_relative_steps_as_alembic_does(migrated_db, genisss):
    # -1 and -N are typed as users type them, not as unknown short options.
    r = genisss("migrate", "down", "-2", "--dry-run", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    assert json.loads(r.out)["reverts"] == [schema.SETTINGS, schema.HINT]
    r = genisss("migrate", "down", "-1", "--yes", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    assert migrated_db.scalar("SELECT version_num FROM alembic_version") == schema.HINT
    r = genisss("migrate", "down", "--yes", "-2", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    assert json.loads(r.out)["after"] == schema.WATCHED == migrated_db.scalar(
        "SELECT version_num FROM alembic_version")
    # Below base, a mistyped option, an extra word: one line, exit 2, nothing changed.
    for args, said in [(["-9"], "goes below base"), (["--yess"], "--yess is not an option"),
                       ([schema.REALTIME, "--yess"], "unexpected extra argument")]:
        r = genisss("migrate", "down", *args, dsn=migrated_db.dsn)
        assert r.code == 2 and said in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert migrated_db.scalar("SELECT version_num FROM alembic_version") == schema.WATCHED


def test_offline_sql_has_the_same_effect_as_online(fresh_db, genisss):
    _offline_matches_online(fresh_db, None, genisss)


def test_offline_sql_has_the_same_effect_as_online_in_supabase_shape(supabase_db, genisss):
    _offline_matches_online(supabase_db, supabase_db.server.templates["supabase"], genisss)


def test_offline_down_sql_rolls_back(migrated_db, genisss):
    script = genisss("migrate", "sql", "down", "--to", "baseline")
    assert script.code == 0
    psql(migrated_db.dsn, script.out, check=True)
    assert migrated_db.scalar("SELECT to_regclass('public.global_stats')") is None
    assert migrated_db.scalar("SELECT version_num FROM alembic_version") == "baseline"

    # Run again: one line, before any change (Alembic's own script failed half-way).
    again = psql(migrated_db.dsn, script.out)
    assert again.returncode == 3
    assert ("ERROR:  genisss: the database is already at baseline: this script has nothing to revert; "
            "nothing was changed") in again.stderr, again.stderr
    assert migrated_db.scalar("SELECT version_num FROM alembic_version") == "baseline"


def test_offline_down_sql_refuses_a_database_not_at_its_start(migrated_db, genisss):
    migrated_db.execute("SELECT increment_story_counter() FROM generate_series(1, 3)")
    assert genisss("migrate", "down", schema.BROADCAST, "--yes", dsn=migrated_db.dsn).code == 0
    script = genisss("migrate", "sql", "down")  # from head
    run = psql(migrated_db.dsn, script.out)
    assert run.returncode == 3
    assert (f"the database is at {schema.BROADCAST}, but this script reverts from {schema.HEAD}: "
            "nothing was changed") in run.stderr, run.stderr
    assert migrated_db.scalar("SELECT version_num FROM alembic_version") == schema.BROADCAST
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == 3


HAND_APPLIED_033 = """
CREATE TABLE global_stats (
  id TEXT PRIMARY KEY DEFAULT 'singleton',
  total_stories BIGINT NOT NULL DEFAULT 0,
  total_audio_generations BIGINT NOT NULL DEFAULT 0,
  last_story_at TIMESTAMPTZ,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
INSERT INTO global_stats (id, total_stories) VALUES ('singleton', 1323);
CREATE FUNCTION increment_story_counter() RETURNS void LANGUAGE sql AS
  $$ UPDATE global_stats SET total_stories = total_stories + 1 WHERE id = 'singleton' $$;
CREATE FUNCTION sync_story_counter() RETURNS TABLE(old_count bigint, new_count bigint, difference bigint)
  LANGUAGE sql AS $$ SELECT 0::bigint, 0::bigint, 0::bigint $$;
CREATE TABLE user_stories (id bigserial PRIMARY KEY, title text);
INSERT INTO user_stories (title) SELECT 's' FROM generate_series(1, 1325);
"""


def test_adopts_a_hand_applied_033_and_keeps_the_counter(fresh_db, genisss):
    fresh_db.execute(HAND_APPLIED_033)
    r = genisss("migrate", "status", dsn=fresh_db.dsn)
    assert r.code == 1 and "applied by hand" in r.out
    r = genisss("migrate", "up", dsn=fresh_db.dsn)
    assert r.code == 0, r.err
    assert fresh_db.scalar("SELECT total_stories FROM global_stats") == 1323
    assert fresh_db.scalar("SELECT version_num FROM alembic_version") == schema.HEAD
    # what was missing is there now
    assert fresh_db.scalar("SELECT count(*) FROM information_schema.columns "
                           "WHERE table_name = 'global_stats' AND column_name = 'last_audio_at'") == 1
    assert fresh_db.scalar("SELECT prosecdef FROM pg_proc WHERE proname = 'increment_story_counter'")
    assert fresh_db.scalar("SELECT increment_story_counter()") == 1324
    assert fresh_db.scalar("SELECT count(*) FROM pg_publication_tables "
                           "WHERE pubname = 'supabase_realtime' AND tablename = 'global_stats'") == 1


def test_two_concurrent_migrate_up_apply_once(fresh_db, popen_genisss):
    procs = [popen_genisss("migrate", "up", "--json", dsn=fresh_db.dsn) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    changed = sorted('"changed": true' in out for out, _ in outs)
    assert changed == [False, True]  # one applied, the other found it done
    assert fresh_db.scalar("SELECT count(*) FROM alembic_version") == 1
    assert fresh_db.scalar("SELECT count(*) FROM global_stats") == 1


def test_migration_waits_at_most_its_lock_timeout(migrated_db, genisss):
    with migrated_db.connect(autocommit=False) as holder:
        holder.execute("LOCK TABLE global_stats IN ACCESS SHARE MODE")
        started = time.monotonic()
        # Down to 033: 034's downgrade recreates the NOTIFY trigger, which needs
        # the table's lock (035 installed nothing here and takes none).
        r = genisss("migrate", "down", schema.REALTIME, "--yes", "--lock-timeout", "1",
                    dsn=migrated_db.dsn)
        elapsed = time.monotonic() - started
        holder.rollback()
    assert r.code == 8, r.err
    assert "lock" in r.err and len(r.err.strip().splitlines()) == 1
    assert elapsed < 15
    assert migrated_db.scalar("SELECT version_num FROM alembic_version") == schema.HEAD


def test_plain_postgres_policy_is_for_public(fresh_db, genisss):
    require_plain(fresh_db.server)
    assert genisss("migrate", "up", dsn=fresh_db.dsn).code == 0
    roles = fresh_db.scalar("SELECT roles::text FROM pg_policies WHERE tablename = 'global_stats'")
    assert roles == "{public}"


# -- the Supabase shape --------------------------------------------------------------------


def _as(conn, role: str, query: str):
    conn.execute(f"SET ROLE {role}")
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.execute("RESET ROLE")


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_supabase_anon_reads_and_cannot_write(supabase_migrated_db, role):
    with supabase_migrated_db.connect() as conn:
        assert _as(conn, role, "SELECT id FROM global_stats") == [("singleton",)]
        for query in [
            "UPDATE global_stats SET total_stories = 999",
            "DELETE FROM global_stats",
            "INSERT INTO global_stats (id) VALUES ('x')",
            "TRUNCATE global_stats",
            "SELECT increment_story_counter()",
            "SELECT increment_audio_counter()",
            "SELECT * FROM sync_story_counter()",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                _as(conn, role, query)
    assert supabase_migrated_db.scalar("SELECT total_stories FROM global_stats") == 0


def test_supabase_service_role_can_execute(supabase_migrated_db):
    with supabase_migrated_db.connect() as conn:
        assert _as(conn, "service_role", "SELECT increment_story_counter()") == [(1,)]
        assert _as(conn, "service_role", "SELECT increment_audio_counter()") == [(1,)]
        assert _as(conn, "service_role", "SELECT * FROM sync_story_counter()") == [(1, 0, -1)]
    assert supabase_migrated_db.scalar(
        "SELECT roles::text FROM pg_policies WHERE tablename = 'global_stats'") == "{anon,authenticated}"


def test_supabase_migration_fills_its_publication(supabase_migrated_db):
    assert supabase_migrated_db.scalar(
        "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'supabase_realtime' "
        "AND tablename = 'global_stats'") == 1


def test_migration_skips_the_publication_when_it_may_not(fresh_db, genisss):
    """A role that owns schema public but may not CREATE in the database (so
    no publication): the migration says so and goes on."""
    role = f"owner_{fresh_db.name}"
    fresh_db.execute(f'CREATE ROLE "{role}" LOGIN')
    fresh_db.execute(f'ALTER SCHEMA public OWNER TO "{role}"')
    try:
        dsn = psycopg.conninfo.make_conninfo(fresh_db.dsn, user=role)
        r = genisss("migrate", "up", dsn=dsn)
        assert r.code == 0, r.err
        assert "skipped" in r.out and "supabase_realtime" in r.out
        assert "may not create schema genisss" in r.out  # 037 skipped whole, and says so
        assert fresh_db.scalar("SELECT to_regclass('public.global_stats')::text") == "global_stats"
    finally:
        fresh_db.execute(f'DROP OWNED BY "{role}" CASCADE')
        fresh_db.server.drop_db(fresh_db.name)
        with fresh_db.server.admin() as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_plain_alembic_from_the_repository(fresh_db):
    """`alembic upgrade head` in the repo root runs the same migrations."""
    alembic = Path(sys.executable).parent / "alembic"
    for verb in (["upgrade", "head"], ["downgrade", "baseline"]):
        subprocess.run([str(alembic), "-x", f"database_url={fresh_db.dsn}", *verb], cwd=REPO,
                       check=True, capture_output=True, timeout=120)
    assert fresh_db.scalar("SELECT version_num FROM alembic_version") == "baseline"
    assert fresh_db.scalar("SELECT to_regclass('public.user_stories')::text") == "user_stories"


# -- a database migrated by a newer genisss ------------------------------------------------

NEWER = "099_future"
NEWER_TEXT = f"the database is at {NEWER}, newer than this genisss (head {schema.HEAD})"
NEWER_COMMANDS = [
    ("migrate", "status"), ("migrate", "history"), ("migrate", "up"), ("migrate", "up", "--dry-run"),
    ("migrate", "up", schema.REALTIME), ("migrate", "down", "--yes"), ("migrate", "down", "base", "--yes"),
    ("migrate", "down", "--dry-run"), ("migrate", "repair"), ("migrate", "repair", "--yes"),
    ("migrate", "stamp", schema.HEAD, "--yes"), ("migrate", "stamp", schema.HEAD, "--yes", "--force"),
    ("drift",), ("sync",), ("sync", "--if-drift"),
    ("watch", "--timeout", "1"), ("status",), ("bump", "story"), ("bump", "audio", "--count", "5"),
]


def _shape(db) -> tuple:
    return (db.scalar("SELECT version_num FROM alembic_version"),
            db.scalar("SELECT total_stories FROM global_stats"),
            db.scalar("SELECT total_audio_generations FROM global_stats"),
            db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'global_stats_notify' "
                      "AND tgqual IS NOT NULL"),
            db.scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE '%_counter'"))


def test_known_revisions_are_alembics():
    assert list(schema.REVISIONS) == migrate.ordered_revisions()


def test_a_newer_database_is_refused_by_every_command_and_left_alone(migrated_db, genisss):
    migrated_db.execute("INSERT INTO user_stories (title) VALUES ('a'), ('b')")  # sync would change it
    migrated_db.execute(f"UPDATE alembic_version SET version_num = '{NEWER}'")
    before = _shape(migrated_db)
    for args in NEWER_COMMANDS:
        r = genisss(*args, dsn=migrated_db.dsn)
        assert r.code == 5, (args, r.output)
        assert r.err.strip().splitlines() == [
            f"genisss: error: {NEWER_TEXT} (upgrade genisss; nothing was changed)"], (args, r.output)
        assert _shape(migrated_db) == before, args
    for args in (("migrate", "status"), ("migrate", "up"), ("drift",), ("sync",), ("status",),
                 ("bump", "story")):
        r = genisss(*args, "--json", dsn=migrated_db.dsn)
        assert r.code == 5 and r.out == "", (args, r.output)
        assert json.loads(r.err) == {"error": NEWER_TEXT, "exit": 5,
                                     "hint": "upgrade genisss; nothing was changed"}
    assert _shape(migrated_db) == before
    # check still runs every row; the migration row warns, as before.
    r = genisss("check", "--json", dsn=migrated_db.dsn)
    rows = {row["name"]: row for row in json.loads(r.out)["checks"]}
    assert rows["migration"]["status"] == "warn" and NEWER in rows["migration"]["detail"]
    # and the plain `alembic` of the repository refuses it too
    alembic = Path(sys.executable).parent / "alembic"
    proc = subprocess.run([str(alembic), "-x", f"database_url={migrated_db.dsn}", "upgrade", "head"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and NEWER_TEXT in proc.stderr
    assert _shape(migrated_db) == before


# -- shell completion of TARGET ----------------------------------------------------------------


@pytest.mark.parametrize("words, expected", [
    ("genisss migrate up ", ["head", *schema.REVISIONS]),
    ("genisss migrate up 03", [r for r in schema.REVISIONS if r.startswith("03")]),
    ("genisss migrate down ", ["-1", "base", *schema.REVISIONS]),
    ("genisss migrate down ba", ["base", schema.BASELINE]),
])
def test_shell_completion_offers_the_revisions(genisss, words, expected):
    """Through the shell's protocol (bash), as `genisss --install-completion` sets it up."""
    r = genisss(env={"_GENISSS_COMPLETE": "complete_bash", "COMP_WORDS": words,
                     "COMP_CWORD": str(len(words.split(" ")) - 1)})
    assert r.code == 0, r.output
    assert r.out.split() == expected


def test_base_is_refused_where_a_revision_is_needed(genisss):
    for args in (["sql", "down", "--from", "base"], ["sql", "up", "--to", "base"]):
        r = genisss("migrate", *args)
        assert r.code == 2 and r.out == ""
        assert r.err.strip() == ("genisss: error: 'base' is the state before the first revision, not a "
                                 "revision (see: genisss migrate history)")
