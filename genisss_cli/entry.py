"""The console script's entry point.

Ctrl-C while Python is still importing Typer and Rich would print a
traceback; until cli.run installs its own handler, it ends quietly with 130
(interrupts.py).

Once the command has returned, the process ends without Python's teardown of
its modules: with psycopg, Typer and Rich loaded, that teardown takes as long
as everything genisss does after its imports (docs/performance.md). The exit
is Python's own up to that point: sys.exit waits for the threads still
running and runs the atexit handlers; the last of them is the one main()
registered first (atexit runs them last-registered first), which flushes the
output and ends the process.
"""

import atexit
import os
import sys

_code: int | None = None  # set by exit_now


def _end_without_teardown() -> None:
    if _code is None:  # the process is not ending through exit_now: Python's own exit, all of it
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # a reader gone (| head): Python's own exit reports it, as for any script
        return
    os._exit(_code)


def skip_teardown() -> None:
    """Make exit_now end the process without the teardown. Call it first:
    atexit handlers registered before it would not run."""
    atexit.register(_end_without_teardown)


def exit_now(code: int) -> None:
    """sys.exit(code), which ends without the teardown once skip_teardown() was called."""
    global _code
    _code = code
    sys.exit(code)


def main() -> None:
    skip_teardown()
    from genisss_cli.interrupts import EXIT_CODE, MESSAGE, Interrupts

    with Interrupts():  # Ctrl-C raises KeyboardInterrupt, even in the middle of an import
        try:
            from genisss_cli.cli import run

            code = run()
        except KeyboardInterrupt:
            sys.stderr.write(MESSAGE)
            code = EXIT_CODE
        exit_now(code)
