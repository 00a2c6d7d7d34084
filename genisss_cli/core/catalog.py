"""The counter's objects as the catalog shows them, and what changed between two looks.

repair, stamp and adoption compare a snapshot before and after running the
migrations' own statements (core/migrate.py:upgrade_statements): the
migrations are the one description of what each revision should have, and
this module only reads what is there. Scope: the counter's tables and every
table in genisss's own schema, their columns, constraints, triggers, policies,
grants, publications and rows; the functions in public that are genisss's or
read global_stats and every function in genisss's schema; the schema itself;
policies elsewhere that name global_stats (a Realtime topic's); pg_cron jobs
that call into genisss's schema. It names no object a later migration adds:
what lives in genisss's schema is in scope by where it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from psycopg import sql

from genisss_cli.core import schema

_TABLES = [schema.TABLE, schema.STORIES]
_FUNCTIONS = [f.split(".", 1)[1] for f in (*schema.FUNCTIONS, schema.NOTIFY_FUNCTION,
                                           schema.BROADCAST_FUNCTION)]

_COUNTERS = ("total_stories", "total_audio_generations")  # what a row's Change shows of it

# (kind, query): each row is (name, aspect, value); an object is its kind and name.
_QUERIES = [
    ("table", """
        SELECT c.oid::regclass::text, a.k, a.v FROM pg_class c,
          LATERAL (VALUES ('row level security', c.relrowsecurity::text),
                          ('grants', coalesce(c.relacl::text, 'default')),
                          ('comment', coalesce(obj_description(c.oid, 'pg_class'), ''))) AS a(k, v)
        WHERE c.oid = ANY (%(tables)s::regclass[])"""),
    ("column", """
        SELECT attrelid::regclass::text || '.' || attname, 'definition',
               format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null' ELSE '' END
               || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE attrelid = ANY (%(tables)s::regclass[]) AND attnum > 0 AND NOT attisdropped"""),
    ("constraint", """
        SELECT conrelid::regclass::text || ' ' || conname, 'definition', pg_get_constraintdef(oid)
        FROM pg_constraint WHERE conrelid = ANY (%(tables)s::regclass[])
          AND contype <> 'n'  -- PostgreSQL 18's NOT NULL: the column's definition has it"""),
    ("trigger", """
        SELECT tgname || ' on ' || tgrelid::regclass::text, a.k, a.v FROM pg_trigger t,
          LATERAL (VALUES ('definition', pg_get_triggerdef(t.oid)),
                          ('enabled', CASE tgenabled WHEN 'D' THEN 'disabled' ELSE 'enabled' END)) AS a(k, v)
        WHERE tgrelid = ANY (%(tables)s::regclass[]) AND NOT tgisinternal"""),
    ("policy", """
        SELECT policyname || ' on ' || schemaname || '.' || tablename, 'definition',
               cmd || ' to ' || roles::text || ' using ' || coalesce(qual, '')
               || coalesce(' with check ' || with_check, '')
        FROM pg_policies WHERE (schemaname || '.' || tablename) = ANY (%(tables)s)
           OR qual LIKE '%%global_stats%%' OR with_check LIKE '%%global_stats%%'"""),
    ("function", """
        SELECT p.oid::regprocedure::text, a.k, a.v FROM pg_proc p,
          LATERAL (VALUES ('definition', md5(pg_get_functiondef(p.oid))),
                          ('grants', coalesce(p.proacl::text, 'default'))) AS a(k, v)
        WHERE p.prokind = 'f' AND (p.pronamespace = to_regnamespace(%(own)s)
          OR p.pronamespace = 'public'::regnamespace
             AND (p.proname = ANY (%(functions)s) OR p.prosrc LIKE '%%global_stats%%'))"""),
    ("schema", """
        SELECT nspname, 'grants', coalesce(nspacl::text, 'default') FROM pg_namespace
        WHERE nspname = %(own)s"""),
    ("publication", """
        SELECT pubname || ': ' || schemaname || '.' || tablename, 'member', 'yes'
        FROM pg_publication_tables WHERE (schemaname || '.' || tablename) = ANY (%(tables)s)"""),
]


@dataclass(frozen=True)
class Change:
    """One object that differs between two snapshots."""

    kind: str  # table, column, constraint, trigger, policy, function, publication, row
    name: str
    change: str  # added, replaced, removed
    aspects: list[str] = field(default_factory=list)  # replaced: the parts; an added row: its values

    def describe(self) -> str:
        what = f" ({', '.join(self.aspects)})" if self.aspects else ""
        return f"{self.kind} {self.name}: {self.change}{what}"


Snapshot = dict[tuple[str, str], dict[str, str]]


_OWN_TABLES = """
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname"""

# pg_cron's jobs that call into genisss's schema; read only where cron.job exists.
_CRON = """
    SELECT jobname, a.k, a.v FROM cron.job,
      LATERAL (VALUES ('schedule', schedule), ('command', command), ('active', active::text)) AS a(k, v)
    WHERE command LIKE '%%' || %(own)s || '.%%'"""


def _text(value) -> str:
    """A jsonb row's value as SQL would print it: true, null, 1.5, text."""
    return value if isinstance(value, str) else json.dumps(value)


def snapshot(conn) -> Snapshot:
    """What the catalog holds of the counter's objects now (in conn's transaction)."""
    present = [t for t in _TABLES
               if conn.execute("SELECT to_regclass(%s) IS NOT NULL", [t]).fetchone()[0]]
    own = conn.execute(_OWN_TABLES, [schema.OWN_SCHEMA]).fetchall()
    params = {"tables": present + [f"{n}.{t}" for n, t in own], "functions": _FUNCTIONS,
              "own": schema.OWN_SCHEMA}
    objects: Snapshot = {}
    queries = list(_QUERIES)
    if conn.execute("SELECT to_regclass('cron.job') IS NOT NULL").fetchone()[0]:
        queries.append(("cron job", _CRON))
    for kind, query in queries:
        for name, aspect, value in conn.execute(query, params).fetchall():
            objects.setdefault((kind, name), {})[aspect] = value
    if schema.TABLE in present:
        # As jsonb: a hand-made table (adoption) or a damaged one (repair) may
        # lack a counter column, which the migration is about to add.
        for (row,) in conn.execute(f"SELECT to_jsonb(g) FROM {schema.TABLE} AS g").fetchall():
            objects[("row", f"{schema.TABLE} id={row.get('id')}")] = {
                k: str(row[k]) for k in _COUNTERS if k in row}
    for nsp, table in own:  # genisss's own rows (037's settings): every column
        query = sql.SQL("SELECT to_jsonb(t) FROM {} AS t").format(sql.Identifier(nsp, table))
        for (row,) in conn.execute(query).fetchall():
            objects[("row", f"{nsp}.{table} id={_text(row.get('id'))}")] = {
                k: _text(v) for k, v in row.items() if k != "id"}
    return objects


def _values(key, aspects: dict[str, str]) -> list[str]:
    """What a row's Change shows of it: its counters (other objects: nothing)."""
    return [f"{k}={v}" for k, v in aspects.items()] if key[0] == "row" else []


def diff(before: Snapshot, after: Snapshot) -> list[Change]:
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if key not in before:  # a new row says what it starts at
            changes.append(Change(*key, "added", _values(key, after[key])))
        elif key not in after:
            changes.append(Change(*key, "removed"))
        elif before[key] != after[key]:
            aspects = sorted(k for k in before[key].keys() | after[key].keys()
                             if before[key].get(k) != after[key].get(k))
            changes.append(Change(*key, "replaced", aspects))
    return changes


def unchanged(before: Snapshot, changes: list[Change]) -> list[Change]:
    """The objects of before that changes leave as they were ("kept")."""
    changed = {(c.kind, c.name) for c in changes}
    return [Change(*key, "kept", _values(key, before[key])) for key in sorted(before) if key not in changed]


def names(snap: Snapshot) -> list[str]:
    return [f"{kind} {name}" for kind, name in sorted(snap)]
