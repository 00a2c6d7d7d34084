"""037_broadcast_settings: private channels, and coalesced broadcasts

Two settings for 035's broadcast, in one row of genisss.broadcast_settings
(`genisss broadcast` shows and changes them; `migrate up --broadcast-...`
chooses them at migrate time):

- private: the trigger sends private messages, and one RLS policy on
  realtime.messages lets anon and authenticated SELECT this topic's broadcast
  messages and nothing else (no INSERT: nothing becomes writable). For
  projects that turned public channels off.
- max_per_second (R): at most R broadcasts a second, whatever the write rate.
  The trigger reads the row (an index lookup, no write) and sends only when
  the last send is 1/R old; then it records the send (one row update) in the
  same transaction as realtime.send()'s insert. Increments serialise on
  global_stats' row lock, so each trigger reads the state its predecessor
  committed. A change it skips is sent by genisss.broadcast_flush(), which
  sends the current totals when they differ from the last ones sent and 1/R
  has passed: called every second by pg_cron where it exists (a job that
  exists only while R is set), or by `genisss relay`. The last value of a
  burst is then delivered within 1/R + 1 s.

The schema genisss is not one PostgREST exposes, and nothing in it is granted
to anyone (schema public would grant a new table to anon on Supabase).

Where realtime.send() does not exist, only the settings and
genisss.broadcast_apply() are created (a setting can be chosen before Realtime
exists); rerunning the SQL from 034 (035's notice says how) installs the rest
and the policy the setting asks for. Every statement is idempotent.

Downgrade removes the policy, the pg_cron job, the functions, the settings
(and the schema genisss when nothing else is in it), and puts 035's trigger
function back where it was installed.

Revision ID: 037_broadcast_settings
Revises: 036_notify_hint
"""

from alembic import context, op

revision = "037_broadcast_settings"
down_revision = "036_notify_hint"
branch_labels = None
depends_on = None

# Plain SQL, one statement a string, no `%` and no `:name` (they would be read
# as bind parameters); the same text runs online and in `genisss migrate sql`.

# What is sent, written once: the trigger sends NEW's totals, the flush the row's.
PAYLOAD = """jsonb_build_object('total_stories', {row}.total_stories,
                               'total_audio_generations', {row}.total_audio_generations,
                               'updated_at', {row}.updated_at)"""
# 1/R has passed since the last send (s: the settings row).
DUE = ("{s}last_sent_at IS NULL OR pg_catalog.clock_timestamp() >= {s}last_sent_at "
       "+ pg_catalog.make_interval(secs => 1 / {s}max_per_second)")
DUE_S = DUE.format(s="s.")  # in a function, of its record s
DUE_ROW = DUE.format(s="")  # in the UPDATE's WHERE, of the row
SENT_NEW = PAYLOAD.format(row="NEW")
SENT_ROW = PAYLOAD.format(row="g")

TRIGGER_FUNCTION = f"""
        CREATE OR REPLACE FUNCTION public.global_stats_broadcast() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
        AS $fn$
        DECLARE
          s record;
        BEGIN
          SELECT private, max_per_second, last_sent_at INTO s FROM genisss.broadcast_settings;
          IF s.max_per_second IS NOT NULL THEN
            IF NOT ({DUE_S}) THEN
              RETURN NULL;  -- too soon: broadcast_flush() sends it if nothing newer is
            END IF;
            -- Re-evaluated on the row a concurrent flush may have just updated.
            UPDATE genisss.broadcast_settings
               SET last_sent_at = pg_catalog.clock_timestamp(),
                   sent_stories = NEW.total_stories, sent_audio = NEW.total_audio_generations
             WHERE {DUE_ROW};
            IF NOT FOUND THEN
              RETURN NULL;
            END IF;
          END IF;
          PERFORM realtime.send({SENT_NEW},
            'counter', 'global_stats', coalesce(s.private, false));
          RETURN NULL;
        END
        $fn$
      """

FLUSH_FUNCTION = f"""
        CREATE OR REPLACE FUNCTION genisss.broadcast_flush(force boolean DEFAULT false) RETURNS jsonb
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
        AS $fn$
        DECLARE
          s record;
          g record;
          payload jsonb;
        BEGIN
          -- The row lock orders this send with the trigger's (its UPDATE waits).
          SELECT * INTO s FROM genisss.broadcast_settings FOR UPDATE;
          IF NOT FOUND OR (s.max_per_second IS NULL AND NOT force) THEN
            RETURN NULL;  -- no limit: the trigger sends every change itself
          END IF;
          SELECT total_stories, total_audio_generations, updated_at INTO g
            FROM public.global_stats WHERE id = 'singleton';
          IF NOT FOUND OR (s.sent_stories IS NOT DISTINCT FROM g.total_stories
                           AND s.sent_audio IS NOT DISTINCT FROM g.total_audio_generations) THEN
            RETURN NULL;  -- nothing new since the last send
          END IF;
          IF NOT force AND NOT ({DUE_S}) THEN
            RETURN NULL;  -- too soon: the next call sends it
          END IF;
          UPDATE genisss.broadcast_settings
             SET last_sent_at = pg_catalog.clock_timestamp(),
                 sent_stories = g.total_stories, sent_audio = g.total_audio_generations;
          payload := {SENT_ROW};
          PERFORM realtime.send(payload, 'counter', 'global_stats', s.private);
          RETURN payload;
        END
        $fn$
      """

# Makes the database match the settings row: the private-channel policy exists
# exactly while private is set (where realtime.messages exists), the pg_cron
# job exactly while a limit is (where pg_cron and the flush exist). Run by
# 037 and by `genisss broadcast` after a change, in the change's transaction.
# The policy's readers are anon and authenticated where they exist (PUBLIC on a
# PostgreSQL without them, as 033's policy); it reads only this topic's
# broadcast rows (the row's topic too: no realtime.topic() setting reaches
# another one) and grants nothing else: no INSERT, UPDATE or DELETE.
APPLY_FUNCTION = """
    CREATE OR REPLACE FUNCTION genisss.broadcast_apply() RETURNS void
    LANGUAGE plpgsql SET search_path = ''
    AS $fn$
    DECLARE
      s record;
      readers text;
    BEGIN
      SELECT private, max_per_second INTO s FROM genisss.broadcast_settings;
      IF pg_catalog.to_regclass('realtime.messages') IS NOT NULL THEN
        IF coalesce(s.private, false) THEN
          IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy
                          WHERE polrelid = 'realtime.messages'::regclass
                            AND polname = 'genisss_global_stats_read') THEN
            readers := (SELECT string_agg(quote_ident(rolname), ', ' ORDER BY rolname)
                          FROM pg_catalog.pg_roles WHERE rolname IN ('anon', 'authenticated'));
            EXECUTE 'CREATE POLICY genisss_global_stats_read ON realtime.messages FOR SELECT TO '
              || coalesce(readers, 'PUBLIC')
              || ' USING (realtime.topic() = ''global_stats'' AND topic = ''global_stats'''
              || ' AND extension = ''broadcast'')';
          END IF;
        ELSE
          DROP POLICY IF EXISTS genisss_global_stats_read ON realtime.messages;
        END IF;
      END IF;
      IF pg_catalog.to_regprocedure('cron.schedule(text,text,text)') IS NOT NULL
         AND pg_catalog.to_regprocedure('genisss.broadcast_flush(boolean)') IS NOT NULL THEN
        BEGIN
          IF s.max_per_second IS NOT NULL THEN
            PERFORM cron.schedule('genisss_broadcast_flush', '1 seconds',
                                  'SELECT genisss.broadcast_flush()');
          ELSIF EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'genisss_broadcast_flush') THEN
            PERFORM cron.unschedule('genisss_broadcast_flush');
          END IF;
        EXCEPTION WHEN OTHERS THEN  -- pg_cron before 1.5 has no seconds; no privilege
          RAISE NOTICE USING MESSAGE = 'genisss: pg_cron could not (un)schedule the broadcast flush ('
            || SQLERRM || '): run genisss relay instead';
        END;
      END IF;
    END
    $fn$
    """

API_ROLES = "('anon', 'authenticated', 'service_role')"

# One block, so that a role that may not create a schema (CREATE on the
# database) skips 037 whole, says so, and keeps 035's broadcast.
UPGRADE = [
    f"""
    DO $do$
    DECLARE
      r text;
    BEGIN
      BEGIN
        CREATE SCHEMA IF NOT EXISTS genisss;
      EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE USING MESSAGE = 'genisss: may not create schema genisss (' || SQLERRM
          || '): no broadcast settings (private channel, rate limit); 035''s broadcast is unchanged';
        RETURN;
      END;
      REVOKE ALL ON SCHEMA genisss FROM PUBLIC;
      CREATE TABLE IF NOT EXISTS genisss.broadcast_settings (
        id boolean PRIMARY KEY DEFAULT true CHECK (id),
        private boolean NOT NULL DEFAULT false,
        max_per_second double precision CHECK (max_per_second > 0 AND max_per_second <= 1000),
        last_sent_at timestamptz,
        sent_stories bigint,
        sent_audio bigint
      );
      COMMENT ON TABLE genisss.broadcast_settings IS 'The counter''s broadcast: private channel, at most '
        'max_per_second sends, the last send; managed by genisss (genisss broadcast), migration 037';
      INSERT INTO genisss.broadcast_settings (id) VALUES (true) ON CONFLICT (id) DO NOTHING;
      {APPLY_FUNCTION};
      REVOKE ALL ON TABLE genisss.broadcast_settings FROM PUBLIC;
      REVOKE ALL ON FUNCTION genisss.broadcast_apply() FROM PUBLIC;
      FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN {API_ROLES} LOOP
        EXECUTE 'REVOKE ALL ON SCHEMA genisss FROM ' || quote_ident(r);
        EXECUTE 'REVOKE ALL ON TABLE genisss.broadcast_settings FROM ' || quote_ident(r);
        EXECUTE 'REVOKE ALL ON FUNCTION genisss.broadcast_apply() FROM ' || quote_ident(r);
      END LOOP;
      -- The trigger function, the trigger (Realtime may have appeared since 035)
      -- and the flush: only where realtime.send() exists, as 035.
      IF to_regprocedure('realtime.send(jsonb,text,text,boolean)') IS NOT NULL THEN
        EXECUTE $sql${TRIGGER_FUNCTION}$sql$;
        EXECUTE $sql${FLUSH_FUNCTION}$sql$;
        REVOKE EXECUTE ON FUNCTION public.global_stats_broadcast() FROM PUBLIC;
        REVOKE EXECUTE ON FUNCTION genisss.broadcast_flush(boolean) FROM PUBLIC;
        FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN {API_ROLES} LOOP
          EXECUTE 'REVOKE EXECUTE ON FUNCTION public.global_stats_broadcast() FROM ' || quote_ident(r);
          EXECUTE 'REVOKE EXECUTE ON FUNCTION genisss.broadcast_flush(boolean) FROM ' || quote_ident(r);
        END LOOP;
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'public.global_stats'::regclass
                          AND tgname = 'global_stats_broadcast') THEN
          CREATE TRIGGER global_stats_broadcast AFTER UPDATE ON public.global_stats
            FOR EACH ROW EXECUTE FUNCTION public.global_stats_broadcast();
        END IF;
      END IF;
      PERFORM genisss.broadcast_apply();
    END
    $do$
    """,
]


def downgrade_sql() -> list[str]:
    # 035's function, exactly as 035 wrote it (its module, as Alembic loaded it).
    function_035 = context.script.get_revision("035_broadcast_counter").module.FUNCTION
    return [
        """
        DO $do$
        BEGIN
          IF to_regclass('realtime.messages') IS NOT NULL THEN
            DROP POLICY IF EXISTS genisss_global_stats_read ON realtime.messages;
          END IF;
          IF to_regclass('cron.job') IS NOT NULL THEN  -- nested: cron.job is planned only if it exists
            IF EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'genisss_broadcast_flush') THEN
              PERFORM cron.unschedule('genisss_broadcast_flush');
            END IF;
          END IF;
        END
        $do$
        """,
        f"""
        DO $do$
        BEGIN
          IF to_regprocedure('public.global_stats_broadcast()') IS NOT NULL THEN
            EXECUTE $sql${function_035}$sql$;
          END IF;
        END
        $do$
        """,
        "DROP FUNCTION IF EXISTS genisss.broadcast_flush(boolean)",
        "DROP FUNCTION IF EXISTS genisss.broadcast_apply()",
        "DROP TABLE IF EXISTS genisss.broadcast_settings",
        # Only an empty schema: anything someone else put there stays.
        """
        DO $do$
        BEGIN
          IF to_regnamespace('genisss') IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM pg_depend WHERE refclassid = 'pg_namespace'::regclass
                  AND refobjid = to_regnamespace('genisss')::oid) THEN
            DROP SCHEMA genisss;
          END IF;
        END
        $do$
        """,
    ]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in downgrade_sql():
        op.execute(statement)
