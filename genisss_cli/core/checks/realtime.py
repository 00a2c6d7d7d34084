"""What Realtime needs around the counter: publication, wal_level, Broadcast,
drift, the NOTIFY queue, Realtime's replication slot."""

from __future__ import annotations

import psycopg

from genisss_cli.core import counters, schema
from genisss_cli.core.checks import fixes
from genisss_cli.core.checks.model import (
    NO_BROADCAST,
    RLS_HIDES,
    TABLE,
    CheckResult,
    Context,
    Findings,
    no_table,
    one,
    quote_literal,
    reason,
    rerun_fix,
    rls_hides,
)
from genisss_cli.errors import GenisssError

# -- 7. publication ------------------------------------------------------------------------


def check_publication(ctx: Context) -> CheckResult:
    conn = ctx.conn
    pub = ctx.options.publication
    name = "publication"
    f = Findings(name)
    row = one(conn, """SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate
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
        included = one(conn, """SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = %s
                                   AND schemaname = 'public' AND tablename = 'global_stats')""", [pub])[0]
        if not included:
            f.fail(f"{pub} does not include public.global_stats", fixes.not_published(ctx.ident(pub)))
    else:
        f.fail(f"{pub} cannot include public.global_stats, which does not exist", rerun_fix(ctx))
    scope = "all tables" if alltables else "public.global_stats"
    return f.result(f"{pub} publishes {', '.join(published)} of {scope}")


# -- 8. wal_level ------------------------------------------------------------------------------


def check_wal_level(ctx: Context) -> CheckResult:
    try:
        with ctx.conn.transaction():
            level = one(ctx.conn, "SHOW wal_level")[0]
    except Exception as exc:
        return CheckResult("wal_level", "warn", f"cannot read wal_level ({reason(exc)}); on a managed "
                           "server (Supabase) it is logical")
    if level == "logical":
        return CheckResult("wal_level", "pass", "logical")
    return CheckResult("wal_level", "fail", f"{level}: no logical decoding, so Supabase Realtime (and "
                       "--live's publication path) cannot see changes",
                       "ALTER SYSTEM SET wal_level = logical; -- then restart PostgreSQL")


# -- 9b. broadcast ------------------------------------------------------------------------------

BROADCAST_FUNCTION = f"{schema.BROADCAST_FUNCTION}()"
# A row as realtime.send() would insert it, into a transaction that is rolled back.
_PROBE = f"""INSERT INTO {schema.REALTIME_MESSAGES} (topic, extension, payload, event, private)
             VALUES ('genisss-check', 'broadcast', '{{}}'::jsonb, 'probe', false)
             RETURNING tableoid::regclass::text"""


def check_broadcast(ctx: Context) -> CheckResult:
    """Migration 035's trigger, and what realtime.send() needs so that it does not
    turn every message into a WARNING: the function owner's privileges, and a
    partition of realtime.messages for now()."""
    conn = ctx.conn
    name = "broadcast"
    send = one(conn, "SELECT to_regprocedure(%s)::oid", [schema.REALTIME_SEND])[0]
    if not send:
        return CheckResult(name, "skipped", NO_BROADCAST)
    if not ctx.table_oid:
        return no_table(name)
    func = one(conn, """SELECT p.oid, r.rolname FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
                         WHERE p.oid = to_regprocedure(%s)""", [BROADCAST_FUNCTION])
    if func is None:
        return CheckResult(name, "fail", f"realtime.send() exists but {BROADCAST_FUNCTION} is missing: "
                           "no change is broadcast", fixes.missing_broadcast(ctx.revision))
    func_oid, owner = func
    triggers = conn.execute("""
        SELECT tgname, tgenabled FROM pg_trigger
         WHERE tgrelid = %s AND tgfoid = %s AND NOT tgisinternal
           AND (tgtype & 1) <> 0 AND (tgtype & 16) <> 0 AND (tgtype & 66) = 0
         ORDER BY tgenabled IN ('O', 'A') DESC, tgname""", [ctx.table_oid, func_oid]).fetchall()
    if not triggers:
        return CheckResult(name, "fail", f"no AFTER UPDATE trigger runs {BROADCAST_FUNCTION}: "
                           "no change is broadcast", fixes.missing_broadcast(ctx.revision))
    trigger, enabled = triggers[0]
    if enabled not in ("O", "A"):
        state = "disabled" if enabled == "D" else "enabled for replicas only"
        return CheckResult(name, "fail", f"trigger {trigger} is {state}: no change is broadcast",
                           ctx.sql("ALTER TABLE public.global_stats ENABLE TRIGGER {}", trigger) + ";")
    f = Findings(name)
    role = ctx.ident(owner)
    if not one(conn, "SELECT to_regclass(%s) IS NOT NULL", [schema.REALTIME_MESSAGES])[0]:
        f.fail(f"{schema.REALTIME_MESSAGES} does not exist: realtime.send() loses every message")
        return f.result("")
    usage, execute, insert = one(conn, """
        SELECT has_schema_privilege(%(owner)s, 'realtime', 'USAGE'),
               has_function_privilege(%(owner)s, %(send)s::oid, 'EXECUTE'),
               has_table_privilege(%(owner)s, %(messages)s, 'INSERT')""",
                                 {"owner": owner, "send": send, "messages": schema.REALTIME_MESSAGES})
    if not (usage and execute):  # the trigger's call itself fails: every increment fails
        f.fail(f"{owner}, who owns {BROADCAST_FUNCTION}, may not call realtime.send(): every update of "
               "global_stats fails",
               *([] if usage else [f"GRANT USAGE ON SCHEMA realtime TO {role}"]),
               *([] if execute else [f"GRANT EXECUTE ON FUNCTION {schema.REALTIME_SEND} TO {role}"]))
    settings = _settings_privileges(conn, owner)
    if settings:  # 037's trigger reads (and on a send updates) the settings row
        f.fail(f"{owner}, who owns {BROADCAST_FUNCTION}, may not read or update {schema.BROADCAST_SETTINGS}: "
               "every update of global_stats fails",
               *(fix.format(role=role) for fix in settings))
    if not insert:
        f.fail(f"{owner}, who owns {BROADCAST_FUNCTION}, may not INSERT into {schema.REALTIME_MESSAGES}: "
               "realtime.send() loses every message (a WARNING only)",
               f"GRANT INSERT ON TABLE {schema.REALTIME_MESSAGES} TO {role}")
    if insert:
        _check_row_security(ctx, f, owner, role)
    partition = _probe_partition(ctx, f)
    found = (f"{trigger}: AFTER UPDATE FOR EACH ROW, enabled; sends event '{schema.BROADCAST_EVENT}' "
             f"to topic '{schema.BROADCAST_TOPIC}' as {owner}, who may insert into "
             f"{schema.REALTIME_MESSAGES}; now() goes to {partition}")
    return f.result(found)


def _check_row_security(ctx: Context, f: Findings, owner: str, role: str) -> None:
    """Real Realtime turns row level security on for realtime.messages with no
    INSERT policy: a function owner that is neither a superuser, nor BYPASSRLS,
    nor the table's owner has every insert refused, and realtime.send() makes
    that a WARNING. (Supabase's postgres has BYPASSRLS.)"""
    held = one(ctx.conn, """
        SELECT c.relrowsecurity
               AND NOT (r.rolsuper OR r.rolbypassrls OR (c.relowner = r.oid AND NOT c.relforcerowsecurity))
               AND NOT EXISTS (
                 SELECT 1 FROM pg_policy p
                  WHERE p.polrelid = c.oid AND p.polpermissive AND p.polcmd IN ('a', '*')
                    AND (p.polroles = '{0}' OR EXISTS (SELECT 1 FROM unnest(p.polroles) AS g(oid)
                                                      WHERE pg_has_role(r.oid, g.oid, 'MEMBER'))))
          FROM pg_class c, pg_roles r
         WHERE c.oid = to_regclass(%s) AND r.rolname = %s""", [schema.REALTIME_MESSAGES, owner])
    if held and held[0]:
        topic = quote_literal(ctx.conn, schema.BROADCAST_TOPIC)
        f.fail(f"row level security on {schema.REALTIME_MESSAGES} lets {owner}, who owns "
               f"{BROADCAST_FUNCTION}, insert nothing: realtime.send() loses every message (a WARNING only)",
               f"CREATE POLICY {ctx.ident(schema.BROADCAST_SEND_POLICY)} ON {schema.REALTIME_MESSAGES} "
               f"FOR INSERT TO {role} WITH CHECK (topic = {topic} AND extension = 'broadcast')")


def _settings_privileges(conn, owner: str) -> list[str]:
    """The grants (templates for {role}) that 037's settings lack for owner."""
    if not one(conn, "SELECT to_regclass(%s) IS NOT NULL", [schema.BROADCAST_SETTINGS])[0]:
        return []
    usage, select, update = one(conn, """
        SELECT has_schema_privilege(%(owner)s, 'genisss', 'USAGE'),
               has_table_privilege(%(owner)s, %(settings)s, 'SELECT'),
               has_table_privilege(%(owner)s, %(settings)s, 'UPDATE')""",
                                {"owner": owner, "settings": schema.BROADCAST_SETTINGS})
    table = f"GRANT SELECT, UPDATE ON TABLE {schema.BROADCAST_SETTINGS} TO {{role}}"
    schema_grant = "GRANT USAGE ON SCHEMA genisss TO {role}"
    return ([] if usage else [schema_grant]) + ([] if select and update else [table])


def _probe_partition(ctx: Context, f: Findings) -> str | None:
    """Insert a message as realtime.send() would and roll it back: PostgreSQL's own
    routing says whether a partition takes now() (a default partition, sub-
    partitions and the session's time zone included), where reading the bounds
    from the catalog would mean parsing pg_get_expr() texts. The partition's name."""
    conn = ctx.conn
    try:
        with conn.transaction():
            partition = one(conn, _PROBE)[0]
            raise psycopg.Rollback()
    except psycopg.errors.CheckViolation as exc:
        day, start, end = one(conn, """
            SELECT to_char(now()::timestamp, 'YYYY_MM_DD'), date_trunc('day', now()::timestamp)::text,
                   (date_trunc('day', now()::timestamp) + interval '1 day')::text""")
        table = ctx.ident(f"messages_{day}")
        f.fail(f"no partition of {schema.REALTIME_MESSAGES} takes now() ({reason(exc)}): realtime.send() "
               "loses every message (a WARNING only); Realtime creates a partition a day: is it running?",
               f"CREATE TABLE realtime.{table} PARTITION OF {schema.REALTIME_MESSAGES} "
               f"FOR VALUES FROM ({quote_literal(conn, start)}) TO ({quote_literal(conn, end)})")
        return None
    except psycopg.errors.InsufficientPrivilege as exc:
        f.warn(f"cannot tell whether a partition of {schema.REALTIME_MESSAGES} takes now(): this role may "
               f"not insert a probe ({reason(exc)}); run genisss check as the function's owner")
        return None
    except psycopg.Error as exc:  # a realtime.messages unlike the one 035 expects
        f.warn(f"cannot tell whether a partition of {schema.REALTIME_MESSAGES} takes now(): the probe "
               f"insert failed ({reason(exc)}), and realtime.send()'s may too")
        return None
    return partition


# -- 10. drift ---------------------------------------------------------------------------------


def check_drift(ctx: Context) -> CheckResult:
    if not ctx.table_oid:
        return no_table("drift")
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
    usage = one(conn, "SELECT pg_notification_queue_usage()")[0]
    found = f"{usage * 100:#.4g}% of the NOTIFY queue in use"
    if usage >= schema.QUEUE_STOP:
        found += " (global_stats_notify() has stopped notifying until it drains)"
    if usage < ctx.options.queue_warn:
        return CheckResult("notify queue", "pass", found)
    oldest = one(conn, """
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


