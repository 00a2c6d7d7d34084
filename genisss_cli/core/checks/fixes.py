"""The one table of fixes: for each broken state of the counter, what repairs it.

`genisss check` (its rows) and `genisss watch` (its errors at start and its
notes) name a state and take its fix from here, so that the two commands can
never give different advice for the same database. A fix is runnable SQL
where one precise statement exists, else the genisss command that restores
the objects; never a blanket "run migrate up" where the migration is applied.

| state | fix |
|---|---|
| the table is missing | before 033: `migrate up`; at head, RERUN_033 (033's statements); else repair |
| the singleton row is missing | INSERT the row, total_stories counted from user_stories |
| rows besides the singleton | DELETE them |
| two rows with id 'singleton' (no primary key) | keep the newest, then ADD PRIMARY KEY |
| the NOTIFY trigger is disabled (or replica-only) | ALTER TABLE ... ENABLE TRIGGER |
| the NOTIFY trigger is missing | DROP/CREATE TRIGGER, as 034 writes it |
| a function is missing | before 033: `genisss migrate up`; else `genisss migrate repair --yes` |
| the table is not in the publication | ALTER PUBLICATION ... ADD TABLE |
| 035's broadcast function or trigger is missing | `migrate up` below 035; then `migrate repair --yes` |
"""

from __future__ import annotations

from genisss_cli.core import schema

TABLE = schema.TABLE
MIGRATE_UP = "genisss migrate up"
# Reruns migration 033's statements (and those after it) when the revision is
# already at head, where `genisss migrate up` has nothing to do; each is idempotent.
RERUN_033 = 'genisss migrate sql up --from baseline | psql -v ON_ERROR_STOP=1 "$DATABASE_URL"'
# Re-creates what the current revision should have (functions, triggers, the
# row, grants), keeping every counter value.
REPAIR = "genisss migrate repair --yes"
RELAY = "genisss relay"  # the coalesced broadcast's trailing send (a long-running process)
COMMANDS = (RERUN_033, REPAIR, MIGRATE_UP, RELAY)


# An object that an applied revision made and that is gone: `migrate up` runs
# only the revisions not applied yet, so it would not make it again; repair
# reruns the applied ones. Before its revision, migrate up makes it.
def _applied(revision: str | None, made_by: str) -> bool:
    order = schema.REVISIONS
    return revision in order and order.index(revision) >= order.index(made_by)


def missing_table(revision: str | None) -> str:
    if not _applied(revision, schema.REALTIME):
        return MIGRATE_UP
    return RERUN_033 if revision == schema.HEAD else REPAIR


def missing_function(revision: str | None) -> str:
    return REPAIR if _applied(revision, schema.REALTIME) else MIGRATE_UP


def missing_broadcast(revision: str | None) -> str:
    """035's function and trigger, also where Realtime was set up after 035 ran."""
    return REPAIR if _applied(revision, schema.BROADCAST) else MIGRATE_UP


def missing_row(has_stories: bool = True) -> str:
    source = ("SELECT 'singleton', count(*) FROM public.user_stories" if has_stories
              else "VALUES ('singleton', 0)")
    return f"INSERT INTO {TABLE} (id, total_stories) {source} ON CONFLICT (id) DO NOTHING;"


def extra_rows() -> str:
    return f"DELETE FROM {TABLE} WHERE id IS DISTINCT FROM '{schema.ROW_ID}';"


def duplicate_singletons() -> str:
    """Two rows 'singleton' (the primary key was dropped): keep the one changed
    last. Without a key a published table refuses DELETE (no replica
    identity): FULL for the delete, DEFAULT (the key) again after."""
    return (f"ALTER TABLE {TABLE} REPLICA IDENTITY FULL;\n"
            f"DELETE FROM {TABLE} g USING {TABLE} h WHERE g.id = '{schema.ROW_ID}' "
            f"AND h.id = '{schema.ROW_ID}' AND (g.updated_at, g.ctid) < (h.updated_at, h.ctid);\n"
            f"ALTER TABLE {TABLE} ADD PRIMARY KEY (id);\n"
            f"ALTER TABLE {TABLE} REPLICA IDENTITY DEFAULT;")


def disabled_trigger(trigger_ident: str) -> str:
    """trigger_ident: the trigger's name, quoted as the server would."""
    return f"ALTER TABLE {TABLE} ENABLE TRIGGER {trigger_ident};"


def missing_notify_trigger() -> str:
    return (f"DROP TRIGGER IF EXISTS {schema.NOTIFY_TRIGGER} ON {TABLE};\n"
            f"CREATE TRIGGER {schema.NOTIFY_TRIGGER} AFTER UPDATE ON {TABLE} FOR EACH ROW "
            f"WHEN (NOT pg_catalog.pg_try_advisory_xact_lock({schema.WATCH_LOCK}))\n"
            f"EXECUTE FUNCTION {schema.NOTIFY_FUNCTION}();")


def not_published(publication_ident: str) -> str:
    return f"ALTER PUBLICATION {publication_ident} ADD TABLE {TABLE};"
