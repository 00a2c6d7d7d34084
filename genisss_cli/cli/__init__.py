"""The genisss command line: parse options, call the core, hand results to render.

Only typer is imported at start-up; each command imports what it needs, so that
`genisss --help` and the one-shot commands start fast (docs/performance.md).
"""

# No `from __future__ import annotations` here: Typer reads every command's
# signature on each run, and string annotations cost it an eval apiece
# (12 ms against 3.5 ms for the whole app, docs/performance.md).

import sys
from typing import Annotated

import typer

from genisss_cli.errors import Exit, GenisssError

app = typer.Typer(
    name="genisss",
    help="Operate the Genisss realtime story counter on PostgreSQL and Supabase.\n\n"
    "The database comes from --database-url, GENISSS_DATABASE_URL, DATABASE_URL, "
    "./.env, or else the embedded PostgreSQL (started on demand).",
    no_args_is_help=True,
    # Plain (click) help: Typer's Rich help imports markdown and syntax
    # highlighting on every --help, 35 ms it never uses (docs/performance.md).
    rich_markup_mode=None,
    pretty_exceptions_enable=False,  # a traceback could show a DSN; errors are one line
    context_settings={"help_option_names": ["-h", "--help"]},
)
migrate_app = typer.Typer(help="Apply, roll back and inspect migrations 033 and 034 (Alembic).",
                          no_args_is_help=True)
db_app = typer.Typer(help="The database in use, and the embedded server's lifecycle.",
                     no_args_is_help=True)
app.add_typer(migrate_app, name="migrate")
app.add_typer(db_app, name="db")

_state = {"database_url": None, "debug": False}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _seconds(value: float | None) -> float | None:
    # click's FloatRange lets "nan" through (every comparison with it is False):
    # a --timeout nan would never fire.
    if value is not None and value != value:
        raise typer.BadParameter("must be a number of seconds, not nan")
    return value


LockTimeoutOpt = Annotated[
    float,
    typer.Option("--lock-timeout", min=0.1, max=600, callback=_seconds,
                 help="Seconds to wait for a lock before giving up, changing nothing."),
]


def _version(value: bool) -> None:
    if value:
        from genisss_cli import __version__

        print(f"genisss {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", "-d", metavar="DSN",
                     help="PostgreSQL URL, e.g. postgresql://user:pass@host:5432/db."),
    ] = None,
    connect_timeout: Annotated[
        float | None,
        typer.Option("--connect-timeout", min=1, max=3600, callback=_seconds, metavar="S",
                     help="Seconds to wait for the server to answer [env: GENISSS_CONNECT_TIMEOUT; 10]."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    from genisss_cli.conn import config

    _state["database_url"] = database_url
    _state["debug"] = debug
    if connect_timeout is not None:
        config.CONNECT_TIMEOUT_OVERRIDE = connect_timeout


def database():
    from genisss_cli.conn import db

    return db.resolve(_state["database_url"])


# -- migrate --------------------------------------------------------------------------


@migrate_app.command("up")
def migrate_up(
    target: Annotated[str, typer.Argument(help="Revision to upgrade to.")] = "head",
    lock_timeout: LockTimeoutOpt = 5.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the SQL it would run; change nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> int:
    """Apply migration 033 (and the baseline) up to TARGET. Safe to rerun.

    Adopts a 033 that was pasted into the SQL editor by hand: the counter keeps
    its value, what is missing is added, the revision is recorded.

    Example: genisss migrate up
    """
    from genisss_cli import render
    from genisss_cli.core import migrate

    db = database()
    if dry_run:
        st = migrate.status(db)
        if not st.pending:
            migrate.check_target(target)  # "nothing to apply" only for a real revision
        text = migrate.sql("up", st.current, target, lock_timeout) if st.pending else ""
        if as_json:
            render.emit_json({"database": st.database, "current": st.current, "pending": st.pending,
                              "sql": text})
        else:
            sys.stdout.write(text or f"-- {st.database}: nothing to apply\n")
        return Exit.OK
    result = migrate.upgrade(db, target, lock_timeout)
    render.migrate_result(result, as_json, "upgraded")
    return Exit.OK


@migrate_app.command("down")
def migrate_down(
    target: Annotated[
        str, typer.Argument(help="Revision to go down to: -1 (one step), a revision, or base.")
    ] = "-1",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; for scripts.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be dropped; change nothing.")
    ] = False,
    lock_timeout: LockTimeoutOpt = 5.0,
    as_json: JsonOpt = False,
) -> int:
    """Roll back: drops the trigger, the functions, the publication membership
    and global_stats (with its counter). user_stories is never dropped.

    Shows the database and the counter values that will be lost, and asks.

    Example: genisss migrate down --yes
    """
    from genisss_cli import render
    from genisss_cli.core import migrate

    db = database()
    plan = migrate.plan_downgrade(db, target)
    if dry_run or not plan.reverts:
        if as_json:
            render.emit_json(plan)
        else:
            render.downgrade_plan(plan)
            if not plan.reverts:
                render.print_line("nothing to roll back")
        return Exit.OK
    if not yes:
        if not sys.stdin.isatty():
            raise GenisssError(Exit.USAGE, "migrate down drops data and needs a confirmation",
                               "pass --yes to confirm from a script")
        render.downgrade_plan(plan)
        if not typer.confirm("Drop these objects?", default=False):
            render.print_line("nothing changed", stderr=True)
            return Exit.INTERRUPTED
    result = migrate.downgrade(db, target, lock_timeout)
    render.migrate_result(result, as_json, "downgraded")
    return Exit.OK


@migrate_app.command("status")
def migrate_status(as_json: JsonOpt = False) -> int:
    """Current revision, head and what is pending. Exit 0 when up to date,
    1 (a finding) when a migration is pending.

    Example: genisss migrate status --json
    """
    from genisss_cli import render
    from genisss_cli.core import migrate

    st = migrate.status(database())
    render.migrate_status(st, as_json)
    return Exit.OK if st.up_to_date else Exit.FINDING


@migrate_app.command("history")
def migrate_history(as_json: JsonOpt = False) -> int:
    """The migrations genisss knows, oldest first (reads no database)."""
    from genisss_cli import render
    from genisss_cli.core import migrate

    current = None
    if _state["database_url"] is not None:
        current = migrate.status(database()).current
    render.history(migrate.history(), current, as_json)
    return Exit.OK


@migrate_app.command("sql")
def migrate_sql(
    direction: Annotated[str, typer.Argument(help="up or down.")] = "up",
    start: Annotated[
        str | None, typer.Option("--from", help="Start revision (default: base for up, head for down).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="End revision (default: head for up, base for down).")
    ] = None,
    lock_timeout: LockTimeoutOpt = 5.0,
) -> int:
    """Print the migration as SQL, for Supabase's SQL editor or psql (no database needed).

    Same effect as `migrate up`/`down`, revision bookkeeping included.

    Example: genisss migrate sql up > 033.sql
    """
    from genisss_cli.core import migrate

    if direction not in ("up", "down"):
        raise typer.BadParameter("must be up or down", param_hint="DIRECTION")
    sys.stdout.write(migrate.sql(direction, start, end, lock_timeout))
    return Exit.OK


# -- db ---------------------------------------------------------------------------------


@db_app.command("url")
def db_url(as_json: JsonOpt = False) -> int:
    """Print the database URL in use (password masked) and where it came from.

    The embedded server is started if needed, so the URL works.

    Example: psql "$(genisss db url)"
    """
    from genisss_cli import render

    render.db_url(database(), as_json)
    return Exit.OK


def _embedded_only(verb: str) -> None:
    from genisss_cli.conn import config

    target = config.resolve(_state["database_url"])
    if not target.embedded:
        raise GenisssError(
            Exit.USAGE,
            f"`genisss db {verb}` manages the embedded server, "
            f"but the database in use comes from {target.source}",
            "unset it to use the embedded server",
        )


@db_app.command("start")
def db_start(as_json: JsonOpt = False) -> int:
    """Start the embedded PostgreSQL (wal_level = logical) if it is not running."""
    from genisss_cli import render
    from genisss_cli.conn import embedded

    _embedded_only("start")
    st = embedded.status()
    if not st.running:
        st = embedded.start()
    render.embedded_status(st, as_json)
    return Exit.OK


@db_app.command("stop")
def db_stop(as_json: JsonOpt = False) -> int:
    """Stop the embedded PostgreSQL (its data stays)."""
    from genisss_cli import render
    from genisss_cli.conn import embedded

    _embedded_only("stop")
    stopped = embedded.stop()
    st = embedded.status()
    if as_json:
        render.emit_json({"stopped": stopped, "running": st.running, "pgdata": st.pgdata})
    else:
        render.print_line("stopped" if stopped else "was not running")
    return Exit.OK


@db_app.command("status")
def db_status(as_json: JsonOpt = False) -> int:
    """Is the embedded PostgreSQL running, where are its data, its URL."""
    from genisss_cli import render
    from genisss_cli.conn import embedded

    _embedded_only("status")
    render.embedded_status(embedded.status(), as_json)
    return Exit.OK


# -- counters -----------------------------------------------------------------------------
# status, bump, drift, sync: the runbook's checks and healing (docs/operations.md).

_MAX_BUMPS = 1_000_000  # = counters.MAX_BUMPS (tests/test_counters.py keeps them equal)


@app.command("status")
def counter_status(
    publication: Annotated[
        str, typer.Option("--publication", metavar="NAME",
                          help="Publication that must carry global_stats for Realtime.")
    ] = "supabase_realtime",
    as_json: JsonOpt = False,
) -> int:
    """The counter at a glance: totals, last story and audio, last update (and
    how long ago), the database and server version, the migration revision
    against head, and whether global_stats is in the Realtime publication.

    Exit 0; 5 when migration 033 is not applied (run: genisss migrate up).

    Example: genisss status --json
    """
    from genisss_cli import render
    from genisss_cli.conn import db as dbmod
    from genisss_cli.core import counters

    target = database()
    with dbmod.connect(target) as conn:
        st = counters.status(conn, target, publication)
    render.counter_status(st, as_json)
    return Exit.OK


@app.command("bump")
def counter_bump(
    kind: Annotated[str, typer.Argument(
        metavar="story|audio",
        help="story calls increment_story_counter(), audio calls increment_audio_counter().")],
    count: Annotated[int, typer.Option(
        "--count", "-n", min=1, max=_MAX_BUMPS,
        help="How many increments, each its own transaction.")] = 1,
    as_json: JsonOpt = False,
) -> int:
    """Increment a counter exactly as the worker does, and print the new value:
    the runbook's "generate a story, watch the counter move" without a story.

    A large --count shows a progress bar on a terminal. Ctrl-C stops after the
    increment in flight and says how many were made (exit 130).

    Example: genisss bump story --count 100
    """
    from genisss_cli import render
    from genisss_cli.conn import db as dbmod
    from genisss_cli.core import counters

    if kind not in counters.BUMP_SQL:
        raise typer.BadParameter("must be story or audio", param_hint="story|audio")
    with dbmod.connect(database()) as conn, \
            render.bump_progress(count, kind, not as_json and render.interactive()) as progress:
        result = counters.bump(conn, kind, count, progress=progress)
    render.bump_result(result, as_json)
    return Exit.INTERRUPTED if result.interrupted else Exit.OK


@app.command("drift")
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
    as_json: JsonOpt = False,
) -> int:
    """Drift = counter - actual: total_stories against COUNT(*) of user_stories,
    read in one snapshot.

    Exit 0 when |drift| <= tolerance, 1 when there is drift (fix: genisss sync),
    another code when it cannot tell (docs/operations.md). For cron and alerts.

    Example: genisss drift --tolerance 2 --json
    """
    from genisss_cli import render
    from genisss_cli.conn import db as dbmod
    from genisss_cli.core import counters

    sources = [counters.STORIES]
    if audio_table is not None:
        counters.table_parts(audio_table)  # a bad name is a usage error before connecting
        sources.append(counters.audio_source(audio_table))
    spin = not as_json and not estimate and render.interactive()
    with dbmod.connect(database()) as conn, render.spinner_after("counting rows...", spin):
        report = counters.drift(conn, sources, estimate=estimate, tolerance=tolerance)
    render.drift_report(report, as_json)
    return Exit.OK if report.ok else Exit.FINDING


@app.command("sync")
def counter_sync(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Show (old, new, difference) it would apply; change nothing.")] = False,
    if_drift: Annotated[bool, typer.Option(
        "--if-drift", help="Do nothing (exit 0) when there is no drift: for a daily cron line.")] = False,
    lock_timeout: LockTimeoutOpt = 5.0,
    as_json: JsonOpt = False,
) -> int:
    """Reset total_stories to COUNT(*) of user_stories with sync_story_counter(),
    and show its (old_count, new_count, difference).

    Safe while workers increment: no increment is lost. Touches only the counter.

    Example: genisss sync --if-drift
    """
    from genisss_cli import render
    from genisss_cli.conn import db as dbmod
    from genisss_cli.core import counters

    with dbmod.connect(database()) as conn, \
            render.spinner_after("counting rows...", not as_json and render.interactive()):
        result = counters.sync(conn, dry_run=dry_run, if_drift=if_drift, lock_timeout=lock_timeout)
    render.sync_result(result, as_json)
    return Exit.OK


# -- watch ------------------------------------------------------------------------------
# The live counter feed through LISTEN/NOTIFY (docs/watch.md).


@app.command("watch")
def watch_command(
    count: Annotated[
        int | None, typer.Option("--count", min=1, metavar="N", help="Exit after N changes.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.1, metavar="S", callback=_seconds,
                     help="Exit after S seconds without a change (exit 8 if --count was not reached)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a line per change, no live view.")
    ] = False,
) -> int:
    """Follow the counter live: both totals, the change since start, the rate,
    the delay from commit to arrival (last, p50, p99) and a sparkline of the
    last 30 minutes. Reconnects by itself when the connection drops, and
    fetches the row again so the totals are never stale. Ctrl-C prints a
    summary and exits 0.

    Needs a session (LISTEN): a transaction pooler (port 6543) exits 7; a
    database without migration 033 exits 5.

    Examples: genisss watch, genisss watch --json --count 10
    """
    from genisss_cli import render
    from genisss_cli.core import watch

    db = database()
    stats = watch.WatchStats(db.where)
    sink = render.WatchJson(db.where) if as_json else render.WatchLive(stats)
    outcome = watch.follow(db, stats, sink, count=count, timeout=timeout)
    render.watch_summary(outcome.summary, as_json)
    if outcome.message:
        raise GenisssError(Exit(outcome.code), outcome.message)
    return outcome.code


# -- check ------------------------------------------------------------------------------
# Is the database ready for the realtime counter, and is it safe? (docs/check.md)


@app.command("check")
def check_command(
    live: Annotated[bool, typer.Option(
        "--live", help="Also make one harmless change (updated_at = now(), no counter moves) and time "
                       "its arrival through LISTEN and through the publication (a temporary "
                       "replication slot, always dropped).")] = False,
    publication: Annotated[str, typer.Option(
        "--publication", metavar="NAME", help="The publication Supabase Realtime reads.")
    ] = "supabase_realtime",
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")] = False,
    live_timeout: Annotated[float, typer.Option(
        "--live-timeout", min=0.5, max=300, metavar="S", callback=_seconds,
        help="Seconds --live waits for the change to arrive.")] = 10.0,
    as_json: JsonOpt = False,
) -> int:
    """Check everything the realtime counter needs, and its security: connection,
    migration, table, functions, privileges, Realtime visibility (RLS), publication,
    wal_level, NOTIFY trigger, drift, NOTIFY queue, Realtime's replication slot.

    Each failure comes with the SQL or command that fixes it. Exit 0 when
    nothing fails, 1 when a check fails (--strict: or warns).

    Example: genisss check --live
    """
    from genisss_cli import render
    from genisss_cli.core import checks

    db = database()
    options = checks.Options(publication=publication, live=live, live_timeout=live_timeout)
    results = checks.run(db, options)
    render.check_results(db.where, results, as_json)
    return checks.exit_code(results, strict)


# -- entry point --------------------------------------------------------------------------


def run(argv: list[str] | None = None) -> int:
    """Run the app and return the exit code; every failure becomes one line."""
    import signal

    interrupted = []

    def on_sigint(signum, frame):
        # Typer turns KeyboardInterrupt into a silent exit 130; remember it was
        # ours so the user is told. bump and watch install their own handler.
        interrupted.append(True)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread (an embedding program's)
        previous = None
    try:
        _check_utf8(sys.argv[1:] if argv is None else argv)
        code = app(args=argv, prog_name="genisss", standalone_mode=False)
        if interrupted and code == Exit.INTERRUPTED:
            sys.stderr.write("genisss: interrupted\n")
    except typer.TyperException as exc:  # usage errors (typer's vendored click)
        _show_usage_error(exc)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("genisss: interrupted\n")
        return Exit.INTERRUPTED
    except GenisssError as exc:
        return _fail(exc)
    except Exception as exc:  # with --debug, _fail prints its traceback (redacted)
        from genisss_cli.conn import db

        translated = db.translate(exc)
        if translated is None:
            translated = GenisssError(Exit.DATABASE, f"unexpected {exc.__class__.__name__}: {exc}",
                                      "rerun with --debug for the traceback")
        return _fail(translated)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return int(code or 0)


def _check_utf8(argv: list[str]) -> None:
    # Bytes that are not UTF-8 arrive as lone surrogates, which no SQL
    # parameter, name or output can carry: say so before anything runs.
    for i, arg in enumerate(argv, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise GenisssError(Exit.USAGE, f"argument {i} is not valid UTF-8",
                               "check the terminal's encoding") from None


def _fail(exc: GenisssError) -> int:
    from genisss_cli import render

    if _state["debug"]:
        import traceback

        sys.stderr.write(render.redact(traceback.format_exc()))
    render.error(exc)
    return int(exc.code)


def _show_usage_error(exc) -> None:
    from genisss_cli import render

    if exc.__class__.__name__ == "NoArgsIsHelpError":  # `genisss` alone: the help, exit 2
        sys.stdout.write(exc.format_message() + "\n")
        return
    hint = ""
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        hint = f" (see: {ctx.command_path} --help)"
    sys.stderr.write(render.redact(f"genisss: error: {exc.format_message()}{hint}") + "\n")
