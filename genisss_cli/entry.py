"""The console script's entry point.

Ctrl-C while Python is still importing Typer and Rich would print a
traceback; until cli.run installs its own handler, it ends quietly with 130.

Once the command has returned, the process ends without Python's teardown of
its modules: with psycopg, Typer and Rich loaded that teardown took 35-75 ms
here, as long as everything genisss does after its imports
(docs/performance.md). atexit handlers still run and the output is flushed.
"""

import signal
import sys


def _early_interrupt(signum, frame):
    sys.stderr.write("genisss: interrupted\n")
    sys.exit(130)


def main() -> None:
    signal.signal(signal.SIGINT, _early_interrupt)
    from genisss_cli.cli import run

    exit_now(run())


def exit_now(code: int) -> None:
    import atexit
    import os
    import threading

    if threading.active_count() > 1:  # a thread still running: let Python wait for it
        sys.exit(code)
    # Private, but there since Python 2 and what Python's own exit calls; it
    # clears the handlers, so a fallback sys.exit does not run them twice.
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # a reader gone (| head): Python's own exit handles it, as before
        sys.exit(code)
    os._exit(code)
