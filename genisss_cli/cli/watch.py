"""genisss watch: the live counter feed through LISTEN/NOTIFY (docs/watch.md)."""

from typing import Annotated

import typer

from genisss_cli.cli.app import app
from genisss_cli.cli.options import command, seconds
from genisss_cli.errors import Exit, GenisssError


@command(app, "watch", json_help="One JSON object a line per change, no live view.")
def watch_command(
    count: Annotated[
        int | None, typer.Option("--count", min=1, metavar="N", help="Exit after N changes.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.1, metavar="S", callback=seconds,
                     help="Exit after S seconds without a change (exit 8 if --count was not reached)."),
    ] = None,
    exit_on_gone: Annotated[bool, typer.Option(
        "--exit-on-gone", help="Exit 5 when the counter breaks while watching (table dropped, "
                               "migration reverted, trigger disabled) instead of waiting for it.")] = False,
    *, env,
) -> int:
    """Follow the counter live: both totals, the change since start, the rate,
    the delay from commit to arrival (last, p50, p99) and a sparkline of the
    last 30 minutes. Reconnects by itself when the connection drops, and
    fetches the row again so the totals are never stale. Ctrl-C prints a
    summary and exits 0.

    Needs a session (LISTEN): a transaction pooler (port 6543) exits 7; a
    database without migration 033, or whose counter is broken (no row, the
    trigger disabled, ...), exits 5 with the fix. A counter that breaks while
    watched is shown as gone, with its fix, until it is back.

    Examples: genisss watch, genisss watch --json --count 10
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import watch

    database = db.resolve(env)
    stats = watch.WatchStats(database.where)
    outcome = watch.follow(database, stats, render.watch_sink(env, stats, database.where),
                           count=count, timeout=timeout, exit_on_gone=exit_on_gone)
    render.show(outcome.summary, env)
    if outcome.message:
        raise GenisssError(Exit(outcome.code), outcome.message, outcome.hint)
    return outcome.code
