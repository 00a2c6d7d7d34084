"""Who may do what to the counter: privileges of PUBLIC and Supabase's roles, and
what Realtime lets the browser's roles see."""

from __future__ import annotations

from collections.abc import Callable

from genisss_cli.core.checks.model import (
    API_ROLES,
    FUNCTIONS,
    NOTIFY_FUNCTION,
    TABLE,
    WORKER_ROLE,
    CheckResult,
    Context,
    Findings,
    no_table,
    one,
)

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
        oid = one(conn, "SELECT to_regprocedure(%s)::oid", [f"public.{name}()"])[0]
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
                       if not one(conn, "SELECT has_function_privilege(%s, %s, 'EXECUTE')", [role, oid])[0]]
            if missing:
                f.fail(f"{role} cannot EXECUTE {', '.join(missing)} (the worker calls them)",
                       f"GRANT EXECUTE ON FUNCTION {', '.join(missing)} TO {ctx.ident(role)}")
            return f.result(f"{role} can EXECUTE the {len(funcs)} functions")
        role_oid = ctx.roles.get(role) if role else None
        objects = [(TABLE, ctx.table_oid, "pg_class", "relowner")] if ctx.table_oid else []
        objects += [(sig, oid, "pg_proc", "proowner") for sig, oid in funcs.items()]
        if role_oid is not None:
            for what, oid, catalog, owner_col in objects:
                owner, member = one(conn, f"SELECT {owner_col}::regrole::text, "
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
        return no_table(name)
    f = Findings(name)
    rls, replident, has_pk = one(conn, """
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
            visible = one(conn, "SELECT count(*) FROM public.global_stats WHERE id = 'singleton'")[0]
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
        if not one(conn, "SELECT has_table_privilege(%s, %s, 'SELECT')", [role, ctx.table_oid])[0]:
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
        if rls and visible and one(conn, "SELECT pg_has_role(current_user, %s, 'MEMBER')", [role])[0]:
            with conn.transaction(force_rollback=True):
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                rows = one(conn, "SELECT count(*) FROM public.global_stats WHERE id = 'singleton'")[0]
            if not rows:
                restrictive = [p for p, permissive in policies if not permissive]
                fixes = [*policy_fix, *(ctx.sql("DROP POLICY {} ON public.global_stats", p)
                                        for p in restrictive)]
                f.fail(f"{role} reads no row through the policies "
                       f"({', '.join(p for p, _ in policies)})", *fixes)
    return f.result(f"primary key, RLS on, {' and '.join(readers)} can SELECT the row")




# -- 5b. other write paths -------------------------------------------------------------------

# Relations built on global_stats (a view, or a table with a rule that acts on
# it) that a role may write through: an auto-updatable view writes with its
# owner's privileges, whatever the role may do to the table itself.
_WRITABLE_RELATIONS = """
    SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind = 'v'
      FROM pg_depend d
      JOIN pg_rewrite r ON r.oid = d.objid
      JOIN pg_class c ON c.oid = r.ev_class
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %(t)s AND c.oid <> %(t)s
       AND (has_table_privilege(%(role)s, c.oid, 'INSERT') OR has_table_privilege(%(role)s, c.oid, 'UPDATE')
            OR has_table_privilege(%(role)s, c.oid, 'DELETE'))
     ORDER BY 1"""
# SECURITY DEFINER functions other than the counter's own that a role may call
# and that reach the table or the functions: by their recorded dependencies
# (SQL bodies) or, for PL/pgSQL, whose dependencies are not recorded, by name.
_DEFINER_PATHS = """
    SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname)
           || '(' || pg_get_function_identity_arguments(p.oid) || ')' FROM pg_proc p
      JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND NOT p.oid = ANY (%(ours)s::oid[])
       AND has_function_privilege(%(role)s, p.oid, 'EXECUTE')
       AND (EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                      AND (d.refobjid = %(t)s OR d.refobjid = ANY (%(ours)s::oid[])))
            OR p.prosrc ~* %(names)s)
     ORDER BY 1"""


def check_write_paths(ctx: Context) -> CheckResult:
    """Neither browser role reaches global_stats or the increments another way:
    a view or rule it may write through, or a definer function it may call."""
    name = "write paths"
    if not ctx.table_oid:
        return no_table(name)
    roles = [r for r in API_ROLES if r in ctx.roles]
    if not roles:
        return CheckResult(name, "skipped", "roles anon and authenticated do not exist (not a Supabase "
                           "database)")
    conn = ctx.conn
    f = Findings(name)
    funcs = _function_oids(conn)
    ours = [*funcs.values()]
    notify = one(conn, "SELECT to_regprocedure(%s)::oid", [NOTIFY_FUNCTION])[0]
    if notify:
        ours.append(notify)
    names = "|".join(["global_stats", *FUNCTIONS])
    for role in roles:
        for relation, is_view in conn.execute(_WRITABLE_RELATIONS, {"t": ctx.table_oid, "role": role}):
            what = "view" if is_view else "table with a rule on global_stats"
            f.fail(f"{role} may write global_stats through the {what} {relation}",
                   f"REVOKE INSERT, UPDATE, DELETE ON {relation} FROM {ctx.ident(role)}")
        for (function,) in conn.execute(_DEFINER_PATHS, {"t": ctx.table_oid, "role": role, "ours": ours,
                                                          "names": names}):
            f.fail(f"{role} may call {function}, a SECURITY DEFINER function that reaches global_stats",
                   f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC, {ctx.ident(role)}")
    return f.result(f"no view, rule or definer function lets {' or '.join(roles)} write the counter")
