"""034_notify_when_watched: NOTIFY only while someone watches

Under 033 every increment queues a NOTIFY, and PostgreSQL serialises the
commits of notifying transactions: with 8 workers that cost up to half of the
increment rate (docs/performance.md), paid all day for a `genisss watch` that
is rarely running. Supabase Realtime does not use NOTIFY (it reads the
publication), so nothing else loses by this.

The trigger now fires only when its WHEN clause finds a watcher:

    WHEN (NOT pg_try_advisory_xact_lock(7450482557741921143))

A watcher (`genisss watch`, `check --live`) runs LISTEN global_stats, then
takes pg_advisory_lock_shared on the same key for its session, then reads the
row. A writer whose try succeeds holds the key until its commit, so a watcher
registering meanwhile waits for that commit and then reads the row with the
change in it; once a watcher holds (or waits for) the key every try fails and
every change notifies. So no change a watcher must show is lost. The key is
the bytes of 'genisssw' read as a bigint (migrate's own lock is 'genisss',
which a watcher holding it would block).

To listen by hand:  LISTEN global_stats;
                    SELECT pg_advisory_lock_shared(7450482557741921143);

The payload is shorter, and names the writer's transaction instead of
`updated_at`:

    {"s":1324,"a":512,"x":1234567,"t":1748772000.123789}

s: total_stories, a: total_audio_generations, x: the xid, t: sent_at. Short
keys because a watched NOTIFY's cost follows its queue entry's size: a bare
trigger with a constant 110-byte payload cost as much server CPU as 034's
first, long-keyed payload (docs/performance.md).

A watcher compares the xid with the snapshot it read the row in
(pg_current_snapshot()) to drop exactly the notifications the row already
holds; matching values could not tell a change from an equal later one. The
change's time is sent_at (the trigger's clock), a float8 from date_part
(033 used numeric extract, which costs more).

Downgrade restores 033's trigger (notifies on every update) and payload.

Revision ID: 034_notify_when_watched
Revises: 033_global_stats_realtime
"""

from alembic import context, op

revision = "034_notify_when_watched"
down_revision = "033_global_stats_realtime"
branch_labels = None
depends_on = None

WATCH_LOCK = 7450482557741921143  # genisss_cli.watch.WATCH_LOCK

# Plain SQL, one statement a string, no `%` and no `:name` (they would be read
# as bind parameters); the same text runs online and in `genisss migrate sql`.
UPGRADE = [
    # The payload is assigned first: in a PL/pgSQL loop (one transaction) that
    # measured 1.8 us against 3.5 us inline in the PERFORM. Per increment, each
    # its own transaction, the two forms cost the same (benchmarks/side/
    # trigger_parts.py): the expressions' set-up is redone in every transaction.
    """
    CREATE OR REPLACE FUNCTION public.global_stats_notify() RETURNS trigger
    LANGUAGE plpgsql SET search_path = ''
    AS $$
    DECLARE
      payload text;
    BEGIN
      payload := '{"s":' || NEW.total_stories || ',"a":' || NEW.total_audio_generations
        || ',"x":' || pg_current_xact_id() || ',"t":' || date_part('epoch', clock_timestamp()) || '}';
      PERFORM pg_notify('global_stats', payload);
      RETURN NULL;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS global_stats_notify ON public.global_stats",
    f"""
    CREATE TRIGGER global_stats_notify AFTER UPDATE ON public.global_stats
    FOR EACH ROW WHEN (NOT pg_catalog.pg_try_advisory_xact_lock({WATCH_LOCK}))
    EXECUTE FUNCTION public.global_stats_notify()
    """,
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    # 033's function and trigger, exactly as 033 wrote them (its module, as
    # Alembic loaded it).
    realtime = context.script.get_revision(down_revision).module
    for statement in (realtime.NOTIFY_FUNCTION, *realtime.NOTIFY_TRIGGER):
        op.execute(statement)
