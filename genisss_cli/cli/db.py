"""genisss db url|psql|start|stop|status: the database in use, the embedded server."""

from typing import Annotated

import typer

from genisss_cli.cli.app import db_app
from genisss_cli.cli.options import command
from genisss_cli.errors import Exit, GenisssError


@command(db_app, "url")
def db_url(
    reveal: Annotated[bool, typer.Option(
        "--reveal", help="Print the password too (the only output that does).")] = False,
    *, env,
) -> int:
    """Print the database URL in use (password masked) and where it came from
    (--json). --reveal prints it whole, password included.

    The embedded server is started if needed, so the URL works.

    Example: genisss db url --json
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import info

    database = db.resolve(env)
    render.show(info.Revealed(database) if reveal else database, env)
    return Exit.OK


@command(db_app, "psql")
def db_psql(
    args: Annotated[list[str] | None, typer.Argument(
        metavar="[-- PSQL_ARGS...]", help="Passed to psql as they are, after --.")] = None,
    *, env,
) -> int:
    """Run psql on the database in use. The password reaches psql through
    PGPASSWORD, never its command line; the rest of the URL is passed as -d.

    Exit 0 when psql succeeds; 4 when it cannot connect (psql's status 2),
    10 for another failure; 3 when psql is not installed.

    Example: genisss db psql -- -c 'select * from global_stats'
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import psql

    if env.json:
        raise GenisssError(Exit.USAGE, "db psql has no JSON output", "drop --json")
    database = db.resolve(env)
    cmd = psql.command(database, list(args or []), env.environ)
    session = psql.run(database, cmd, env.stdin, env.stdout, env.stderr)
    render.show(session, env)
    failed = psql.outcome(session)
    if failed is not None:
        raise failed
    return Exit.OK


def _embedded_only(env, verb: str) -> None:
    if not env.target.embedded:
        raise GenisssError(
            Exit.USAGE,
            f"`genisss db {verb}` manages the embedded server, "
            f"but the database in use comes from {env.target.source}",
            f"{env.target.undo()} to use the embedded server",
        )


@command(db_app, "start")
def db_start(*, env) -> int:
    """Start the embedded PostgreSQL (wal_level = logical) if it is not running.

    When it starts, one line on stderr says its version, data folder and the
    seconds it took (as for any command that starts it; not with --json).

    Example: genisss db start
    """
    from genisss_cli import render
    from genisss_cli.conn import embedded

    _embedded_only(env, "start")
    st, started = embedded.launch(env.data_dir)
    if started is not None:
        render.show(started, env)
    render.show(st, env)
    return Exit.OK


@command(db_app, "stop")
def db_stop(*, env) -> int:
    """Stop the embedded PostgreSQL (its data stays).

    It concerns the embedded server only: it stops it even while
    --database-url, GENISSS_DATABASE_URL, DATABASE_URL or .env name another
    database, which it neither reads nor touches.

    Example: genisss db stop
    """
    from genisss_cli import render
    from genisss_cli.conn import embedded
    from genisss_cli.core import info

    # No _embedded_only: the server may be left running from before a URL
    # was set, and stopping it is the one thing to do with it then.
    stopped = embedded.stop(env.data_dir)
    st = embedded.status(env.data_dir)
    render.show(info.Stopped(stopped, st.running, st.pgdata), env)
    return Exit.OK


@command(db_app, "status")
def db_status(*, env) -> int:
    """Is the embedded PostgreSQL running, where are its data, its URL.

    Example: genisss db status --json
    """
    from genisss_cli import render
    from genisss_cli.conn import embedded

    _embedded_only(env, "status")
    render.show(embedded.status(env.data_dir), env)
    return Exit.OK
