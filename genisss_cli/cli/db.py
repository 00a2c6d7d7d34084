"""genisss db url|start|stop|status: the database in use, the embedded server."""

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


def _embedded_only(env, verb: str) -> None:
    if not env.target.embedded:
        raise GenisssError(
            Exit.USAGE,
            f"`genisss db {verb}` manages the embedded server, "
            f"but the database in use comes from {env.target.source}",
            "unset it to use the embedded server",
        )


@command(db_app, "start")
def db_start(*, env) -> int:
    """Start the embedded PostgreSQL (wal_level = logical) if it is not running.

    Example: genisss db start
    """
    from genisss_cli import render
    from genisss_cli.conn import embedded

    _embedded_only(env, "start")
    st = embedded.status(env.data_dir)
    if not st.running:
        st = embedded.start(env.data_dir)
    render.show(st, env)
    return Exit.OK


@command(db_app, "stop")
def db_stop(*, env) -> int:
    """Stop the embedded PostgreSQL (its data stays).

    Example: genisss db stop
    """
    from genisss_cli import render
    from genisss_cli.conn import embedded
    from genisss_cli.core import info

    _embedded_only(env, "stop")
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
