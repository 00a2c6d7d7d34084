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

The payload and its function are unchanged. Downgrade restores 033's trigger,
which notifies on every update.

Revision ID: 034_notify_when_watched
Revises: 033_global_stats_realtime
"""

from alembic import op

revision = "034_notify_when_watched"
down_revision = "033_global_stats_realtime"
branch_labels = None
depends_on = None

WATCH_LOCK = 7450482557741921143  # genisss_cli.watch.WATCH_LOCK

# Plain SQL, one statement a string, no `%` and no `:name` (they would be read
# as bind parameters); the same text runs online and in `genisss migrate sql`.
UPGRADE = [
    "DROP TRIGGER IF EXISTS global_stats_notify ON public.global_stats",
    f"""
    CREATE TRIGGER global_stats_notify AFTER UPDATE ON public.global_stats
    FOR EACH ROW WHEN (NOT pg_catalog.pg_try_advisory_xact_lock({WATCH_LOCK}))
    EXECUTE FUNCTION public.global_stats_notify()
    """,
]

DOWNGRADE = [
    "DROP TRIGGER IF EXISTS global_stats_notify ON public.global_stats",
    """
    CREATE TRIGGER global_stats_notify AFTER UPDATE ON public.global_stats
    FOR EACH ROW EXECUTE FUNCTION public.global_stats_notify()
    """,
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
