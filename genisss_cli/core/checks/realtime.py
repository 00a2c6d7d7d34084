"""What Realtime needs around the counter: publication, wal_level, drift, the
NOTIFY queue, Realtime's replication slot."""

from __future__ import annotations

from genisss_cli.core import counters, schema
from genisss_cli.core.checks.model import (
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
            level = one(ctx.conn, "SHOW wal_level")[0]
    except Exception as exc:
        return CheckResult("wal_level", "warn", f"cannot read wal_level ({reason(exc)}); on a managed "
                           "server (Supabase) it is logical")
    if level == "logical":
        return CheckResult("wal_level", "pass", "logical")
    return CheckResult("wal_level", "fail", f"{level}: no logical decoding, so Supabase Realtime (and "
                       "--live's publication path) cannot see changes",
                       "ALTER SYSTEM SET wal_level = logical; -- then restart PostgreSQL")


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


