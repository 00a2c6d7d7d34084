"""genisss metrics: the counter's state for Prometheus (docs/operations.md)."""

from pathlib import Path
from typing import Annotated

import typer

from genisss_cli.cli.app import app
from genisss_cli.cli.options import command
from genisss_cli.errors import GenisssError


@command(app, "metrics", json_help="The same values as one JSON object.")
def metrics_command(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE.prom",
        help="Write the metrics to FILE in one step (a temporary file, then a rename), for "
             "node_exporter's textfile collector; nothing on stdout.")] = None,
    realtime: Annotated[bool | None, typer.Option(
        "--realtime/--no-realtime",
        help="As for genisss check: --no-realtime leaves out the rows only Supabase Realtime needs "
             "[env: GENISSS_REALTIME; on].", show_default=False)] = None,
    *, env,
) -> int:
    """The counter's state in the Prometheus text format: totals, drift,
    seconds since the last update and the last story, the NOTIFY queue's use,
    the schema revision (an info metric), and each `genisss check` row as a
    0/1 gauge (the catalog checks; never --live). Every name starts genisss_.

    When the database cannot be read, the output still comes, with genisss_up 0
    and genisss_exit_code, and genisss exits with that code (4 unreachable,
    5 not migrated): an --output file is replaced too, never left saying what
    was true before. A file that cannot be written is exit 3, one not named
    *.prom (the collector would never read it) exit 2.

    Example: genisss metrics --output /var/lib/node_exporter/textfile/genisss.prom
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import checks, metrics
    from genisss_cli.render import metrics as view

    if output is not None:
        metrics.check_output(output)
    if realtime is None:
        off = None if env.realtime else "GENISSS_REALTIME=off"
    else:
        off = None if realtime else "--no-realtime"
    try:
        database = db.resolve(env)
    except GenisssError as exc:  # a malformed URL, an embedded server that did not start: a reading too
        reading, error = metrics.Metrics("", False, int(exc.code), exc.message), exc
    else:
        reading, error = metrics.collect(database, checks.Options(realtime_off=off))
    if output is not None:
        metrics.write_atomic(output, view.exposition(reading))
    if output is None or env.json:
        render.show(reading, env)
    if error is not None:
        raise error
    return int(reading.exit_code)
