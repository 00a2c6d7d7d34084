"""Migration 035, Broadcast from Database, against tests/realtime_schema.py: the
trigger sends one message per change where realtime.send() exists, installs
nothing (and says so) where it does not, and never fails an increment."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import realtime_schema
from conftest import clean_env
from tools import psql

from genisss_cli.core import schema

VENV_BIN = Path(sys.executable).parent
BROADCAST_FUNCTION = f"{schema.BROADCAST_FUNCTION}()"
INSTALLED = f"SELECT to_regprocedure('{BROADCAST_FUNCTION}') IS NOT NULL"
TRIGGER = f"""SELECT (SELECT tgenabled FROM pg_trigger
                WHERE tgrelid = '{schema.TABLE}'::regclass AND tgname = '{schema.BROADCAST_TRIGGER}')"""


def with_realtime(testdb) -> None:
    with testdb.connect() as conn:
        realtime_schema.install(conn)


def messages(testdb) -> list[tuple]:
    with testdb.connect() as conn:
        return realtime_schema.messages(conn)


def test_035_installs_the_trigger_and_a_bump_broadcasts_once(fresh_db, genisss):
    with_realtime(fresh_db)
    r = genisss("migrate", "up", dsn=fresh_db.dsn)
    assert r.code == 0, r.err
    assert "skipped" not in r.out
    assert fresh_db.scalar("SELECT version_num FROM alembic_version") == schema.HEAD
    assert fresh_db.scalar(TRIGGER) == "O"
    secdef, config, public = fresh_db.connect().execute(
        "SELECT prosecdef, proconfig, has_function_privilege('public', oid, 'EXECUTE') FROM pg_proc "
        f"WHERE oid = '{BROADCAST_FUNCTION}'::regprocedure").fetchone()
    assert secdef and config == ['search_path=""'] and not public
    assert messages(fresh_db) == []

    r = genisss("bump", "story", "--json", dsn=fresh_db.dsn)
    assert r.code == 0, r.err
    (topic, event, private, extension, payload), = messages(fresh_db)
    assert (topic, event, private, extension) == (schema.BROADCAST_TOPIC, schema.BROADCAST_EVENT, False,
                                                  "broadcast")
    updated_at = fresh_db.scalar("SELECT to_jsonb(updated_at) #>> '{}' FROM global_stats")
    message_id = fresh_db.scalar("SELECT id::text FROM realtime.messages")
    # send() adds the message's id, as Realtime's does
    assert payload == {"total_stories": 1, "total_audio_generations": 0, "updated_at": updated_at,
                       "id": message_id}

    genisss("bump", "audio", "--count", "2", dsn=fresh_db.dsn)
    assert [m[4]["total_audio_generations"] for m in messages(fresh_db)] == [0, 1, 2]


def test_without_realtime_035_installs_nothing_says_so_and_its_rerun_installs_later(
        fresh_db, genisss, tmp_path):
    r = genisss("migrate", "up", dsn=fresh_db.dsn)
    assert r.code == 0, r.err
    assert "skipped: no realtime.send() here: Broadcast not installed" in r.out
    assert fresh_db.scalar("SELECT version_num FROM alembic_version") == schema.HEAD
    assert not fresh_db.scalar(INSTALLED)
    assert fresh_db.scalar(TRIGGER) is None
    assert fresh_db.scalar("SELECT to_regnamespace('realtime')") is None  # created nothing
    assert fresh_db.scalar("SELECT increment_story_counter()") == 1

    # Realtime appears later: the command the notice gives installs it.
    rerun = re.search(r"once it exists, run: (genisss migrate repair --yes)\)", " ".join(r.out.split()))
    assert rerun, r.out
    with_realtime(fresh_db)
    env = clean_env(tmp_path, DATABASE_URL=fresh_db.dsn,
                    PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    subprocess.run(["bash", "-o", "pipefail", "-c", rerun.group(1)], env=env, cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    assert fresh_db.scalar(TRIGGER) == "O"
    # The SQL route, for an operator without genisss at the database, does the same.
    fresh_db.execute(f"DROP TRIGGER {schema.BROADCAST_TRIGGER} ON global_stats")
    offline = genisss("migrate", "sql", "up", "--from", "baseline", dsn=fresh_db.dsn)
    psql(fresh_db.dsn, offline.out, check=True)
    assert fresh_db.scalar(TRIGGER) == "O"
    assert fresh_db.scalar("SELECT version_num FROM alembic_version") == schema.HEAD
    assert fresh_db.scalar("SELECT increment_story_counter()") == 2
    assert [m[4]["total_stories"] for m in messages(fresh_db)] == [2]


def test_up_down_up_drops_exactly_what_035_added(fresh_db, genisss):
    with_realtime(fresh_db)
    assert genisss("migrate", "up", dsn=fresh_db.dsn).code == 0
    # Down to 034: 037 (the settings) and 036 (the hint) are reverted first, then 035.
    r = genisss("migrate", "down", schema.WATCHED, "--dry-run", "--json", dsn=fresh_db.dsn)
    plan = json.loads(r.out)
    assert plan["reverts"] == [schema.SETTINGS, schema.HINT, schema.BROADCAST]
    assert plan["target"] == schema.WATCHED
    assert "trigger global_stats_broadcast and its function" in plan["drops"]

    r = genisss("migrate", "down", schema.WATCHED, "--yes", dsn=fresh_db.dsn)
    assert r.code == 0, r.err
    assert fresh_db.scalar("SELECT version_num FROM alembic_version") == schema.WATCHED
    assert not fresh_db.scalar(INSTALLED) and fresh_db.scalar(TRIGGER) is None
    assert fresh_db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'global_stats_notify'") == 1
    assert fresh_db.scalar("SELECT to_regprocedure('realtime.send(jsonb,text,text,boolean)')") is not None
    fresh_db.execute("SELECT increment_story_counter()")
    assert messages(fresh_db) == []

    assert genisss("migrate", "up", dsn=fresh_db.dsn).code == 0
    assert fresh_db.scalar(TRIGGER) == "O"
    fresh_db.execute("SELECT increment_story_counter()")
    assert [m[4]["total_stories"] for m in messages(fresh_db)] == [2]


def test_down_where_035_installed_nothing_drops_nothing(migrated_db, genisss):
    assert genisss("migrate", "down", schema.BROADCAST, "--yes", dsn=migrated_db.dsn).code == 0  # 037, 036
    plan = json.loads(genisss("migrate", "down", "--dry-run", "--json", dsn=migrated_db.dsn).out)
    assert plan["reverts"] == [schema.BROADCAST] and plan["drops"] == []
    assert genisss("migrate", "down", "--yes", dsn=migrated_db.dsn).code == 0
    assert migrated_db.scalar("SELECT version_num FROM alembic_version") == schema.WATCHED


def test_a_bump_succeeds_when_send_fails(fresh_db, genisss):
    """realtime.send() turns the error into a WARNING: the increment commits, the message is lost."""
    with_realtime(fresh_db)
    assert genisss("migrate", "up", dsn=fresh_db.dsn).code == 0
    with fresh_db.connect() as conn:
        realtime_schema.drop_partition(conn, 0)
        warnings = []
        conn.add_notice_handler(lambda d: warnings.append((d.severity_nonlocalized, d.message_primary)))
        assert conn.execute("SELECT increment_story_counter()").fetchone()[0] == 1
    assert len(warnings) == 1 and warnings[0][0] == "WARNING", warnings
    assert "no partition of relation" in warnings[0][1]
    r = genisss("bump", "story", "--json", dsn=fresh_db.dsn)
    assert r.code == 0, r.err
    assert fresh_db.scalar("SELECT total_stories FROM global_stats") == 2
    assert messages(fresh_db) == []


def test_supabase_shape_the_worker_broadcasts_and_no_role_may_call_the_function(supabase_db, genisss):
    db = supabase_db
    with_realtime(db)
    assert genisss("migrate", "up", dsn=db.dsn).code == 0
    for role in ("anon", "authenticated", "service_role"):
        assert not db.scalar("SELECT has_function_privilege(%s, %s, 'EXECUTE')", [role, BROADCAST_FUNCTION])
    with db.connect() as conn:  # the worker's role may not insert into realtime.messages itself
        conn.execute("SET ROLE service_role")
        assert conn.execute("SELECT increment_story_counter()").fetchone()[0] == 1
    assert [m[4]["total_stories"] for m in messages(db)] == [1]


def test_offline_sql_installs_the_same_as_online(fresh_db, genisss):
    """`genisss migrate sql up` through psql (the SQL editor's path) installs 035
    exactly as `migrate up` does, where realtime.send() exists."""
    from test_migrate import catalog

    with_realtime(fresh_db)
    assert genisss("migrate", "up", dsn=fresh_db.dsn).code == 0
    offline = fresh_db.server.create_db()
    try:
        offline_dsn = fresh_db.server.dsn(offline)
        with psycopg.connect(offline_dsn, autocommit=True) as conn:
            realtime_schema.install(conn)
        script = genisss("migrate", "sql", "up")
        assert script.code == 0 and "global_stats_broadcast" in script.out
        psql(offline_dsn, script.out, check=True)
        assert catalog(offline_dsn) == catalog(fresh_db.dsn)
        assert "global_stats_broadcast" in str(catalog(offline_dsn)["triggers"])
    finally:
        fresh_db.server.drop_db(offline)
