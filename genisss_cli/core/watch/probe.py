"""What stops `genisss watch` from showing the counter, read from the catalogs,
each state with its fix from the one table of fixes (core/checks/fixes.py).

A *broken* state means the feed cannot work (no table, no row, two rows
'singleton', no NOTIFY function or an absent or disabled trigger): watch
exits 5 at start, and says so while it watches (docs/watch.md). A *note* is
a state the feed survives but an operator should hear of (another row, the
table missing from its publication): watch prints it once at start.
"""

from __future__ import annotations

from dataclasses import dataclass

from genisss_cli.core import schema
from genisss_cli.core.checks import fixes
from genisss_cli.errors import Exit, GenisssError

# One round trip over the catalogs; the table's rows are counted after, only
# where it exists (a query naming a missing table does not parse).
_CATALOG_SQL = f"""
    SELECT to_regclass('{schema.TABLE}') IS NOT NULL,
           to_regprocedure('{schema.NOTIFY_FUNCTION}()') IS NOT NULL,
           (SELECT t.tgenabled FROM pg_catalog.pg_trigger t
             WHERE t.tgrelid = to_regclass('{schema.TABLE}') AND t.tgname = '{schema.NOTIFY_TRIGGER}'),
           (SELECT pg_catalog.quote_ident(p.pubname) FROM pg_catalog.pg_publication p
             WHERE p.pubname = '{schema.PUBLICATION}'
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables pt
                                WHERE pt.pubname = p.pubname AND pt.schemaname = 'public'
                                  AND pt.tablename = 'global_stats')),
           to_regclass('{schema.STORIES}') IS NOT NULL"""
_ROWS_SQL = (f"SELECT count(*) FILTER (WHERE id = '{schema.ROW_ID}'), "
             f"count(*) FILTER (WHERE id IS DISTINCT FROM '{schema.ROW_ID}') FROM {schema.TABLE}")


@dataclass(frozen=True)
class Problem:
    what: str
    fix: str
    broken: bool  # False: a note, the feed works

    def error(self) -> GenisssError:
        return GenisssError(Exit.NOT_MIGRATED, self.what, f"fix: {self.fix}")


def problems(conn, revision: str | None) -> list[Problem]:
    """Every state found, broken ones first; [] for a healthy counter."""
    has_table, has_function, trigger, unpublished, has_stories = conn.execute(_CATALOG_SQL).fetchone()
    if not has_table:
        at = revision or "base"
        applied = schema.reached(revision, schema.REALTIME)
        what = (f"{schema.TABLE} does not exist (at revision {at})" if applied
                else f"migration 033 is not applied (at revision {at}): {schema.TABLE} does not exist")
        return [Problem(what, fixes.missing_table(revision), True)]
    found = []
    singletons, others = conn.execute(_ROWS_SQL).fetchone()
    if not singletons:
        found.append(Problem("global_stats has no 'singleton' row", fixes.missing_row(has_stories), True))
    elif singletons > 1:
        found.append(Problem(f"global_stats has {singletons} rows with id 'singleton' (no primary key): "
                             "which one watch shows is chance", fixes.duplicate_singletons(), True))
    if not has_function:
        found.append(Problem(f"{schema.NOTIFY_FUNCTION}() is missing: no change would arrive",
                             fixes.missing_function(revision), True))
    elif trigger is None:
        found.append(Problem(f"global_stats has no NOTIFY trigger ({schema.NOTIFY_TRIGGER}): no change "
                             "would arrive", fixes.missing_notify_trigger(), True))
    elif trigger not in ("O", "A"):
        state = "disabled" if trigger == "D" else "enabled for replicas only"
        found.append(Problem(f"the NOTIFY trigger {schema.NOTIFY_TRIGGER} is {state}: no change would "
                             "arrive", fixes.disabled_trigger(schema.NOTIFY_TRIGGER), True))
    if others:
        found.append(Problem(f"global_stats has {others} row{'s' if others > 1 else ''} besides 'singleton' "
                             "(a second counter nobody reads)", fixes.extra_rows(), False))
    if unpublished:
        found.append(Problem(f"global_stats is not in publication {unpublished}: browsers get no live "
                             "updates (watch does)", fixes.not_published(unpublished), False))
    return found
