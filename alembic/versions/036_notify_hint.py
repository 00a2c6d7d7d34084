"""036_notify_hint: the NOTIFY is a hint, and never fills the queue

Two things a watcher could not trust before:

- The payload. Any login may NOTIFY global_stats with any text, and a running
  `genisss watch` showed a forged total as the counter. Now the trigger sends
  an empty payload and watch reads the row when notified: only the table's
  values are ever shown. A burst of changes costs the watcher one read.
- The queue. A watcher that stops reading (frozen, or gone without its TCP
  session closing) holds PostgreSQL's NOTIFY queue; once it is full every
  notifying transaction fails, and so would every increment. The trigger
  stops notifying while pg_notification_queue_usage() is at or above half,
  says so once per session in the server log, and notifies again when the
  queue drains. Watchers then see the change at their next hint or
  reconnect; increments never fail for a slow reader.

The trigger and its WHEN gate (034) are unchanged. Downgrade restores 034's
function and payload.

Revision ID: 036_notify_hint
Revises: 035_broadcast_counter
"""

from alembic import context, op

revision = "036_notify_hint"
down_revision = "035_broadcast_counter"
branch_labels = None
depends_on = None

QUEUE_STOP = 0.5  # genisss_cli.core.schema.QUEUE_STOP

# Plain SQL, one statement a string, no `%` and no `:name` (they would be read
# as bind parameters); the same text runs online and in `genisss migrate sql`.
UPGRADE = [
    f"""
    CREATE OR REPLACE FUNCTION public.global_stats_notify() RETURNS trigger
    LANGUAGE plpgsql SET search_path = ''
    AS $$
    BEGIN
      IF pg_catalog.pg_notification_queue_usage() < {QUEUE_STOP} THEN
        PERFORM pg_catalog.pg_notify('global_stats', '');
      ELSIF pg_catalog.current_setting('genisss.queue_full', true) IS NULL THEN
        PERFORM pg_catalog.set_config('genisss.queue_full', 'logged', false);
        RAISE LOG 'genisss: the NOTIFY queue is at least half full (a listener is not reading): '
          'global_stats_notify() sends nothing until it drains';
      END IF;
      RETURN NULL;
    END
    $$
    """,
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    # 034's function, exactly as 034 wrote it (its module, as Alembic loaded it).
    for statement in context.script.get_revision("034_notify_when_watched").module.UPGRADE[:1]:
        op.execute(statement)
