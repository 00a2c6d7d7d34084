"""`genisss check`: is this database ready for the realtime counter, and is it safe?

Each check reads the catalogs and returns CheckResult rows: pass, warn, fail or
skipped, what it found, and for a failure the SQL (or genisss command) that
repairs it. A check runs in its own transaction, so that one that raises (a
catalog the role may not read, say) becomes a warning that says why and does
not poison the others. The --live checks are in live.py. docs/check.md
explains every row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from genisss_cli import revisions
from genisss_cli.errors import Exit, GenisssError

DEFAULT_PUBLICATION = "supabase_realtime"
TABLE = "public.global_stats"
FUNCTIONS = ("increment_story_counter", "increment_audio_counter", "sync_story_counter")
NOTIFY_FUNCTION = "public.global_stats_notify()"
NOTIFY_TRIGGER = "global_stats_notify"
API_ROLES = ("anon", "authenticated")  # the browser's roles: read, never write
WORKER_ROLE = "service_role"  # the worker's role: may call the functions
QUEUE_WARN = 0.5  # pg_notification_queue_usage() from which a warning is raised
SLOT_LAG_WARN = 128 * 1024 * 1024  # bytes of WAL a Realtime slot may hold back
# Reruns migration 033's statements when the revision is already at head, where
# `genisss migrate up` has nothing to do; every statement is idempotent.
RERUN_033 = 'genisss migrate sql up --from baseline | psql -v ON_ERROR_STOP=1 "$DATABASE_URL"'
MIGRATE_UP = "genisss migrate up"
COMMANDS = (RERUN_033, MIGRATE_UP)

# name -> (type as format_type() prints it, NOT NULL, the DDL that adds it)
COLUMNS = {
    "id": ("text", True, "text NOT NULL DEFAULT 'singleton'"),
    "total_stories": ("bigint", True, "bigint NOT NULL DEFAULT 0"),
    "total_audio_generations": ("bigint", True, "bigint NOT NULL DEFAULT 0"),
    "last_story_at": ("timestamp with time zone", False, "timestamptz"),
    "last_audio_at": ("timestamp with time zone", False, "timestamptz"),
    "updated_at": ("timestamp with time zone", True, "timestamptz NOT NULL DEFAULT now()"),
}
NULL_DEFAULTS = {"id": "'singleton'", "total_stories": "0", "total_audio_generations": "0",
                 "updated_at": "now()"}


@dataclass
class CheckResult:
    name: str
    status: str  # pass | warn | fail | skipped
    detail: str
    fix: str | None = None


@dataclass
class Options:
    publication: str = DEFAULT_PUBLICATION
    live: bool = False
    live_timeout: float = 10.0
    queue_warn: float = QUEUE_WARN
    slot_lag_warn: int = SLOT_LAG_WARN


@dataclass
class Context:
    conn: object  # psycopg.Connection, autocommit
    database: object  # db.Database
    options: Options
    table_oid: int | None = None
    roles: dict[str, int] = field(default_factory=dict)  # Supabase roles that exist -> oid
    revision: str | None = None

    def ident(self, name: str) -> str:
        """An identifier quoted as the server would (bare where it can be), for a fix's text."""
        return self.conn.execute("SELECT quote_ident(%s)", [name]).fetchone()[0]

    def sql(self, template: str, *identifiers: str) -> str:
        """A fix's text: template with each {} filled by a quoted identifier."""
        return template.format(*(self.ident(i) for i in identifiers))


class Findings:
    """What one check found: failures and warnings, each with its fix."""

    def __init__(self, name: str):
        self.name = name
        self.fails: list[str] = []
        self.warns: list[str] = []
        self.fixes: list[str] = []

    def fail(self, what: str, *fixes: str) -> None:
        self.fails.append(what)
        self.fixes.extend(f for f in fixes if f not in self.fixes)

    def warn(self, what: str, *fixes: str) -> None:
        self.warns.append(what)
        self.fixes.extend(f for f in fixes if f not in self.fixes)

    def result(self, ok_detail: str) -> CheckResult:
        if not self.fails and not self.warns:
            return CheckResult(self.name, "pass", ok_detail)
        status = "fail" if self.fails else "warn"
        return CheckResult(self.name, status, "; ".join(self.fails + self.warns), join_fixes(self.fixes))


def join_fixes(fixes: list[str]) -> str | None:
    """SQL statements joined into one script; a genisss command repairs it all alone."""
    for command in COMMANDS:
        if command in fixes:
            return command
    return ";\n".join(fixes) + ";" if fixes else None


def reason(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else exc.__class__.__name__


def rerun_fix(ctx: Context) -> str:
    """What restores a missing object of migration 033."""
    return MIGRATE_UP if ctx.revision != revisions.HEAD else RERUN_033


RLS_HIDES = ("row level security hides its rows from this role (run genisss check as the table's owner "
             "to see them)")


def rls_hides(conn, table: str) -> bool:
    """Does row level security filter what this role reads from table?"""
    return bool(_one(conn, "SELECT row_security_active(to_regclass(%s))", [table])[0])


def _no_table(name: str) -> CheckResult:
    return CheckResult(name, "skipped", "public.global_stats does not exist (see table)")


def _one(conn, query: str, params=None):
    return conn.execute(query, params).fetchone()


# -- 1. connection --------------------------------------------------------------------------


def check_connection(ctx: Context) -> CheckResult:
    from genisss_cli.db import server_version

    conn = ctx.conn
    f = Findings("connection")
    user, superuser, replication, standby = _one(conn, """
        SELECT current_user, r.rolsuper, r.rolreplication, pg_is_in_recovery()
          FROM pg_roles r WHERE r.rolname = current_user""")
    attrs = ", ".join(a for a, on in (("superuser", superuser), ("replication", replication)) if on)
    found = f"PostgreSQL {server_version(conn)} as {user}" + (f" ({attrs})" if attrs else "")
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
            from genisss_cli import db

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
    current = revisions.current(ctx.conn)
    if current == revisions.HEAD:
        return CheckResult("migration", "pass", f"at head ({current})")
    if current is None and rls_hides(ctx.conn, "public.alembic_version"):
        return CheckResult("migration", "warn", "cannot read public.alembic_version: "
                           f"{RLS_HIDES}")
    if current is None and ctx.table_oid:
        return CheckResult("migration", "fail", "global_stats exists but genisss recorded no revision "
                           "(033 applied by hand); migrate up adopts it and keeps the counter", MIGRATE_UP)
    if current in (None, revisions.BASELINE):
        return CheckResult("migration", "fail", f"at {current or 'base'}, head is {revisions.HEAD}",
                           MIGRATE_UP)
    return CheckResult("migration", "warn", f"at {current}, which this genisss does not know "
                       f"(its head is {revisions.HEAD}); a newer genisss migrated it?")


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
    singleton_check = _one(conn, """
        SELECT count(*) FROM pg_constraint
         WHERE conrelid = %s AND contype = 'c'
           AND pg_get_constraintdef(oid) ~ '^CHECK \\(\\(id = ''singleton''::text\\)\\)$'""",
                           [ctx.table_oid])[0]
    if rls_hides(conn, TABLE):
        f.warn(f"cannot count the rows: {RLS_HIDES}")
        return f.result("")
    total, singletons, others = _one(conn, """
        SELECT count(*), count(*) FILTER (WHERE id = 'singleton'),
               coalesce(string_agg(quote_literal(id), ', ' ORDER BY id)
                          FILTER (WHERE id IS DISTINCT FROM 'singleton'), '')
          FROM public.global_stats""")
    if total - singletons:
        f.fail(f"{total} rows, expected exactly one (other ids: {others})",
               f"DELETE FROM {TABLE} WHERE id IS DISTINCT FROM 'singleton'")
    if not singletons:
        has_stories = _one(conn, "SELECT to_regclass('public.user_stories') IS NOT NULL")[0]
        source = "SELECT 'singleton', count(*) FROM public.user_stories" if has_stories else \
            "VALUES ('singleton', 0)"
        f.fail("the singleton row is missing",
               f"INSERT INTO {TABLE} (id, total_stories) {source} ON CONFLICT (id) DO NOTHING")
    if not singleton_check:
        f.fail("no CHECK (id = 'singleton') constraint: a second row could be added",
               f"ALTER TABLE {TABLE} ADD CONSTRAINT global_stats_singleton CHECK (id = 'singleton')")
    return f.result("expected columns and types; one row, id = 'singleton'")


# -- 4. functions -----------------------------------------------------------------------


def check_functions(ctx: Context) -> CheckResult:
    f = Findings("functions")
    for name in FUNCTIONS:
        sig = f"public.{name}()"
        row = _one(ctx.conn, "SELECT prosecdef, proconfig FROM pg_proc WHERE oid = to_regprocedure(%s)",
                   [sig])
        if row is None:
            f.fail(f"{sig} is missing", rerun_fix(ctx))
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


# -- 5. privileges -------------------------------------------------------------------------

# ACL entries that give privileges to PUBLIC (role NULL) or to a role through
# its own grants and the roles it inherits from; the owner's are left out.
_TABLE_GRANTS = """
    SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
      FROM pg_class c
     CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
     WHERE c.oid = %(obj)s AND a.grantee <> c.relowner AND {who}
    UNION
    SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
      FROM pg_class c JOIN pg_attribute att ON att.attrelid = c.oid
     CROSS JOIN LATERAL aclexplode(att.attacl) a
     WHERE c.oid = %(obj)s AND att.attnum > 0 AND NOT att.attisdropped
       AND a.grantee <> c.relowner AND {who}
"""
_FUNCTION_GRANTS = """
    SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
      FROM pg_proc p
     CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
     WHERE p.oid = %(obj)s AND a.grantee <> p.proowner AND {who}
"""
_PUBLIC = "a.grantee = 0"
_ROLE = "a.grantee <> 0 AND pg_has_role(%(role)s::oid, a.grantee, 'USAGE')"
WRITE_PRIVILEGES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER", "MAINTAIN")


def _grants(conn, query: str, obj: int, role: int | None) -> dict[str, list[str]]:
    """grantee -> privileges it gives."""
    out: dict[str, list[str]] = {}
    who = _PUBLIC if role is None else _ROLE
    for priv, grantee in conn.execute(query.format(who=who), {"obj": obj, "role": role}):
        out.setdefault(grantee, []).append(priv)
    return out


def _function_oids(conn) -> dict[str, int]:
    out = {}
    for name in FUNCTIONS:
        oid = _one(conn, "SELECT to_regprocedure(%s)::oid", [f"public.{name}()"])[0]
        if oid:
            out[f"public.{name}()"] = oid
    return out


def privileges_check(role: str | None) -> Callable[[Context], CheckResult]:
    """PUBLIC (role None) and the browser's roles must not write global_stats nor
    EXECUTE the functions; the worker's role must EXECUTE them."""
    label = role or "PUBLIC"
    name = f"privileges: {label}"

    def check(ctx: Context) -> CheckResult:
        if role is not None and role not in ctx.roles:
            return CheckResult(name, "skipped", f"role {role} does not exist (not a Supabase database)")
        conn = ctx.conn
        f = Findings(name)
        funcs = _function_oids(conn)
        if role == WORKER_ROLE:
            missing = [sig for sig, oid in funcs.items()
                       if not _one(conn, "SELECT has_function_privilege(%s, %s, 'EXECUTE')", [role, oid])[0]]
            if missing:
                f.fail(f"{role} cannot EXECUTE {', '.join(missing)} (the worker calls them)",
                       f"GRANT EXECUTE ON FUNCTION {', '.join(missing)} TO {ctx.ident(role)}")
            return f.result(f"{role} can EXECUTE the {len(funcs)} functions")
        role_oid = ctx.roles.get(role) if role else None
        objects = [(TABLE, ctx.table_oid, "pg_class", "relowner")] if ctx.table_oid else []
        objects += [(sig, oid, "pg_proc", "proowner") for sig, oid in funcs.items()]
        if role_oid is not None:
            for what, oid, catalog, owner_col in objects:
                owner, member = _one(conn, f"SELECT {owner_col}::regrole::text, "
                                     f"pg_has_role(%s::oid, {owner_col}, 'USAGE') FROM {catalog} "
                                     "WHERE oid = %s", [role_oid, oid])
                if member and owner == ctx.ident(role):
                    kind = "TABLE" if catalog == "pg_class" else "FUNCTION"
                    f.fail(f"{role} owns {what}", f"ALTER {kind} {what} OWNER TO CURRENT_USER")
                elif member:
                    f.fail(f"{role} is a member of {owner}, which owns {what}",
                           f"REVOKE {owner} FROM {ctx.ident(role)}")
        if ctx.table_oid:
            for grantee, privs in _grants(conn, _TABLE_GRANTS, ctx.table_oid, role_oid).items():
                writes = [p for p in WRITE_PRIVILEGES if p in privs]
                if writes:
                    f.fail(f"{label} can {'/'.join(writes)} global_stats{_via(grantee, role)}",
                           f"REVOKE {', '.join(writes)} ON TABLE {TABLE} FROM {grantee}")
        executable: dict[str, list[str]] = {}
        for sig, oid in funcs.items():
            for grantee, privs in _grants(conn, _FUNCTION_GRANTS, oid, role_oid).items():
                if "EXECUTE" in privs:
                    executable.setdefault(grantee, []).append(sig)
        for grantee, sigs in executable.items():
            f.fail(f"{label} can EXECUTE {', '.join(sigs)}{_via(grantee, role)}",
                   f"REVOKE EXECUTE ON FUNCTION {', '.join(sigs)} FROM {grantee}")
        parts = ["write global_stats"] if ctx.table_oid else []
        if funcs:
            parts.append(f"EXECUTE the {len(funcs)} functions")
        detail = f"{label} cannot {' nor '.join(parts)}" if parts else "nothing to check"
        if role and _public_grants(conn, ctx, funcs):
            detail += " by its own grants (it also has PUBLIC's: see privileges: PUBLIC)"
        return f.result(detail)

    return check


def _via(grantee: str, role: str | None) -> str:
    return "" if grantee in ("PUBLIC", role, f'"{role}"') else f" (through role {grantee})"


def _public_grants(conn, ctx: Context, funcs: dict[str, int]) -> bool:
    if ctx.table_oid and any(p in WRITE_PRIVILEGES for privs in _grants(
            conn, _TABLE_GRANTS, ctx.table_oid, None).values() for p in privs):
        return True
    return any("EXECUTE" in privs for oid in funcs.values()
               for privs in _grants(conn, _FUNCTION_GRANTS, oid, None).values())


# -- 6. Realtime visibility ---------------------------------------------------------------


def check_visibility(ctx: Context) -> CheckResult:
    from psycopg import sql

    conn = ctx.conn
    name = "realtime visibility"
    if not ctx.table_oid:
        return _no_table(name)
    f = Findings(name)
    rls, replident, has_pk = _one(conn, """
        SELECT c.relrowsecurity, c.relreplident,
               EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = c.oid AND contype = 'p')
          FROM pg_class c WHERE c.oid = %s""", [ctx.table_oid])
    if not has_pk:
        f.fail("global_stats has no primary key (Realtime and UPDATE replication need one)",
               f"ALTER TABLE {TABLE} ADD PRIMARY KEY (id)")
    elif replident == "n":
        f.fail("global_stats has REPLICA IDENTITY NOTHING: its UPDATEs cannot be published",
               f"ALTER TABLE {TABLE} REPLICA IDENTITY DEFAULT")
    readers = [r for r in API_ROLES if r in ctx.roles]
    try:  # the row as this role sees it; the read test below needs it
        with conn.transaction():
            visible = _one(conn, "SELECT count(*) FROM public.global_stats WHERE id = 'singleton'")[0]
    except Exception:
        visible = 0
    if not readers:
        if f.fails:
            return f.result("")
        return CheckResult(name, "skipped", "roles anon and authenticated do not exist (not a Supabase "
                           "database); primary key present")
    if not rls:
        f.fail("row level security is disabled on global_stats",
               f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY")
    policy_fix = [f"DROP POLICY IF EXISTS global_stats_read ON {TABLE}",
                  f"CREATE POLICY global_stats_read ON {TABLE} FOR SELECT TO "
                  f"{', '.join(ctx.ident(r) for r in readers)} USING (true)"]
    for role in readers:
        if not _one(conn, "SELECT has_table_privilege(%s, %s, 'SELECT')", [role, ctx.table_oid])[0]:
            f.fail(f"{role} lacks the SELECT privilege",
                   f"GRANT SELECT ON TABLE {TABLE} TO {ctx.ident(role)}")
            continue
        policies = conn.execute("""
            SELECT pol.polname, pol.polpermissive FROM pg_policy pol
             WHERE pol.polrelid = %(t)s AND pol.polcmd IN ('r', '*')
               AND (0 = ANY (pol.polroles) OR EXISTS (
                    SELECT 1 FROM unnest(pol.polroles) AS r(oid)
                     WHERE pg_has_role(%(role)s::oid, r.oid, 'USAGE')))""",
                                {"t": ctx.table_oid, "role": ctx.roles[role]}).fetchall()
        if rls and not any(permissive for _, permissive in policies):
            f.fail(f"no SELECT policy lets {role} read the row", *policy_fix)
            continue
        if rls and visible and _one(conn, "SELECT pg_has_role(current_user, %s, 'MEMBER')", [role])[0]:
            with conn.transaction(force_rollback=True):
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                rows = _one(conn, "SELECT count(*) FROM public.global_stats WHERE id = 'singleton'")[0]
            if not rows:
                restrictive = [p for p, permissive in policies if not permissive]
                fixes = [*policy_fix, *(ctx.sql("DROP POLICY {} ON public.global_stats", p)
                                        for p in restrictive)]
                f.fail(f"{role} reads no row through the policies "
                       f"({', '.join(p for p, _ in policies)})", *fixes)
    return f.result(f"primary key, RLS on, {' and '.join(readers)} can SELECT the row")


# -- 7. publication ------------------------------------------------------------------------


def check_publication(ctx: Context) -> CheckResult:
    conn = ctx.conn
    pub = ctx.options.publication
    name = "publication"
    f = Findings(name)
    row = _one(conn, """SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate
                          FROM pg_publication WHERE pubname = %s""", [pub])
    if row is None:
        fix = ctx.sql("CREATE PUBLICATION {}", pub) + (f" FOR TABLE {TABLE};" if ctx.table_oid else ";")
        return CheckResult(name, "fail", f"publication {pub} does not exist", fix)
    alltables, *ops = row
    published = [op for op, on in zip(("insert", "update", "delete", "truncate"), ops, strict=True) if on]
    if not row[2]:
        wanted = [op for op in ("insert", "update", "delete", "truncate")
                  if op in published or op == "update"]
        f.fail(f"{pub} does not publish UPDATE (publishes: {', '.join(published) or 'nothing'})",
               ctx.sql("ALTER PUBLICATION {} SET (publish = ", pub) + f"'{', '.join(wanted)}')")
    if ctx.table_oid:
        included = _one(conn, """SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = %s
                                   AND schemaname = 'public' AND tablename = 'global_stats')""", [pub])[0]
        if not included:
            f.fail(f"{pub} does not include public.global_stats",
                   ctx.sql("ALTER PUBLICATION {} ADD TABLE ", pub) + TABLE)
    else:
        f.fail(f"{pub} cannot include public.global_stats, which does not exist", rerun_fix(ctx))
    scope = "all tables" if alltables else "public.global_stats"
    return f.result(f"{pub} publishes {', '.join(published)} of {scope}")


# -- 8. wal_level ------------------------------------------------------------------------------


def check_wal_level(ctx: Context) -> CheckResult:
    try:
        with ctx.conn.transaction():
            level = _one(ctx.conn, "SHOW wal_level")[0]
    except Exception as exc:
        return CheckResult("wal_level", "warn", f"cannot read wal_level ({reason(exc)}); on a managed "
                           "server (Supabase) it is logical")
    if level == "logical":
        return CheckResult("wal_level", "pass", "logical")
    return CheckResult("wal_level", "fail", f"{level}: no logical decoding, so Supabase Realtime (and "
                       "--live's publication path) cannot see changes",
                       "ALTER SYSTEM SET wal_level = logical; -- then restart PostgreSQL")


# -- 9. NOTIFY trigger ------------------------------------------------------------------------


def check_trigger(ctx: Context) -> CheckResult:
    conn = ctx.conn
    name = "trigger"
    if not ctx.table_oid:
        return _no_table(name)
    func = _one(conn, "SELECT to_regprocedure(%s)::oid", [NOTIFY_FUNCTION])[0]
    if not func:
        return CheckResult(name, "fail", f"{NOTIFY_FUNCTION} is missing, so no NOTIFY is sent",
                           rerun_fix(ctx))
    rows = conn.execute("""
        SELECT tgname, tgenabled, (tgtype & 1) <> 0 AND (tgtype & 16) <> 0 AND (tgtype & 66) = 0,
               pg_get_triggerdef(oid) LIKE %s
          FROM pg_trigger WHERE tgrelid = %s AND tgfoid = %s AND NOT tgisinternal ORDER BY tgname""",
                        [f"%WHEN ((NOT pg_try_advisory_xact_lock('{revisions.WATCH_LOCK}'::bigint)))%",
                         ctx.table_oid, func]).fetchall()
    good = [(t, enabled, gated) for t, enabled, shape, gated in rows if shape]
    live = [(t, gated) for t, enabled, gated in good if enabled in ("O", "A")]
    if live and (any(gated for _, gated in live) or ctx.revision != revisions.HEAD):
        how = "only while watched" if any(gated for _, gated in live) else "on every update"
        return CheckResult(name, "pass", f"{live[0][0]}: AFTER UPDATE FOR EACH ROW, enabled, notifies {how}")
    if live:  # at head (034) yet notifying on every update: 034's trigger was replaced by hand
        return CheckResult(name, "warn", f"{live[0][0]} notifies on every update, not only while watched "
                           "(migration 034): every increment pays for a NOTIFY", RERUN_033)
    if good:
        t = good[0][0]
        state = "disabled" if good[0][1] == "D" else "enabled for replicas only"
        return CheckResult(name, "fail", f"trigger {t} is {state}: no NOTIFY on global_stats",
                           ctx.sql("ALTER TABLE public.global_stats ENABLE TRIGGER {}", t) + ";")
    fix = (f"DROP TRIGGER IF EXISTS {NOTIFY_TRIGGER} ON {TABLE};\n"
           f"CREATE TRIGGER {NOTIFY_TRIGGER} AFTER UPDATE ON {TABLE} FOR EACH ROW "
           f"WHEN (NOT pg_catalog.pg_try_advisory_xact_lock({revisions.WATCH_LOCK}))\n"
           f"EXECUTE FUNCTION {NOTIFY_FUNCTION};")
    return CheckResult(name, "fail", "no AFTER UPDATE trigger runs global_stats_notify(): "
                       "genisss watch sees nothing", fix)


# -- 10. drift ---------------------------------------------------------------------------------


def check_drift(ctx: Context) -> CheckResult:
    from genisss_cli import counters

    if not ctx.table_oid:
        return _no_table("drift")
    for table in (TABLE, counters.STORIES.table):
        if rls_hides(ctx.conn, table):
            return CheckResult("drift", "warn", f"cannot compare: on {table}, {RLS_HIDES}")
    try:
        report = counters.drift(ctx.conn)
    except GenisssError as exc:
        return CheckResult("drift", "skipped", f"cannot compare: {exc.message} (see table)")
    figures = [f"{r.name}: counter {r.counter}, actual {r.actual}, drift {r.drift:+d}"
               + (" (estimate)" if r.estimated else "") for r in report.rows]
    if report.ok:
        return CheckResult("drift", "pass", "; ".join(figures) or "no counters")
    fix = "SELECT * FROM public.sync_story_counter();" if any(
        r.drift and r.name == "stories" for r in report.rows) else None
    return CheckResult("drift", "warn", "; ".join(figures), fix)


# -- 11. NOTIFY queue ----------------------------------------------------------------------------


def check_notify_queue(ctx: Context) -> CheckResult:
    conn = ctx.conn
    usage = _one(conn, "SELECT pg_notification_queue_usage()")[0]
    found = f"{usage * 100:.1f}% of the NOTIFY queue in use"
    if usage < ctx.options.queue_warn:
        return CheckResult("notify queue", "pass", found)
    oldest = _one(conn, """
        SELECT pid, coalesce(usename, '?'), coalesce(application_name, ''),
               extract(epoch FROM now() - xact_start)::bigint
          FROM pg_stat_activity
         WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
         ORDER BY (state LIKE 'idle in transaction%') DESC, xact_start LIMIT 1""")
    if oldest is None:
        return CheckResult("notify queue", "warn", f"{found}: a listener is not reading "
                           "(in a long transaction?)")
    pid, user, app, age = oldest
    return CheckResult("notify queue", "warn",
                       f"{found}: a listener in a long transaction holds it; oldest transaction: "
                       f"pid {pid} ({user}, {app or 'no application_name'}), open {age} s",
                       f"SELECT pg_terminate_backend({int(pid)});")


# -- 12. replication slot ------------------------------------------------------------------------


def check_replication_slot(ctx: Context) -> CheckResult:
    conn = ctx.conn
    name = "replication slot"
    rows = conn.execute("""
        SELECT slot_name, active, wal_status,
               CASE WHEN pg_is_in_recovery() THEN NULL
                    ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint END
          FROM pg_replication_slots
         WHERE slot_name LIKE 'supabase\\_realtime%' AND database = current_database()
         ORDER BY slot_name""").fetchall()
    if not rows:
        return CheckResult(name, "skipped", "no supabase_realtime* slot in this database: Supabase "
                           "Realtime does not read it (expected outside Supabase)")
    f = Findings(name)
    found = []
    for slot, active, wal_status, lag in rows:
        drop = ctx.conn.execute("SELECT format('SELECT pg_drop_replication_slot(%%L)', %s::text)",
                                [slot]).fetchone()[0]
        state = "active" if active else "idle (Realtime reads it by polling)"
        lag_text = "?" if lag is None else _size(lag)
        found.append(f"{slot}: {state}, lag {lag_text}")
        if wal_status == "lost":
            f.fail(f"{slot} has lost the WAL it needs; Realtime recreates it when dropped", drop)
        elif lag is not None and lag >= ctx.options.slot_lag_warn:
            what = "active but behind" if active else "not read by anyone"
            f.warn(f"{slot} is {what}: lag {lag_text} of WAL held on disk; dropping it releases the "
                   "WAL (Realtime recreates it)", drop)
    return f.result("; ".join(found))


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# -- running them ------------------------------------------------------------------------------

# (name, check, runs its own transaction)
CHECKS: list[tuple[str, Callable[[Context], CheckResult | list[CheckResult]], bool]] = [
    ("connection", check_connection, True),  # idle between statements: the pooler probe needs it
    ("migration", check_migration, False),
    ("table", check_table, False),
    ("functions", check_functions, False),
    ("privileges: PUBLIC", privileges_check(None), False),
    *((f"privileges: {r}", privileges_check(r), False) for r in (*API_ROLES, WORKER_ROLE)),
    ("realtime visibility", check_visibility, False),
    ("publication", check_publication, False),
    ("wal_level", check_wal_level, True),
    ("trigger", check_trigger, False),
    ("drift", check_drift, True),  # counters.drift() picks its own isolation level
    ("notify queue", check_notify_queue, False),
    ("replication slot", check_replication_slot, False),
]


def load_facts(ctx: Context) -> None:
    conn = ctx.conn
    try:
        with conn.transaction():
            ctx.table_oid = _one(conn, "SELECT to_regclass('public.global_stats')::oid")[0]
            ctx.roles = dict(conn.execute("SELECT rolname, oid FROM pg_roles WHERE rolname = ANY(%s)",
                                          [[*API_ROLES, WORKER_ROLE]]).fetchall())
    except Exception:
        _reset(conn)
    try:
        with conn.transaction():
            ctx.revision = revisions.current(conn)
    except Exception:
        _reset(conn)


def run_one(ctx: Context, name: str, check, own_transaction: bool) -> list[CheckResult]:
    conn = ctx.conn
    try:
        if own_transaction:
            out = check(ctx)
        else:
            with conn.transaction():
                conn.execute("SET LOCAL statement_timeout = '30s'")
                conn.execute("SET LOCAL lock_timeout = '5s'")
                out = check(ctx)
    except Exception as exc:
        out = CheckResult(name, "warn", f"could not check: {reason(exc)}")
    finally:
        _reset(conn)
    return out if isinstance(out, list) else [out]


def _reset(conn) -> None:
    """Leave the connection idle, whatever a check did to it."""
    from psycopg.pq import TransactionStatus

    try:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
    except Exception:
        pass


def run(database, options: Options | None = None) -> list[CheckResult]:
    """Connect, run every check (and the live ones with options.live), return the rows."""
    from genisss_cli import db as dbmod

    options = options or Options()
    # --live needs sessions (LISTEN, a temporary slot): refused through a transaction
    # pooler, like `genisss watch`. Without it, the connection row says what is wrong.
    with dbmod.connect(database, session=options.live) as conn:
        ctx = Context(conn, database, options)
        load_facts(ctx)
        results: list[CheckResult] = []
        for name, check, own in CHECKS:
            results.extend(run_one(ctx, name, check, own))
        if options.live:
            from genisss_cli import live

            try:
                results.extend(live.run(ctx))
            except Exception as exc:
                why = f"could not run: {reason(exc)}"
                results.extend(CheckResult(row, "warn", why) for row in (live.LISTEN_ROW, live.SLOT_ROW))
            finally:
                _reset(conn)
    return results


def exit_code(results: list[CheckResult], strict: bool = False) -> int:
    bad = {"fail", "warn"} if strict else {"fail"}
    return Exit.FINDING if any(r.status in bad for r in results) else Exit.OK

