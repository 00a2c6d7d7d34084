"""035_broadcast_counter: Broadcast from Database, where Realtime has it

Postgres Changes (033's table in the supabase_realtime publication) checks
every change against every subscriber's RLS, on one thread: Supabase tells
projects with many subscribers to broadcast from the database instead. A
trigger calls realtime.send(payload, event, topic, private), which inserts a
row into realtime.messages; Realtime streams it to everyone on the topic.

    topic    global_stats      supabase.channel('global_stats')
    event    counter           .on('broadcast', { event: 'counter' }, ...)
    payload  {"total_stories": 1324, "total_audio_generations": 512,
              "updated_at": "2026-12-02T06:00:00.123456+00:00"}
    private  false             a public channel: the counter is public anyway

The function is SECURITY DEFINER so that realtime.send() inserts as its owner
(the role that ran the migration), whoever updated the row; nobody may
EXECUTE it directly. realtime.send() turns any error into a WARNING, so a
broken setup loses messages without failing the increment: `genisss check`'s
broadcast row looks for the usual causes (docs/realtime.md).

Where realtime.send() does not exist (plain PostgreSQL, or Realtime not yet
set up) nothing is installed and a NOTICE says so (`migrate up` shows it as a
"skipped:" line). Every statement is idempotent: once Realtime exists,
`genisss migrate repair` reruns this SQL and it installs.

Downgrade drops the trigger and its function, nothing else.

Revision ID: 035_broadcast_counter
Revises: 034_notify_when_watched
"""

from alembic import op

revision = "035_broadcast_counter"
down_revision = "034_notify_when_watched"
branch_labels = None
depends_on = None

# Plain SQL, one statement a string, no `%` and no `:name` (they would be read
# as bind parameters); the same text runs online and in `genisss migrate sql`.
# The function is created through EXECUTE so that nothing at all is created
# where realtime.send() is missing. 037's downgrade puts FUNCTION back as it is.
FUNCTION = """
        CREATE OR REPLACE FUNCTION public.global_stats_broadcast() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
        AS $fn$
        BEGIN
          PERFORM realtime.send(
            jsonb_build_object('total_stories', NEW.total_stories,
                               'total_audio_generations', NEW.total_audio_generations,
                               'updated_at', NEW.updated_at),
            'counter', 'global_stats', false);
          RETURN NULL;
        END
        $fn$
      """
UPGRADE = [
    f"""
    DO $do$
    DECLARE
      r text;
    BEGIN
      IF to_regprocedure('realtime.send(jsonb,text,text,boolean)') IS NULL THEN
        RAISE NOTICE USING MESSAGE =
          'genisss: no realtime.send() here: Broadcast not installed (it needs Supabase Realtime; '
          || 'once it exists, run: genisss migrate repair --yes)';
        RETURN;
      END IF;
      EXECUTE $sql${FUNCTION}$sql$;
      REVOKE EXECUTE ON FUNCTION public.global_stats_broadcast() FROM PUBLIC;
      FOR r IN SELECT rolname FROM pg_roles
                WHERE rolname IN ('anon', 'authenticated', 'service_role') LOOP
        EXECUTE 'REVOKE EXECUTE ON FUNCTION public.global_stats_broadcast() FROM ' || quote_ident(r);
      END LOOP;
      DROP TRIGGER IF EXISTS global_stats_broadcast ON public.global_stats;
      CREATE TRIGGER global_stats_broadcast AFTER UPDATE ON public.global_stats
        FOR EACH ROW EXECUTE FUNCTION public.global_stats_broadcast();
    END
    $do$
    """,
]

DOWNGRADE = [
    "DROP TRIGGER IF EXISTS global_stats_broadcast ON public.global_stats",
    "DROP FUNCTION IF EXISTS public.global_stats_broadcast()",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
