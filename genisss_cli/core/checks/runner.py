"""Running the checks: each in its own transaction, one that raises becomes a
warning that says why and does not poison the others."""

from __future__ import annotations

from collections.abc import Callable

from psycopg.pq import TransactionStatus

from genisss_cli.conn import db as dbmod
from genisss_cli.core import schema
from genisss_cli.core.checks import live
from genisss_cli.core.checks.broadcast import PRIVATE_ROW, TRAILING_ROW, check_private, check_trailing
from genisss_cli.core.checks.model import (
    API_ROLES,
    REALTIME_ONLY,
    WORKER_ROLE,
    CheckReport,
    CheckResult,
    Context,
    Options,
    one,
    realtime_not_used,
    reason,
)
from genisss_cli.core.checks.realtime import (
    check_broadcast,
    check_drift,
    check_notify_queue,
    check_publication,
    check_replication_slot,
    check_wal_level,
)
from genisss_cli.core.checks.security import check_visibility, check_write_paths, privileges_check
from genisss_cli.core.checks.structure import (
    check_connection,
    check_functions,
    check_migration,
    check_table,
    check_trigger,
)

# -- running them ------------------------------------------------------------------------------

# (name, check, runs its own transaction)
CHECKS: list[tuple[str, Callable[[Context], CheckResult | list[CheckResult]], bool]] = [
    ("connection", check_connection, True),  # idle between statements: the pooler probe needs it
    ("migration", check_migration, False),
    ("table", check_table, False),
    ("functions", check_functions, False),
    ("privileges: PUBLIC", privileges_check(None), False),
    *((f"privileges: {r}", privileges_check(r), False) for r in (*API_ROLES, WORKER_ROLE)),
    ("write paths", check_write_paths, False),
    ("realtime visibility", check_visibility, False),
    ("publication", check_publication, False),
    ("wal_level", check_wal_level, True),
    ("trigger", check_trigger, False),
    ("broadcast", check_broadcast, False),
    (PRIVATE_ROW, check_private, False),
    (TRAILING_ROW, check_trailing, False),
    ("drift", check_drift, True),  # counters.drift() picks its own isolation level
    ("notify queue", check_notify_queue, False),
    ("replication slot", check_replication_slot, False),
]


def load_facts(ctx: Context) -> None:
    conn = ctx.conn
    try:
        with conn.transaction():
            ctx.table_oid = one(conn, "SELECT to_regclass('public.global_stats')::oid")[0]
            ctx.roles = dict(conn.execute("SELECT rolname, oid FROM pg_roles WHERE rolname = ANY(%s)",
                                          [[*API_ROLES, WORKER_ROLE]]).fetchall())
    except Exception:
        reset(conn)
    try:
        with conn.transaction():
            ctx.revision = schema.current_revision(conn)
    except Exception:
        reset(conn)


def run_one(ctx: Context, name: str, check, own_transaction: bool) -> list[CheckResult]:
    conn = ctx.conn
    if ctx.options.realtime_off and name in REALTIME_ONLY:
        return [realtime_not_used(name, ctx)]
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
        reset(conn)
    return out if isinstance(out, list) else [out]


def reset(conn) -> None:
    """Leave the connection idle, whatever a check did to it."""
    try:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
    except Exception:
        pass


def run(database, options: Options | None = None) -> CheckReport:
    """Connect, run every check (and the live ones with options.live), return the rows."""
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
            try:
                results.extend(live.run(ctx))
            except Exception as exc:
                why = f"could not run: {reason(exc)}"
                # --live was asked for: a live row that could not run is a failure.
                results.extend(CheckResult(row, "fail", why) for row in live.ROWS)
            finally:
                reset(conn)
    return CheckReport(database.where, results)
