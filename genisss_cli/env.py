"""Env: everything one run of genisss depends on besides its arguments.

Made once per invocation (cli.run) and passed explicitly, as httpie's
Environment is: the process's streams, environment and folder, the database
options, the timeouts and the output format. Nothing of one run is kept in a
module, so two runs in one process (tests, a program using genisss as a
library) cannot leak into each other.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TextIO

from genisss_cli.conn import config


@dataclass(frozen=True)
class Env:
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    database_url: str | None = None  # --database-url
    connect_timeout_option: float | None = None  # --connect-timeout
    json: bool = False  # --json: the output format
    debug: bool = False  # --debug: tracebacks

    def replace(self, **changes) -> Env:
        return dataclasses.replace(self, **changes)

    # Derived once per Env (cached_property writes past the frozen __setattr__).

    @cached_property
    def target(self) -> config.Target:
        """Where the DSN comes from; nothing is started or connected."""
        return config.resolve(self.database_url, self.environ, self.cwd)

    @cached_property
    def connect_timeout(self) -> float:
        if self.connect_timeout_option is not None:
            return self.connect_timeout_option
        return config.connect_timeout(self.environ)

    @cached_property
    def query_timeout(self) -> float:
        return config.query_timeout(self.environ)

    @cached_property
    def realtime(self) -> bool:
        """GENISSS_REALTIME: does the database use Supabase Realtime (default on)."""
        return config.realtime(self.environ)

    @cached_property
    def data_dir(self) -> Path | None:
        """GENISSS_DATA_DIR, or None for the user's data folder."""
        return config.data_dir(self.environ)

    @cached_property
    def interactive(self) -> bool:
        """A person at a terminal: progress bars and spinners, never when piped."""
        return _isatty(self.stdout) and _isatty(self.stderr)

    @cached_property
    def console(self):
        return self._console(self.stdout)

    @cached_property
    def err_console(self):
        return self._console(self.stderr)

    def _console(self, stream):
        # Rich is imported only by output that needs it: --json and errors stay light.
        from rich.console import Console

        width = self.environ.get("COLUMNS", "")
        # emoji=False: no :code: in our text, and it spares importing 4,000 emoji names
        return Console(file=stream, highlight=False, emoji=False,
                       width=int(width) if width.isdigit() and int(width) > 0 else None,
                       no_color="NO_COLOR" in self.environ or None)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
