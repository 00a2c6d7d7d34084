"""genisss check: is the database ready for the realtime counter, and safe? (docs/check.md)"""

from typing import Annotated

import typer

from genisss_cli.cli.app import app
from genisss_cli.cli.options import PublicationOpt, command, seconds
from genisss_cli.core.schema import PUBLICATION


@command(app, "check")
def check_command(
    live: Annotated[bool, typer.Option(
        "--live", help="Also make one harmless change (updated_at = now(), no counter moves) and time "
                       "its arrival through LISTEN and through the publication (a temporary "
                       "replication slot, always dropped).")] = False,
    publication: PublicationOpt = PUBLICATION,
    realtime: Annotated[bool | None, typer.Option(
        "--realtime/--no-realtime",
        help="Whether the database uses Supabase Realtime; --no-realtime skips the publication, "
             "wal_level, replication slot and realtime visibility rows [env: GENISSS_REALTIME; on].",
        show_default=False)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")] = False,
    live_timeout: Annotated[float, typer.Option(
        "--live-timeout", min=0.5, max=300, metavar="S", callback=seconds,
        help="Seconds --live waits for the change to arrive.")] = 10.0,
    *, env,
) -> int:
    """Check everything the realtime counter needs, and its security: connection,
    migration, table, functions, privileges, Realtime visibility (RLS), publication,
    wal_level, NOTIFY trigger, drift, NOTIFY queue, Realtime's replication slot.

    Each failure comes with the SQL or command that fixes it. Exit 0 when
    nothing fails, 1 when a check fails (--strict: or warns). On a PostgreSQL
    without Supabase Realtime, --no-realtime skips the rows only Realtime needs.

    Example: genisss check --live
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import checks

    if realtime is None:
        off = None if env.realtime else "GENISSS_REALTIME=off"
    else:
        off = None if realtime else "--no-realtime"
    options = checks.Options(publication=publication, realtime_off=off, live=live,
                             live_timeout=live_timeout)
    report = checks.run(db.resolve(env), options)
    render.show(report, env)
    return report.exit_code(strict)
