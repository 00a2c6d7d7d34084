"""The genisss command line: parse, build the Env, call core, show().

run(argv, env) is the whole program, as httpie's main(args, env): the console
script calls it with the process's Env; tests and programs may pass their own.
Only Typer is imported at start-up; each command imports the core and render
modules it needs when it runs.
"""

# No `from __future__ import annotations`: Typer reads every command's
# signature on each run, and string annotations cost it an eval apiece.

import sys
from typing import Annotated

import typer

from genisss_cli.cli import (  # noqa: F401 (they register commands)
    broadcast,
    capacity,
    check,
    counters,
    db,
    demo,
    metrics,
    migrate,
    watch,
)
from genisss_cli.cli.app import app
from genisss_cli.cli.options import DatabaseUrlOpt, fail, seconds
from genisss_cli.env import Env
from genisss_cli.errors import Exit, GenisssError
from genisss_cli.interrupts import Interrupts

__all__ = ["app", "run"]


def _version(ctx: typer.Context, value: bool) -> None:
    if value:
        from genisss_cli import __version__, render
        from genisss_cli.core import info

        render.show(info.Version(__version__), ctx.obj)
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    database_url: DatabaseUrlOpt = None,
    connect_timeout: Annotated[
        float | None,
        typer.Option("--connect-timeout", min=1, max=3600, callback=seconds, metavar="S",
                     help="Seconds to wait for the server to answer [env: GENISSS_CONNECT_TIMEOUT; 10]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output, for every command.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    ctx.obj = ctx.obj.replace(database_url=database_url, connect_timeout_option=connect_timeout,
                              json=as_json, debug=debug)


def run(argv: list[str] | None = None, env: Env | None = None) -> int:
    """Run genisss and return the exit code; every failure becomes one line."""
    env = env or Env()
    argv = sys.argv[1:] if argv is None else list(argv)
    # Before the options are parsed (a usage error), --json anywhere decides the format.
    early = env.replace(json=env.json or "--json" in argv)
    with Interrupts() as ctrl_c:  # Ctrl-C raises where it lands; the command says what it did
        try:
            _check_utf8(argv)
            code = app(args=argv, prog_name="genisss", standalone_mode=False, obj=env)
        except typer.TyperException as exc:  # usage errors
            _show_usage_error(early, exc)
            return exc.exit_code
        except BaseException as exc:  # noqa: B036 (Ctrl-C before a command: 130, one line)
            if isinstance(exc, SystemExit):
                raise
            return fail(early, exc)
        if ctrl_c.requested and code == Exit.INTERRUPTED:
            from genisss_cli import render

            render.say(early, "interrupted")
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


def _show_usage_error(env: Env, exc) -> None:
    from genisss_cli import render

    if exc.__class__.__name__ == "NoArgsIsHelpError":  # `genisss` alone: the help, exit 2
        env.stdout.write(exc.format_message() + "\n")
        return
    hint = ""
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        hint = f" (see: {ctx.command_path} --help)"
    render.usage_error(env, f"{exc.format_message()}{hint}")

