"""The checks of the counter's objects: connection, migration, table, functions, trigger."""

from __future__ import annotations

from genisss_cli.conn import db
from genisss_cli.core import schema
from genisss_cli.core.checks import fixes
from genisss_cli.core.checks.model import (
    COLUMNS,
    FUNCTIONS,
    MIGRATE_UP,
    NOTIFY_FUNCTION,
    NULL_DEFAULTS,
    RERUN_033,
    RLS_HIDES,
    TABLE,
    CheckResult,
    Context,
    Findings,
    no_table,
    one,
    reason,
    rerun_fix,
    rls_hides,
)

# -- 1. connection --------------------------------------------------------------------------


def check_connection(ctx: Context) -> CheckResult:
    conn = ctx.conn
    f = Findings("connection")
    user, superuser, replication, standby = one(conn, """
        SELECT current_user, r.rolsuper, r.rolreplication, pg_is_in_recovery()
          FROM pg_roles r WHERE r.rolname = current_user""")
    attrs = ", ".join(a for a, on in (("superuser", superuser), ("replication", replication)) if on)
    found = f"PostgreSQL {db.server_version(conn)} as {user}" + (f" ({attrs})" if attrs else "")
    listen = "can LISTEN"
    if ctx.database.transaction_pooler:
        listen = "no LISTEN"
        f.fail(f"{found}; port 6543 is a transaction pooler: LISTEN (genisss watch) and "
               "--live cannot work through it", "use port 5432 (the direct or session-mode connection "
               "string)")
    else:
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("LISTEN genisss_check_probe")
                conn.execute("UNLISTEN genisss_check_probe")
        except Exception as exc:
            listen = "no LISTEN"
            f.fail(f"{found}; cannot LISTEN: {reason(exc)}",
                   "connect to the primary server, not a standby")
        else:
            if db.gives_sessions_away(conn, ctx.database):
                listen = "no LISTEN"
                f.fail(f"{found}; {ctx.database.where} is a transaction pooler (it gave this "
                       "connection's server session to another client): LISTEN (genisss watch) "
                       "and --live cannot work through it",
                       "use the direct or session-mode connection string")
    if standby and not f.fails:
        f.fail(f"{found}; this is a standby (read-only)", "connect to the primary server, not a standby")
    return f.result(f"{found}; {listen}")


# -- 2. migration ------------------------------------------------------------------------


def check_migration(ctx: Context) -> CheckResult:
    current = schema.current_revision(ctx.conn)
    if current == schema.HEAD:
        return CheckResult("migration", "pass", f"at head ({current})")
    if current is None and rls_hides(ctx.conn, "public.alembic_version"):
        return CheckResult("migration", "warn", "cannot read public.alembic_version: "
                           f"{RLS_HIDES}")
    if current is None and ctx.table_oid:
        return CheckResult("migration", "fail", "global_stats exists but genisss recorded no revision "
                           "(033 applied by hand); migrate up adopts it and keeps the counter", MIGRATE_UP)
    if current in (None, schema.BASELINE):
        return CheckResult("migration", "fail", f"at {current or 'base'}, head is {schema.HEAD}",
                           MIGRATE_UP)
    return CheckResult("migration", "warn", f"at {current}, which this genisss does not know "
                       f"(its head is {schema.HEAD}); a newer genisss migrated it?")


# -- 3. table -------------------------------------------------------------------------------


def check_table(ctx: Context) -> CheckResult:
    conn = ctx.conn
    f = Findings("table")
    if not ctx.table_oid:
        return CheckResult("table", "fail", "public.global_stats does not exist", rerun_fix(ctx))
    have = {name: (typ, notnull) for name, typ, notnull in conn.execute("""
        SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
         WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped""", [ctx.table_oid])}
    for col, (typ, notnull, ddl) in COLUMNS.items():
        if col not in have:
            f.fail(f"column {col} is missing",
                   f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {col} {ddl}")
        elif have[col][0] != typ:
            f.fail(f"column {col} is {have[col][0]}, expected {typ}",
                   f"ALTER TABLE {TABLE} ALTER COLUMN {col} TYPE {typ} USING {col}::{typ}")
        elif notnull and not have[col][1]:
            f.fail(f"column {col} allows NULL",
                   f"UPDATE {TABLE} SET {col} = {NULL_DEFAULTS[col]} WHERE {col} IS NULL",
                   f"ALTER TABLE {TABLE} ALTER COLUMN {col} SET NOT NULL")
    if "id" not in have:
        return f.result("")
    singleton_check = one(conn, """
        SELECT count(*) FROM pg_constraint
         WHERE conrelid = %s AND contype = 'c'
           AND pg_get_constraintdef(oid) ~ '^CHECK \\(\\(id = ''singleton''::text\\)\\)$'""",
                           [ctx.table_oid])[0]
    if rls_hides(conn, TABLE):
        f.warn(f"cannot count the rows: {RLS_HIDES}")
        return f.result("")
    total, singletons, others = one(conn, """
        SELECT count(*), count(*) FILTER (WHERE id = 'singleton'),
               coalesce(string_agg(quote_literal(id), ', ' ORDER BY id)
                          FILTER (WHERE id IS DISTINCT FROM 'singleton'), '')
          FROM public.global_stats""")
    if total - singletons:
        f.fail(f"{total} rows, expected exactly one (other ids: {others})", fixes.extra_rows())
    if singletons > 1:  # the primary key was dropped: the increments update both
        f.fail(f"{singletons} rows with id 'singleton' (no primary key): every increment updates each",
               fixes.duplicate_singletons())
    if not singletons:
        has_stories = one(conn, "SELECT to_regclass('public.user_stories') IS NOT NULL")[0]
        f.fail("the singleton row is missing", fixes.missing_row(has_stories))
    if not singleton_check:
        f.fail("no CHECK (id = 'singleton') constraint: a second row could be added",
               f"ALTER TABLE {TABLE} ADD CONSTRAINT global_stats_singleton CHECK (id = 'singleton')")
    return f.result("expected columns and types; one row, id = 'singleton'")


# -- 4. functions -----------------------------------------------------------------------


def check_functions(ctx: Context) -> CheckResult:
    f = Findings("functions")
    for name in FUNCTIONS:
        sig = f"public.{name}()"
        row = one(ctx.conn, "SELECT prosecdef, proconfig FROM pg_proc WHERE oid = to_regprocedure(%s)",
                   [sig])
        if row is None:
            f.fail(f"{sig} is missing", fixes.missing_function(ctx.revision))
            continue
        secdef, config = row
        if not secdef:
            f.fail(f"{sig} is not SECURITY DEFINER (the worker's role would need write access)",
                   f"ALTER FUNCTION {sig} SECURITY DEFINER")
        path = next((c.split("=", 1)[1] for c in config or [] if c.startswith("search_path=")), None)
        if path is None:
            f.fail(f"{sig} has no fixed search_path (the caller's search_path decides what its "
                   "names mean)", f"ALTER FUNCTION {sig} SET search_path = ''")
        elif "$user" in path:
            f.fail(f"{sig} has search_path {path}, which depends on the caller",
                   f"ALTER FUNCTION {sig} SET search_path = ''")
    return f.result("the 3 functions exist, SECURITY DEFINER, with a fixed search_path")


# -- 9. NOTIFY trigger ------------------------------------------------------------------------


def check_trigger(ctx: Context) -> CheckResult:
    conn = ctx.conn
    name = "trigger"
    if not ctx.table_oid:
        return no_table(name)
    func = one(conn, "SELECT to_regprocedure(%s)::oid", [NOTIFY_FUNCTION])[0]
    if not func:
        return CheckResult(name, "fail", f"{NOTIFY_FUNCTION} is missing, so no NOTIFY is sent",
                           fixes.missing_function(ctx.revision))
    rows = conn.execute("""
        SELECT tgname, tgenabled, (tgtype & 1) <> 0 AND (tgtype & 16) <> 0 AND (tgtype & 66) = 0,
               pg_get_triggerdef(oid) LIKE %s
          FROM pg_trigger WHERE tgrelid = %s AND tgfoid = %s AND NOT tgisinternal ORDER BY tgname""",
                        [f"%WHEN ((NOT pg_try_advisory_xact_lock('{schema.WATCH_LOCK}'::bigint)))%",
                         ctx.table_oid, func]).fetchall()
    good = [(t, enabled, gated) for t, enabled, shape, gated in rows if shape]
    live = [(t, gated) for t, enabled, gated in good if enabled in ("O", "A")]
    if live and (any(gated for _, gated in live) or not schema.reached(ctx.revision, schema.WATCHED)):
        how = "only while watched" if any(gated for _, gated in live) else "on every update"
        return CheckResult(name, "pass", f"{live[0][0]}: AFTER UPDATE FOR EACH ROW, enabled, notifies {how}")
    if live:  # at 034 or later yet notifying on every update: 034's trigger was replaced by hand
        return CheckResult(name, "warn", f"{live[0][0]} notifies on every update, not only while watched "
                           "(migration 034): every increment pays for a NOTIFY", RERUN_033)
    if good:
        t = good[0][0]
        state = "disabled" if good[0][1] == "D" else "enabled for replicas only"
        return CheckResult(name, "fail", f"trigger {t} is {state}: no NOTIFY on global_stats",
                           fixes.disabled_trigger(ctx.ident(t)))
    return CheckResult(name, "fail", "no AFTER UPDATE trigger runs global_stats_notify(): "
                       "genisss watch sees nothing", fixes.missing_notify_trigger())


