"""The console script's entry point.

Ctrl-C while Python is still importing Typer and Rich would print a
traceback; until cli.run installs its own handler, it ends quietly with 130.
"""

import signal
import sys


def _early_interrupt(signum, frame):
    sys.stderr.write("genisss: interrupted\n")
    sys.exit(130)


def main() -> None:
    signal.signal(signal.SIGINT, _early_interrupt)
    from genisss_cli.cli import main as cli_main

    cli_main()
