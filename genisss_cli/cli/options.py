"""The options every command shares, and the one decorator that gives them.

@command(group, name) turns a function `fn(..., env)` into a Typer command
with --json and --database-url/-d (so that `genisss --json status` and
`genisss status -d URL` both work), builds the command's Env from the one the
top-level options made, and turns any failure into one line (or one JSON
object) and its exit code, through render like every other output.
"""

# No `from __future__ import annotations`: Typer reads every command's
# signature on each run, and string annotations cost it an eval apiece.

import functools
import inspect
import traceback
from typing import Annotated

import typer

from genisss_cli.errors import Exit, GenisssError


def seconds(value: float | None) -> float | None:
    # click's FloatRange lets "nan" through (every comparison with it is False):
    # a --timeout nan would never fire.
    if value is not None and value != value:
        raise typer.BadParameter("must be a number of seconds, not nan")
    return value


DatabaseUrlOpt = Annotated[
    str | None,
    typer.Option("--database-url", "-d", metavar="DSN",
                 help="PostgreSQL URL, e.g. postgresql://user:pass@host:5432/db."),
]
LockTimeoutOpt = Annotated[
    float,
    typer.Option("--lock-timeout", min=0.1, max=600, callback=seconds,
                 help="Seconds to wait for a lock before giving up, changing nothing."),
]
DEFAULT_LOCK_TIMEOUT = 5.0
PublicationOpt = Annotated[
    str, typer.Option("--publication", metavar="NAME",
                      help="The publication Supabase Realtime reads (it must carry global_stats)."),
]
JSON_HELP = "Print JSON instead of a table."


def command(group: typer.Typer, name: str, *, json_help: str = JSON_HELP, context_settings=None):
    """Register fn as `name` on group, with the shared options and error handling."""

    def decorate(fn):
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.name != "env"]
        params += [
            inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
            inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False,
                              annotation=Annotated[bool, typer.Option("--json", help=json_help)]),
            inspect.Parameter("database_url", inspect.Parameter.KEYWORD_ONLY, default=None,
                              annotation=DatabaseUrlOpt),
        ]

        @functools.wraps(fn)
        def run_command(*args, ctx, as_json, database_url, **kwargs):
            env = ctx.obj
            if as_json or database_url is not None:
                env = env.replace(json=env.json or as_json,
                                  database_url=env.database_url if database_url is None else database_url)
            try:
                return fn(*args, env=env, **kwargs)
            except Exception as exc:  # Ctrl-C goes on to run(), which says it once
                return fail(env, exc)

        if fn.__doc__ and "{head}" in fn.__doc__:  # the help names the real head, written once
            from genisss_cli.core.schema import HEAD

            run_command.__doc__ = fn.__doc__.replace("{head}", HEAD)
        run_command.__signature__ = sig.replace(parameters=params)
        run_command.__annotations__ = {p.name: p.annotation for p in params}
        group.command(name, context_settings=context_settings)(run_command)
        return fn

    return decorate


def fail(env, exc: BaseException) -> int:
    """Show any failure the way env shows output, and return its exit code."""
    from genisss_cli import render

    if isinstance(exc, SystemExit | typer.Exit | typer.TyperException):
        raise exc  # an exit, or a usage error: run() shows it as Typer words it
    error = as_error(exc)
    render.show_error(error, env, traceback.format_exc() if env.debug else None)
    return int(error.code)


def as_error(exc: BaseException) -> GenisssError:
    if isinstance(exc, GenisssError):
        return exc
    if isinstance(exc, KeyboardInterrupt | typer.Abort):
        return GenisssError(Exit.INTERRUPTED, "interrupted")
    from genisss_cli.conn import db

    translated = db.translate(exc) if isinstance(exc, Exception) else None
    if translated is None:
        translated = GenisssError(Exit.DATABASE, f"unexpected {exc.__class__.__name__}: {exc}",
                                  "rerun with --debug for the traceback")
    return translated
