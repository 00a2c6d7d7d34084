"""genisss demo: the worker and the live view together, on the embedded server (docs/watch.md)."""

from typing import Annotated

import typer

from genisss_cli.cli.app import app
from genisss_cli.cli.options import command, seconds


@command(app, "demo", json_help="watch's JSON lines on stdout; the demo's result on stderr.")
def demo_command(
    rate: Annotated[float, typer.Option(
        "--rate", min=0.1, max=100, metavar="N", callback=seconds,
        help="Stories a second the worker bumps (and an audio generation every 4 stories).")] = 3.0,
    duration: Annotated[float | None, typer.Option(
        "--seconds", min=0.5, max=86400, metavar="S", callback=seconds,
        help="Stop after S seconds (default: at Ctrl-C or SIGTERM).")] = None,
    *, env,
) -> int:
    """See the whole loop in one command: a worker bumps the counter a few
    times a second and `genisss watch`'s live view shows each change arrive.

    It runs in a database of its own on the embedded server (genisss_demo_
    and the process id), made and migrated at the start and dropped at the
    end, on Ctrl-C, SIGTERM or --seconds: your data is never touched. It
    refuses (exit 2) when the database in use comes from a URL
    (--database-url, GENISSS_DATABASE_URL, DATABASE_URL, .env).

    Example: genisss demo --seconds 30
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import demo
    from genisss_cli.render import demo as view

    demo.refuse_real_database(env.target)
    def sink_for(stats, where, worker):
        return view.sink(env, stats, where, worker)

    result, code = demo.run(db.resolve(env), rate=rate, seconds=duration, sink_for=sink_for,
                            announce=lambda text: render.say(env, text))
    render.show(result, env)
    return code
