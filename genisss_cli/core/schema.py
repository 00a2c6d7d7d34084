"""Every database name genisss uses, written once, and the migration head.

The migrations in alembic/versions are plain SQL that spell these names out
(reviewed SQL, not templates); tests/test_migrate.py keeps the two in step.
Knowing the head and the revisions here spares status, check, drift, sync
and watch Alembic's import time.
"""

SCHEMA = "public"
# genisss's own schema (migration 037, beside the counter in public): every
# object in it is genisss's, so repair, stamp and adoption read all of it.
OWN_SCHEMA = "genisss"
TABLE = "public.global_stats"  # the singleton counter
ROW_ID = "singleton"  # its one row's id
STORIES = "public.user_stories"  # what total_stories counts
INCREMENTS = {  # bump's kinds -> the worker's functions
    "story": "public.increment_story_counter",
    "audio": "public.increment_audio_counter",
}
# The most increments one `bump --count` makes: here, beside the functions it
# calls, so that the command's option can say so without importing core.counters.
MAX_BUMPS = 1_000_000
SYNC = "public.sync_story_counter"
FUNCTIONS = (*INCREMENTS.values(), SYNC)
NOTIFY_FUNCTION = "public.global_stats_notify"
NOTIFY_TRIGGER = "global_stats_notify"
CHANNEL = "global_stats"  # the NOTIFY channel `genisss watch` listens on
PUBLICATION = "supabase_realtime"  # the publication Supabase Realtime reads
# Broadcast from Database (migration 035): a trigger sends each change through
# realtime.send() to the topic's subscribers; Realtime reads realtime.messages.
BROADCAST_FUNCTION = "public.global_stats_broadcast"
BROADCAST_TRIGGER = "global_stats_broadcast"
BROADCAST_TOPIC = "global_stats"  # supabase.channel('global_stats')
BROADCAST_EVENT = "counter"  # .on('broadcast', { event: 'counter' }, ...)
REALTIME_SEND = "realtime.send(jsonb,text,text,boolean)"  # Supabase's, as to_regprocedure reads it
REALTIME_MESSAGES = "realtime.messages"  # the partitioned table realtime.send() inserts into
# check's fix where row level security keeps the broadcast function's owner from inserting
BROADCAST_SEND_POLICY = "genisss counter broadcast"
# Migration 037: the broadcast's settings (private, at most R sends a second) and
# their state, in a schema PostgREST does not expose, granted to nobody.
BROADCAST_SETTINGS = "genisss.broadcast_settings"
BROADCAST_FLUSH = "genisss.broadcast_flush"  # (force boolean): send what the trigger skipped
BROADCAST_APPLY = "genisss.broadcast_apply"  # make the policy and the pg_cron job match the row
BROADCAST_POLICY = "genisss_global_stats_read"  # on realtime.messages, while private
CRON_JOB = "genisss_broadcast_flush"  # pg_cron's job calling the flush every second, while R is set
CRON_SCHEDULE = "cron.schedule(text,text,text)"  # pg_cron's, as to_regprocedure reads it
RELAY_APPLICATION = "genisss relay"  # application_name of `genisss relay`'s session
API_ROLES = ("anon", "authenticated")  # the browser's roles: read, never write
WORKER_ROLE = "service_role"  # the worker's role: may call the functions
VERSION_TABLE = "public.alembic_version"
DEMO_PREFIX = "genisss_demo_"  # `genisss demo`'s databases on the embedded server: + the pid

# Advisory lock keys. 034's trigger notifies only while a watcher holds
# WATCH_LOCK shared ('genisssw' as a bigint); migrations take MIGRATE_LOCK
# ('genisss') for their transaction, so that two `migrate up` apply once.
WATCH_LOCK = 7450482557741921143
MIGRATE_LOCK = 0x67656E69737373
# `genisss relay` holds RELAY_LOCK shared ('genisssr' as a bigint) while it runs:
# check's coalescing row finds the relays there. Several may run (each flush is
# serialised on the settings row, and rate-bounded).
RELAY_LOCK = 7450482557741921138

# Revisions, oldest first.
BASELINE = "baseline"
REALTIME = "033_global_stats_realtime"  # the counter's objects
WATCHED = "034_notify_when_watched"  # NOTIFY only while a watcher holds the key
BROADCAST = "035_broadcast_counter"  # Broadcast from Database, where realtime.send() exists
HINT = "036_notify_hint"  # an empty NOTIFY, a hint to read the row; none past QUEUE_STOP
SETTINGS = "037_broadcast_settings"  # private channels and coalescing for 035's broadcast
REVISIONS = (BASELINE, REALTIME, WATCHED, BROADCAST, HINT, SETTINGS)
HEAD = REVISIONS[-1]

# 036's trigger stops notifying at this pg_notification_queue_usage(), so that
# a listener that stopped reading can never make an increment fail.
QUEUE_STOP = 0.5


def reached(revision: str | None, wanted: str) -> bool:
    """Is the database's revision wanted or a later one?"""
    return revision in REVISIONS and REVISIONS.index(revision) >= REVISIONS.index(wanted)


def current_revision(conn) -> str | None:
    """The database's Alembic revision, None where genisss never migrated it."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [VERSION_TABLE]).fetchone()
    if not row[0]:
        return None
    row = conn.execute(f"SELECT version_num FROM {VERSION_TABLE} LIMIT 1").fetchone()
    return row[0] if row else None


def known_revision(conn) -> str | None:
    """current_revision, refusing one this genisss does not know: a newer
    genisss migrated the database, and what this one would do there (apply,
    revert, sync, watch a trigger it did not write) is a guess. Every command
    that changes or relies on the schema's shape reads the revision here."""
    from genisss_cli.errors import newer_database

    current = current_revision(conn)
    if current is not None and current not in REVISIONS:
        raise newer_database(current, HEAD)
    return current
