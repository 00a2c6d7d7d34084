"""Migration 035 and `genisss check` against Supabase Realtime's real tenant
schema, loaded at run time from a local mirror of supabase/realtime (its Ecto
migrations, read by tests/realtime_upstream.py; nothing of it is committed).

Skipped, with the reason, where no mirror is found (GENISSS_REALTIME_MIRROR, or
/work/.mirror/supabase+realtime*), where a migration cannot be read, or where
one does not load on this server. The migrations run as the cluster's
superuser, as Realtime runs them as supabase_admin. Realtime's application,
not its migrations, creates the day partitions of realtime.messages; the
fixture creates them as it does (UTC days, yesterday to today + 3), which is
what an operator would do by hand.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
import realtime_schema
import realtime_upstream as ru
from conftest import TestDb as Db
from conftest import apply_supabase_shape
from test_check import apply_fix, check, expected_failures, failing

from genisss_cli.core import schema

SEND = "realtime.send(jsonb,text,text,boolean)"


@pytest.fixture(scope="session")
def upstream():
    mirror, where = ru.find_mirror()
    if mirror is None:
        pytest.skip(f"no mirror of supabase/realtime at {where}")
    try:
        migs = ru.migrations(mirror)
    except ru.ParseError as exc:
        pytest.skip(f"cannot read Realtime's tenant migrations at {mirror.commit}: {exc}")
    return mirror, migs


def _utc_today(conn) -> dt.date:
    return conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()[0]


def _build(server, mirror, migs) -> str:
    """A database in the Supabase shape with Realtime's schema; its name. Skips
    (dropping it) where a migration does not load on this server."""
    name = server.create_db()
    apply_supabase_shape(server.dsn(name))
    try:
        with psycopg.connect(server.dsn(name), autocommit=True) as conn:
            ru.prepare(conn)
            loaded = ru.load(conn, migs)
            today = _utc_today(conn)
            for offset in range(-1, 4):
                for statement in ru.partition_sql(today + dt.timedelta(days=offset)):
                    conn.execute(statement)
    except ru.LoadError as exc:
        server.drop_db(name)
        pytest.skip(f"supabase/realtime {mirror.commit[:12]}: {exc} -- on PostgreSQL {server.major} "
                    f"({server.name})")
    assert loaded == [m.name for m in migs]
    return name


@pytest.fixture
def upstream_db(supabase_server, upstream):
    """A database with Realtime's real schema, before `genisss migrate up`."""
    mirror, migs = upstream
    key = f"realtime_upstream_{mirror.commit[:12]}"
    if key not in supabase_server.templates:
        supabase_server.templates[key] = _build(supabase_server, mirror, migs)
    name = supabase_server.create_db(supabase_server.templates[key])
    try:
        yield Db(supabase_server, name)
    finally:
        supabase_server.drop_db(name)


def interface(conn) -> dict:
    """What 035 and `genisss check` rely on in a realtime schema."""
    send = conn.execute("SELECT pg_get_function_arguments(%s::regprocedure), prorettype::regtype::text, "
                        "prosecdef FROM pg_proc WHERE oid = %s::regprocedure", [SEND, SEND]).fetchone()
    topic = conn.execute("SELECT prorettype::regtype::text, provolatile FROM pg_proc "
                         "WHERE oid = to_regprocedure('realtime.topic()')").fetchone()
    columns = conn.execute("""
        SELECT attname, format_type(atttypid, atttypmod), attnotnull, pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE attrelid = 'realtime.messages'::regclass AND attnum > 0 AND NOT attisdropped
         ORDER BY attname""").fetchall()
    partkey = conn.execute("SELECT pg_get_partkeydef('realtime.messages'::regclass)").fetchone()[0]
    rls = conn.execute("SELECT relrowsecurity FROM pg_class WHERE oid = 'realtime.messages'::regclass"
                       ).fetchone()[0]
    return {"send": send, "topic": topic, "columns": {c[0]: c[1:] for c in columns}, "partkey": partkey,
            "rls": rls}


def test_upstream_loads_every_migration_and_our_schema_has_its_interface(upstream_db, fresh_db):
    with upstream_db.connect() as conn:
        real = interface(conn)
        assert conn.execute("SELECT count(*) FROM realtime.schema_migrations").fetchone()[0] > 0
    with fresh_db.connect() as conn:
        realtime_schema.install(conn)
        ours = interface(conn)
    signature = "payload jsonb, event text, topic text, private boolean DEFAULT true"
    assert real["send"] == (signature, "void", False)  # runs as its caller
    assert ours["send"] == real["send"]
    assert real["topic"] == ours["topic"] == ("text", "s")
    assert real["partkey"] == ours["partkey"] == "RANGE (inserted_at)"
    assert real["rls"] and ours["rls"]
    # Every column of the real table, with its type, NOT NULL and default, is in ours;
    # columns genisss never writes are there too, so that an insert fails the same way.
    assert ours["columns"] == real["columns"]


def test_topic_is_null_outside_a_send_and_the_topic_inside(upstream_db, fresh_db):
    with fresh_db.connect() as conn:
        realtime_schema.install(conn)
    for db in (upstream_db, fresh_db):
        with db.connect() as conn:
            conn.execute("SET realtime.topic = ''")
            assert conn.execute("SELECT realtime.topic()").fetchone()[0] is None, db
            with conn.transaction():
                conn.execute("SELECT set_config('realtime.topic', 'global_stats', true)")
                assert conn.execute("SELECT realtime.topic()").fetchone()[0] == "global_stats"


def messages(testdb) -> list[tuple]:
    with testdb.connect() as conn:
        return conn.execute("""SELECT id, topic, event, private, extension, payload, tableoid::regclass::text
                                 FROM realtime.messages ORDER BY inserted_at, id""").fetchall()


def test_migrate_up_installs_035_and_a_bump_broadcasts(upstream_db, genisss):
    db = upstream_db
    r = genisss("migrate", "up", dsn=db.dsn)
    assert r.code == 0, r.err
    assert "skipped" not in r.out, r.out
    assert db.scalar("SELECT version_num FROM alembic_version") == schema.HEAD
    assert db.scalar("SELECT tgenabled FROM pg_trigger WHERE tgname = %s", [schema.BROADCAST_TRIGGER]) == "O"
    assert messages(db) == []

    r = genisss("bump", "story", "--json", dsn=db.dsn)
    assert r.code == 0, r.err
    (msg_id, topic, event, private, extension, payload, partition), = messages(db)
    assert (topic, event, private, extension) == (schema.BROADCAST_TOPIC, schema.BROADCAST_EVENT, False,
                                                  "broadcast")
    updated_at = db.scalar("SELECT to_jsonb(updated_at) #>> '{}' FROM global_stats")
    # Realtime's send() adds the message's id to a payload that has none.
    assert payload == {"total_stories": 1, "total_audio_generations": 0, "updated_at": updated_at,
                       "id": str(msg_id)}
    with db.connect() as conn:
        today = conn.execute("SELECT now()::timestamp::date").fetchone()[0]
    assert partition == f"realtime.messages_{today:%Y_%m_%d}"

    assert genisss("bump", "audio", "--count", "2", dsn=db.dsn).code == 0
    assert [m[5]["total_audio_generations"] for m in messages(db)] == [0, 1, 2]


def test_check_passes_then_fails_without_todays_partition_and_its_fix_works(upstream_db, genisss, tmp_path):
    db = upstream_db
    assert genisss("migrate", "up", dsn=db.dsn).code == 0
    baseline = expected_failures(db.server)
    code, rows = check(genisss, db)
    assert failing(rows) == baseline, rows
    row = rows["broadcast"]
    assert row["status"] == "pass", row
    assert "may insert into realtime.messages" in row["detail"]
    _, rows = check(genisss, db, "--live")
    assert rows["live: broadcast"]["status"] == "pass", rows["live: broadcast"]
    assert len(messages(db)) == 1  # --live's one change, sent as any other

    with db.connect() as conn:
        today = conn.execute("SELECT now()::timestamp::date").fetchone()[0]
        conn.execute(f"DROP TABLE realtime.messages_{today:%Y_%m_%d}")
    code, rows = check(genisss, db)
    assert code == 1 and failing(rows) == {"broadcast"} | baseline, rows
    row = rows["broadcast"]
    assert "no partition of realtime.messages takes now()" in row["detail"], row
    _, live = check(genisss, db, "--live")
    assert live["live: broadcast"]["status"] == "fail", live["live: broadcast"]
    assert "WarnSendingBroadcastMessage" in live["live: broadcast"]["detail"]

    apply_fix(db, row["fix"], tmp_path)
    _, rows = check(genisss, db)
    assert failing(rows) == baseline and rows["broadcast"]["status"] == "pass", rows
    before = len(messages(db))
    db.execute("SELECT increment_story_counter()")
    assert len(messages(db)) == before + 1


def test_a_private_channel_on_the_real_schema(upstream_db, genisss):
    """037's private setting against Realtime's own messages table, its row
    level security and its policies' realtime.topic(): check's probe (as
    Realtime authorises a channel join) passes, anon reads this topic's
    message and no other, and the message is private."""
    db = upstream_db
    assert genisss("migrate", "up", dsn=db.dsn).code == 0
    r = genisss("broadcast", "--private", "--yes", dsn=db.dsn)
    assert r.code == 0, r.err
    _, rows = check(genisss, db)
    assert rows["broadcast private"]["status"] == "pass", rows["broadcast private"]
    assert rows["broadcast"]["status"] == "pass", rows["broadcast"]
    db.execute("SELECT increment_story_counter()")
    with db.connect() as conn:
        conn.execute("SELECT realtime.send('{}'::jsonb, 'other', 'another_topic', true)")
        (private,), = conn.execute("SELECT private FROM realtime.messages WHERE topic = %s",
                                   [schema.BROADCAST_TOPIC]).fetchall()
        assert private is True
        seen = {}
        for topic in (schema.BROADCAST_TOPIC, "another_topic"):
            with conn.transaction():
                conn.execute("SET LOCAL ROLE anon")
                conn.execute("""SELECT set_config('request.jwt.claims', '{"role": "anon"}', true),
                                       set_config('realtime.topic', %s, true)""", [topic])
                seen[topic] = conn.execute("SELECT count(*) FROM realtime.messages").fetchone()[0]
    assert seen == {schema.BROADCAST_TOPIC: 1, "another_topic": 0}, seen


def test_without_realtimes_grants_the_owner_check_fails(upstream_db, genisss, tmp_path):
    """The trigger function owned by a role that is not a superuser, with what
    the real schema grants postgres; then without its INSERT."""
    db = upstream_db
    assert genisss("migrate", "up", dsn=db.dsn).code == 0
    role = f"gt_owner_{db.name[-8:]}"
    db.execute(f'CREATE ROLE "{role}" NOLOGIN BYPASSRLS')
    try:
        db.execute(f'GRANT USAGE ON SCHEMA realtime TO "{role}"')
        db.execute(f'GRANT INSERT ON realtime.messages TO "{role}"')
        db.execute(f'GRANT USAGE ON SCHEMA genisss TO "{role}"')  # 037's settings, read by the trigger
        db.execute(f'GRANT SELECT, UPDATE ON {schema.BROADCAST_SETTINGS} TO "{role}"')
        db.execute(f'ALTER FUNCTION {schema.BROADCAST_FUNCTION}() OWNER TO "{role}"')
        _, rows = check(genisss, db)
        assert rows["broadcast"]["status"] == "pass", rows["broadcast"]
        db.execute(f'REVOKE INSERT ON realtime.messages FROM "{role}"')
        _, rows = check(genisss, db)
        row = rows["broadcast"]
        assert row["status"] == "fail" and "may not INSERT into realtime.messages" in row["detail"], row
        apply_fix(db, row["fix"], tmp_path)
        db.execute("SELECT increment_story_counter()")
        assert len(messages(db)) == 1
    finally:
        with db.connect() as conn:
            conn.execute(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
            conn.execute(f'DROP OWNED BY "{role}"')
        with db.server.admin() as admin:
            admin.execute(f'DROP ROLE "{role}"')


# -- the reader itself, without a database --------------------------------------------------


def test_no_mirror_is_a_clear_skip_reason(tmp_path, monkeypatch):
    monkeypatch.setenv(ru.MIRROR_ENV, str(tmp_path))
    mirror, where = ru.find_mirror()
    assert mirror is None and where == f"{ru.MIRROR_ENV}={tmp_path}"


def test_elixir_strings_and_the_dsl_become_sql():
    import ecto_sql

    src = r'''
    defmodule Realtime.Tenants.Migrations.Sample do
      use Ecto.Migration
      # a comment with "quotes"
      def change do
        execute("select '\' || 'a\"b'")
        execute ~S"""
        SELECT regexp_replace(x, '([\\,])', '\\\1')
        """
        execute("up", "down")
        """
        a bare string: a value Ecto ignores
        """
        create table(:things, prefix: "realtime") do
          add :check, :boolean, default: false, null: false
          timestamps()
        end
        create_if_not_exists index(:things, [{:desc, :inserted_at}, :check], where: "check")
      end
    end
    '''
    sql = [s for s in map(ecto_sql.statement_sql, ecto_sql.migration_body(src, "sample.ex")) if s]
    assert sql == [
        "select '' || 'a\"b'",
        "SELECT regexp_replace(x, '([\\\\,])', '\\\\\\1')\n",
        "up",
        'CREATE TABLE "realtime"."things" ("id" bigserial, "check" boolean DEFAULT false NOT NULL, '
        '"inserted_at" timestamp(0) NOT NULL, "updated_at" timestamp(0) NOT NULL, PRIMARY KEY ("id"))',
        'CREATE INDEX IF NOT EXISTS "things_inserted_at_check_index" ON "realtime"."things" '
        '("inserted_at" DESC, "check") WHERE check',
    ]


def test_what_the_reader_does_not_know_is_an_error_naming_it():
    import ecto_sql

    src = "defmodule X do\n  def up do\n    flush()\n    execute(sql_of_somewhere())\n  end\nend\n"
    with pytest.raises(ecto_sql.ParseError, match="flush"):
        [ecto_sql.statement_sql(s) for s in ecto_sql.migration_body(src, "x.ex")]
