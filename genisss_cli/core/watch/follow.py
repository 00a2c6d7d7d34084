"""The watch command's loop: drive the LISTEN feed into a sink until --count,
--timeout, Ctrl-C, SIGTERM or a closed stdout."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass

from genisss_cli.core.watch.feed import Change, ConnectionState, Event, Snapshot, events
from genisss_cli.core.watch.stats import WatchStats, WatchSummary
from genisss_cli.errors import Exit
from genisss_cli.interrupts import Interrupts

# -- the command's loop ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    summary: WatchSummary
    code: int
    message: str | None = None  # why the exit code is not 0
    hint: str | None = None


def follow(db, stats: WatchStats, sink, *, count: int | None = None, timeout: float | None = None,
           exit_on_gone: bool = False, stream: Iterator[Event] | None = None) -> Outcome:
    """Run the LISTEN loop into sink (a context manager with .event(ev)) until
    --count changes, --timeout seconds without one, Ctrl-C, a closed stdout
    or, with exit_on_gone, the counter found broken while watching (exit 5).
    The first connection's errors propagate (GenisssError); then it never fails."""
    mono = stats.mono
    reason = "interrupted"
    gone = None
    stream = stream if stream is not None else events(db)
    # SIGINT and SIGTERM (a service manager's stop) raise KeyboardInterrupt only
    # while the loop waits for the server; while an event is being applied or
    # written they are noted and acted on right after, so a JSON line is never
    # cut in half.
    ctrl_c = Interrupts((signal.SIGINT, signal.SIGTERM))
    try:
        with ctrl_c:
            try:
                # Connect before the view starts, so that a failure is one plain line.
                first: list[Event] = []
                for ev in stream:
                    first.append(ev)
                    if isinstance(ev, Snapshot):
                        break
                quiet_since = mono()
                with sink:
                    pending = iter(first)
                    while True:
                        ctrl_c.deferring = False
                        if ctrl_c.requested:
                            raise KeyboardInterrupt
                        ev = next(pending, None)
                        if ev is None:
                            ev = next(stream, None)
                            if ev is None:  # only a stream given by a caller ends
                                reason = "ended"
                                break
                        ctrl_c.deferring = True
                        with stats.lock:
                            stats.apply(ev)
                        if exit_on_gone and isinstance(ev, ConnectionState) and ev.state == "gone":
                            gone, reason = ev, "gone"  # the error line says it, not "waiting"
                            break
                        sink.event(ev)
                        if isinstance(ev, Change):
                            quiet_since = mono()
                            if count is not None and stats.changes >= count:
                                reason = "count"
                                break
                        if timeout is not None and mono() - quiet_since >= timeout:
                            reason = "timeout"
                            break
                    ctrl_c.deferring = True
            except KeyboardInterrupt:
                ctrl_c.deferring = True
                reason = ctrl_c.reason
            except BrokenPipeError:
                ctrl_c.deferring = True
                reason = "output closed"
    finally:
        ctrl_c.deferring = True
        stream.close()
    summary = stats.summary(reason)
    if gone is not None:
        return Outcome(summary, Exit.NOT_MIGRATED, gone.error, f"fix: {gone.fix}")
    if reason == "timeout" and count is not None and stats.changes < count:
        return Outcome(summary, Exit.TIMEOUT,
                       f"saw {stats.changes} of {count} changes before {timeout:g} s of silence")
    return Outcome(summary, Exit.OK)
