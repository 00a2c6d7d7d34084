"""What Ctrl-C (SIGINT) and SIGTERM do: decided here, and only here.

The policy:

- Ctrl-C ends genisss with exit 130 (EXIT_CODE) and one line on stderr
  (MESSAGE), unless the command reports the interruption itself (bump: how
  many increments were made).
- SIGTERM, a service manager's stop, ends `watch` cleanly: its summary, then
  exit 0 (reason "terminated").
- Neither leaves half an effect in the database. A signal is acted on only
  where nothing is half done: while genisss waits for the server (psycopg
  then cancels the command in flight, whose transaction the server rolls
  back) or between two whole steps (bump's increments, watch's events), never
  in the middle of one.

The mechanism is one context manager, Interrupts. While its block runs on the
main thread, it handles `signals`; on any other thread (a program embedding
genisss) signals are not ours and nothing is installed. The previous handlers
come back when the block ends, so blocks nest: bump's and watch's inside the
command line's.

    with Interrupts() as ctrl_c:            # raise KeyboardInterrupt at once
    with Interrupts(deferring=True, second_raises=True) as stop:   # bump
        while not stop.requested: ...       # the first Ctrl-C ends the loop
                                            # the second raises where it lands
    with Interrupts((SIGINT, SIGTERM)) as sig:    # watch: toggles sig.deferring
"""

from __future__ import annotations

import signal

from genisss_cli.errors import Exit

EXIT_CODE = Exit.INTERRUPTED  # 130: 128 + SIGINT, as the shells report it
MESSAGE = "genisss: interrupted\n"


class Interrupts:
    """While active, each of `signals` sets `requested` (and `signum`, the first
    one seen) and raises KeyboardInterrupt, unless `deferring` is true: then it
    is only noted, for the code to act on at its next safe point. With
    second_raises, a signal that finds one already requested raises even while
    deferring (the user insists)."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT,), *, deferring: bool = False,
                 second_raises: bool = False) -> None:
        self.signals = signals
        self.deferring = deferring
        self.second_raises = second_raises
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def reason(self) -> str:
        """How a summary names the stop: "terminated" for SIGTERM, else "interrupted"."""
        return "terminated" if self.signum == signal.SIGTERM else "interrupted"

    def _handler(self, signum, frame) -> None:
        again = self.requested
        self.requested = True
        if self.signum is None:
            self.signum = signum
        if not self.deferring or (again and self.second_raises):
            raise KeyboardInterrupt

    def __enter__(self) -> Interrupts:
        for sig in self.signals:
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: signals are not ours to handle
                break
        return self

    def __exit__(self, *exc) -> None:
        while self._previous:
            sig, previous = self._previous.popitem()
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)  # None: not set from Python


class ChildOwnsCtrlC:
    """While a program genisss runs in the foreground (psql) is on the
    terminal, Ctrl-C is that program's: psql cancels its query and carries on.
    genisss ignores SIGINT meanwhile, so that the same keypress does not also
    end genisss and, with it, the session. Enter it after the child started:
    an ignored signal would stay ignored in the child."""

    def __enter__(self) -> ChildOwnsCtrlC:
        try:
            self._previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
