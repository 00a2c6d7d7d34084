"""A small `realtime` schema with the interface migration 035 calls, for tests.

Supabase's Realtime owns the real one; what 035 and `genisss check` rely on is
only its interface, so this is written here from that description, not copied.
tests/test_realtime_upstream.py compares it with the real schema, loaded from
a mirror of supabase/realtime, where one is at hand:

- realtime.messages: the real table's columns (types, NOT NULL, defaults),
  partitioned by range on inserted_at, one partition a day (yesterday, today
  and tomorrow here, as Realtime keeps a few days ahead), row level security
  enabled with no policy (so only its owner, a superuser or a BYPASSRLS role
  may insert: Supabase's postgres role has BYPASSRLS), SELECT, INSERT and
  UPDATE granted to the API roles and postgres where they exist;
- realtime.send(payload, event, topic, private DEFAULT true): adds the
  message's id to a payload that has no "id", sets realtime.topic for the
  transaction, inserts one row, and turns any error into a WARNING, so that a
  sender never fails because Broadcast is broken; it runs as its caller;
- realtime.topic(): the topic being sent (NULL when none), as Realtime's
  policies read it;
- with_api_roles(): the same row level security and grants, made sure of in a
  database that has the browsers' roles (kept for the tests that call it).

Days are the session's (inserted_at is a timestamp without time zone, its
default now()), which is also how the insert is routed.
"""

from __future__ import annotations

import datetime as dt

SCHEMA_SQL = [
    "CREATE SCHEMA realtime",
    """
    CREATE TABLE realtime.messages (
      topic text NOT NULL,
      extension text NOT NULL,
      payload jsonb,
      binary_payload bytea,
      event text,
      private boolean DEFAULT false,
      updated_at timestamp NOT NULL DEFAULT now(),
      inserted_at timestamp NOT NULL DEFAULT now(),
      id uuid NOT NULL DEFAULT gen_random_uuid(),
      PRIMARY KEY (id, inserted_at),
      CHECK (payload IS NULL OR binary_payload IS NULL)
    ) PARTITION BY RANGE (inserted_at)
    """,
    "ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY",
    # Any failure (no partition for today, no INSERT privilege) becomes a
    # warning: the caller's transaction goes on and the message is lost.
    """
    CREATE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean DEFAULT true)
    RETURNS void LANGUAGE plpgsql AS $body$
    DECLARE
      message uuid := gen_random_uuid();
    BEGIN
      BEGIN
        IF NOT payload ? 'id' THEN
          payload := payload || jsonb_build_object('id', message);
        END IF;
        PERFORM pg_catalog.set_config('realtime.topic', topic, true);
        INSERT INTO realtime.messages (id, topic, extension, payload, event, private)
        VALUES (message, topic, 'broadcast', payload, event, private);
      EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'realtime.send to topic % failed: % (SQLSTATE %)', topic, SQLERRM, SQLSTATE;
      END;
    END
    $body$
    """,
    """
    CREATE FUNCTION realtime.topic() RETURNS text LANGUAGE sql STABLE AS $body$
      SELECT NULLIF(pg_catalog.current_setting('realtime.topic', true), '')
    $body$
    """,
]


# Roles Realtime's migrations grant to, where the cluster has them.
GRANTEES = ("postgres", "anon", "authenticated", "service_role")


def with_api_roles(conn) -> None:
    """Row level security on realtime.messages, and the privileges the API roles
    have there on Supabase (conn's database has the roles: supabase_db)."""
    conn.execute("ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY")
    conn.execute("GRANT USAGE ON SCHEMA realtime TO anon, authenticated, service_role")
    conn.execute("GRANT SELECT, INSERT, UPDATE ON TABLE realtime.messages "
                 "TO anon, authenticated, service_role")


def partition_name(day: dt.date) -> str:
    return f"messages_{day:%Y_%m_%d}"


def partition_sql(day: dt.date) -> str:
    """The day's partition of realtime.messages."""
    return (f"CREATE TABLE realtime.{partition_name(day)} PARTITION OF realtime.messages "
            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + dt.timedelta(days=1)).isoformat()}')")


def session_today(conn) -> dt.date:
    return conn.execute("SELECT current_date").fetchone()[0]


def install(conn, days: tuple[int, ...] = (-1, 0, 1)) -> None:
    """Create the schema in conn's database (autocommit), with a partition for
    each day offset from the session's today."""
    for statement in SCHEMA_SQL:
        conn.execute(statement)
    for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [list(GRANTEES)]):
        conn.execute(f'GRANT USAGE ON SCHEMA realtime TO "{role}"')
        conn.execute(f'GRANT SELECT, INSERT, UPDATE ON realtime.messages TO "{role}"')
    today = session_today(conn)
    for offset in days:
        conn.execute(partition_sql(today + dt.timedelta(days=offset)))


def drop_partition(conn, offset: int = 0) -> str:
    """Drop the partition of today (+ offset days); its name."""
    name = partition_name(session_today(conn) + dt.timedelta(days=offset))
    conn.execute(f"DROP TABLE realtime.{name}")
    return name


def messages(conn) -> list[tuple]:
    """(topic, event, private, extension, payload) of every message, oldest first."""
    return conn.execute("""SELECT topic, event, private, extension, payload FROM realtime.messages
                           ORDER BY inserted_at, id""").fetchall()
