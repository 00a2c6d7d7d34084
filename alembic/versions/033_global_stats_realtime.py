"""033_global_stats_realtime: the realtime story counter

The singleton table global_stats, the worker's increment functions, the daily
sync, a NOTIFY trigger for `genisss watch`, the table in the supabase_realtime
publication, and the grants that let the anon key read the counter and
nothing else. Every statement is idempotent, so running it over a 033 that was
pasted into the SQL editor by hand adopts it: the counter keeps its value and
what is missing is filled in. docs/migration.md explains each object.

Revision ID: 033_global_stats_realtime
Revises: baseline
"""

from alembic import op

revision = "033_global_stats_realtime"
down_revision = "baseline"
branch_labels = None
depends_on = None

FUNCTIONS = (
    "public.increment_story_counter(), public.increment_audio_counter(), "
    "public.sync_story_counter()"
)

# The NOTIFY trigger (genisss watch) and its function, named so that 034's
# downgrade puts back exactly these. A small JSON payload built once, by
# concatenation: every worker's increment pays for this, and it measured
# cheaper than json_build_object (docs/performance.md). to_json() keeps
# updated_at ISO 8601 whatever the session's DateStyle; sent_at (epoch
# seconds) lets a listener measure the delay. pg_catalog is searched even with
# an empty search_path.
NOTIFY_FUNCTION = """
    CREATE OR REPLACE FUNCTION public.global_stats_notify() RETURNS trigger
    LANGUAGE plpgsql SET search_path = ''
    AS $$
    BEGIN
      PERFORM pg_notify('global_stats',
        '{"total_stories":' || NEW.total_stories
        || ',"total_audio_generations":' || NEW.total_audio_generations
        || ',"updated_at":' || to_json(NEW.updated_at)
        || ',"sent_at":' || extract(epoch FROM clock_timestamp()) || '}');
      RETURN NULL;
    END
    $$
    """
NOTIFY_TRIGGER = [
    "DROP TRIGGER IF EXISTS global_stats_notify ON public.global_stats",
    """
    CREATE TRIGGER global_stats_notify AFTER UPDATE ON public.global_stats
    FOR EACH ROW EXECUTE FUNCTION public.global_stats_notify()
    """,
]

# Plain SQL, one statement a string, no `%` and no `:name` (they would be read
# as bind parameters); the same text runs online and in `genisss migrate sql`.
UPGRADE = [
    # -- the table -----------------------------------------------------------
    """
    CREATE TABLE IF NOT EXISTS public.global_stats (
      id text PRIMARY KEY DEFAULT 'singleton',
      total_stories bigint NOT NULL DEFAULT 0,
      total_audio_generations bigint NOT NULL DEFAULT 0,
      last_story_at timestamptz,
      last_audio_at timestamptz,
      updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # Adoption: a hand-made table may lack a column.
    """
    ALTER TABLE public.global_stats
      ADD COLUMN IF NOT EXISTS total_stories bigint NOT NULL DEFAULT 0,
      ADD COLUMN IF NOT EXISTS total_audio_generations bigint NOT NULL DEFAULT 0,
      ADD COLUMN IF NOT EXISTS last_story_at timestamptz,
      ADD COLUMN IF NOT EXISTS last_audio_at timestamptz,
      ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now()
    """,
    """
    DO $$
    BEGIN
      IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'public.global_stats'::regclass AND conname = 'global_stats_singleton'
      ) THEN
        ALTER TABLE public.global_stats
          ADD CONSTRAINT global_stats_singleton CHECK (id = 'singleton');
      END IF;
    END
    $$
    """,
    "COMMENT ON TABLE public.global_stats IS "
    "'Public story counter, one row (id = singleton); managed by genisss, migration 033'",
    # The row starts at the real number of stories; an adopted row keeps its value.
    """
    INSERT INTO public.global_stats (id, total_stories)
    SELECT 'singleton', count(*) FROM public.user_stories
    ON CONFLICT (id) DO NOTHING
    """,
    # -- the functions ---------------------------------------------------------
    # Dropped first only where a hand-applied 033 returned another type (or
    # made a procedure): CREATE OR REPLACE cannot change that. A function that
    # is already right is replaced in place, so that a rerun (migrate repair,
    # the rerunnable `migrate sql up`) keeps its grants to the operator's roles.
    """
    DO $$
    DECLARE
      f regprocedure;
    BEGIN
      FOR f IN
        SELECT p.oid FROM pg_proc AS p
          JOIN (VALUES ('increment_story_counter', 'bigint'), ('increment_audio_counter', 'bigint'),
                       ('sync_story_counter', 'TABLE(old_count bigint, new_count bigint, difference bigint)'))
               AS want (name, result) ON p.proname = want.name
         WHERE p.pronamespace = 'public'::regnamespace AND p.pronargs = 0
           AND (p.prokind <> 'f' OR pg_get_function_result(p.oid) <> want.result)
      LOOP
        EXECUTE 'DROP ROUTINE ' || f::text;
      END LOOP;
    END
    $$
    """,
    # One UPDATE each: the row lock makes n = n + 1 atomic under any concurrency.
    """
    CREATE OR REPLACE FUNCTION public.increment_story_counter() RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = ''
    AS $$
      UPDATE public.global_stats
         SET total_stories = total_stories + 1, last_story_at = now(), updated_at = now()
       WHERE id = 'singleton'
      RETURNING total_stories
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION public.increment_audio_counter() RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = ''
    AS $$
      UPDATE public.global_stats
         SET total_audio_generations = total_audio_generations + 1,
             last_audio_at = now(), updated_at = now()
       WHERE id = 'singleton'
      RETURNING total_audio_generations
    $$
    """,
    # The row is locked before counting: an increment that arrives meanwhile
    # waits, then adds its 1 to the synced value, so none is lost.
    """
    CREATE OR REPLACE FUNCTION public.sync_story_counter()
    RETURNS TABLE (old_count bigint, new_count bigint, difference bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = ''
    AS $$
    BEGIN
      SELECT g.total_stories INTO old_count
        FROM public.global_stats AS g WHERE g.id = 'singleton' FOR UPDATE;
      SELECT count(*) INTO new_count FROM public.user_stories;
      IF new_count IS DISTINCT FROM old_count THEN
        UPDATE public.global_stats AS g
           SET total_stories = new_count, updated_at = now()
         WHERE g.id = 'singleton';
      END IF;
      difference := new_count - old_count;
      RETURN NEXT;
    END
    $$
    """,
    # -- the NOTIFY trigger (genisss watch), above ------------------------------
    NOTIFY_FUNCTION,
    *NOTIFY_TRIGGER,
    # -- Supabase Realtime -------------------------------------------------------
    """
    DO $$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
        BEGIN
          CREATE PUBLICATION supabase_realtime;
        EXCEPTION WHEN insufficient_privilege THEN
          RAISE NOTICE USING MESSAGE =
            'genisss: may not create publication supabase_realtime, skipped (' || SQLERRM || ')';
          RETURN;
        END;
      END IF;
      IF NOT EXISTS (
        SELECT 1 FROM pg_publication_tables
        WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = 'global_stats'
      ) THEN
        BEGIN
          ALTER PUBLICATION supabase_realtime ADD TABLE public.global_stats;
        EXCEPTION WHEN insufficient_privilege THEN
          RAISE NOTICE USING MESSAGE =
            'genisss: may not add global_stats to supabase_realtime, skipped (' || SQLERRM || ')';
        END;
      END IF;
    END
    $$
    """,
    # -- security ----------------------------------------------------------------
    # Realtime delivers a change to a browser only if RLS lets its role read the row.
    "ALTER TABLE public.global_stats ENABLE ROW LEVEL SECURITY",
    "DROP POLICY IF EXISTS global_stats_read ON public.global_stats",
    """
    DO $$
    DECLARE
      readers text := (SELECT string_agg(quote_ident(rolname), ', ' ORDER BY rolname)
                         FROM pg_roles WHERE rolname IN ('anon', 'authenticated'));
    BEGIN
      EXECUTE 'CREATE POLICY global_stats_read ON public.global_stats FOR SELECT TO '
        || coalesce(readers, 'PUBLIC') || ' USING (true)';
    END
    $$
    """,
    # Schema public on Supabase grants new tables and functions to anon,
    # authenticated and service_role by default: take it back, then give the
    # readers SELECT and the worker's role EXECUTE.
    "REVOKE ALL ON TABLE public.global_stats FROM PUBLIC",
    f"REVOKE ALL ON FUNCTION {FUNCTIONS}, public.global_stats_notify() FROM PUBLIC",
    f"""
    DO $$
    DECLARE
      r text;
    BEGIN
      FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated') LOOP
        EXECUTE 'REVOKE ALL ON TABLE public.global_stats FROM ' || quote_ident(r);
        EXECUTE 'GRANT SELECT ON TABLE public.global_stats TO ' || quote_ident(r);
        EXECUTE 'REVOKE ALL ON FUNCTION {FUNCTIONS}, public.global_stats_notify() FROM '
          || quote_ident(r);
      END LOOP;
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT EXECUTE ON FUNCTION {FUNCTIONS} TO service_role;
        REVOKE ALL ON FUNCTION public.global_stats_notify() FROM service_role;
      END IF;
    END
    $$
    """,
]

DOWNGRADE = [
    """
    DO $$
    BEGIN
      IF EXISTS (
        SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
        WHERE p.pubname = 'supabase_realtime' AND pr.prrelid = to_regclass('public.global_stats')
      ) THEN
        ALTER PUBLICATION supabase_realtime DROP TABLE public.global_stats;
      END IF;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS global_stats_notify ON public.global_stats",
    f"DROP FUNCTION IF EXISTS {FUNCTIONS}, public.global_stats_notify()",
    "DROP TABLE IF EXISTS public.global_stats",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
