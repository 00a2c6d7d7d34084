"""genisss status|bump|drift|sync: the runbook's checks and healing (docs/operations.md)."""

# Each command imports core and render when it runs: `--help` and shell
# completion import neither (docs/performance.md, the startup rows).

from typing import Annotated

import typer

from genisss_cli.cli.app import app
from genisss_cli.cli.options import DEFAULT_LOCK_TIMEOUT, LockTimeoutOpt, PublicationOpt, command
from genisss_cli.core.schema import INCREMENTS, MAX_BUMPS, PUBLICATION
from genisss_cli.errors import Exit


@command(app, "status")
def counter_status(publication: PublicationOpt = PUBLICATION, *, env) -> int:
    """The counter at a glance: totals, last story and audio, last update (and
    how long ago), the database and server version, the migration revision
    against head, and whether global_stats is in the Realtime publication.

    Exit 0; 5 when migration 033 is not applied (run: genisss migrate up).

    Example: genisss status --json
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import counters

    database = db.resolve(env)
    with db.connect(database) as conn:
        st = counters.status(conn, database, publication)
    render.show(st, env)
    return Exit.OK


@command(app, "bump")
def counter_bump(
    kind: Annotated[str, typer.Argument(
        metavar="story|audio",
        help="story calls increment_story_counter(), audio calls increment_audio_counter().")],
    count: Annotated[int, typer.Option(
        "--count", "-n", min=1, max=MAX_BUMPS,
        help="How many increments, each its own transaction.")] = 1,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    *, env,
) -> int:
    """Increment a counter exactly as the worker does, and print the new value:
    the runbook's "generate a story, watch the counter move" without a story.

    A large --count shows a progress bar on a terminal. Ctrl-C stops after the
    increment in flight and says how many were made (exit 130). An increment
    that waits longer than --lock-timeout for the counter's row (a transaction
    holds it) stops bump with exit 8, naming that transaction's backend.

    Example: genisss bump story --count 100
    """
    from genisss_cli import render
    from genisss_cli.conn import blockers, db
    from genisss_cli.core import counters

    if kind not in INCREMENTS:
        raise typer.BadParameter("must be story or audio", param_hint="story|audio")
    database = db.resolve(env)
    with db.connect(database) as conn, blockers.watch(database, conn, lock_timeout), \
            render.bump_progress(env, count, kind) as progress:
        result = counters.bump(conn, kind, count, progress=progress, lock_timeout=lock_timeout)
    render.show(result, env)
    return Exit.INTERRUPTED if result.interrupted else Exit.OK


@command(app, "drift")
def counter_drift(
    tolerance: Annotated[int, typer.Option(
        "--tolerance", "-t", min=0, metavar="N",
        help="Accept |drift| <= N: a worker's increment can trail its story by a few ms.")] = 0,
    estimate: Annotated[bool, typer.Option(
        "--estimate",
        help="Use the planner's row estimate (pg_class.reltuples) instead of COUNT(*): "
             "instant on a huge table, but approximate, so give a --tolerance.")] = False,
    audio_table: Annotated[str | None, typer.Option(
        "--audio-table", metavar="TABLE",
        help="Also check total_audio_generations against the rows of TABLE (schema.table).")] = None,
    *, env,
) -> int:
    """Drift = counter - actual: total_stories against COUNT(*) of user_stories,
    read in one snapshot.

    Exit 0 when |drift| <= tolerance, 1 when there is drift (fix: genisss sync),
    another code when it cannot tell (docs/operations.md). For cron and alerts.

    Example: genisss drift --tolerance 2 --json
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import counters, schema

    sources = [counters.STORIES]
    if audio_table is not None:
        counters.table_parts(audio_table)  # a bad name is a usage error before connecting
        sources.append(counters.audio_source(audio_table))
    spin = "counting rows..." if not estimate else None
    with db.connect(db.resolve(env)) as conn, render.spinner_after(env, spin):
        schema.known_revision(conn)
        report = counters.drift(conn, sources, estimate=estimate, tolerance=tolerance)
    render.show(report, env)
    return Exit.OK if report.ok else Exit.FINDING


@command(app, "sync")
def counter_sync(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Show (old, new, difference) it would apply; change nothing.")] = False,
    if_drift: Annotated[bool, typer.Option(
        "--if-drift", help="Do nothing (exit 0) when there is no drift: for a daily cron line.")] = False,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    *, env,
) -> int:
    """Reset total_stories to COUNT(*) of user_stories with sync_story_counter(),
    and show its (old_count, new_count, difference).

    Safe while workers increment: no increment is lost. Touches only the counter.
    Waiting longer than --lock-timeout for the counter's row is exit 8, naming
    the backend that holds it; nothing is changed.

    Example: genisss sync --if-drift
    """
    from genisss_cli import render
    from genisss_cli.conn import blockers, db
    from genisss_cli.core import counters, schema

    database = db.resolve(env)
    with db.connect(database) as conn, blockers.watch(database, conn, lock_timeout), \
            render.spinner_after(env, "counting rows..."):
        schema.known_revision(conn)
        result = counters.sync(conn, dry_run=dry_run, if_drift=if_drift, lock_timeout=lock_timeout)
    render.show(result, env)
    return Exit.OK
