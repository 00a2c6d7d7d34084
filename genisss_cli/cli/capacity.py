"""genisss capacity: do N viewers fit a Supabase plan's Realtime quota (docs/realtime.md)."""

from typing import Annotated

import typer

from genisss_cli.cli.app import app
from genisss_cli.cli.options import command, seconds
from genisss_cli.errors import Exit


def _number(value: float | None) -> float | None:
    if value is not None and value != value:
        raise typer.BadParameter("must be a number, not nan")
    return value


@command(app, "capacity")
def capacity_command(
    viewers: Annotated[int, typer.Option(
        "--viewers", min=1, metavar="N", help="Browsers watching the counter at once.")],
    plan: Annotated[str, typer.Option(
        "--plan", metavar="free|pro|pro-nocap|team",
        help="The Supabase plan (pro-nocap: Pro without the spend cap).")] = "free",
    writes_per_second: Annotated[float | None, typer.Option(
        "--writes-per-second", min=0, max=1e9, metavar="W", callback=_number,
        help="Counter updates per second; without it, measured on the database over --window.")] = None,
    window: Annotated[float, typer.Option(
        "--window", min=0.5, max=300, metavar="S", callback=seconds,
        help="Seconds to measure the write rate over (without --writes-per-second).")] = 5.0,
    rate: Annotated[float | None, typer.Option(
        "--rate", min=0.001, max=1e9, metavar="R", callback=_number,
        help="Coalescing bound: at most R broadcasts a second (set by genisss broadcast).")] = None,
    *, env,
) -> int:
    """Messages per second = writes x viewers, for Postgres Changes, Broadcast,
    and Broadcast coalesced at --rate, against the plan's messages/s quota and
    connection limit; and the largest rate that fits, floor(quota / viewers).

    Exit 0 when the chosen path fits (Broadcast, or coalesced with --rate),
    1 when it does not. With --writes-per-second no database is needed.

    Examples: genisss capacity --viewers 300 --plan pro, genisss capacity
    --viewers 300 --plan pro --writes-per-second 4 --rate 1 --json
    """
    from genisss_cli import render
    from genisss_cli.core import capacity

    if plan not in capacity.PLANS:
        raise typer.BadParameter(f"must be one of {', '.join(capacity.PLANS)}", param_hint="--plan")
    measured = None
    if writes_per_second is None:
        from genisss_cli.conn import db

        database = db.resolve(env)
        with db.connect(database) as conn, render.spinner_after(env, f"measuring writes for {window:g} s..."):
            writes_per_second, measured = capacity.measure(conn, database.where, window)
    result = capacity.estimate(capacity.PLANS[plan], viewers, writes_per_second, rate, measured)
    render.show(result, env)
    return Exit.OK if result.fits else Exit.FINDING
