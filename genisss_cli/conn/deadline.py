"""Every wait for the server is bounded: GENISSS_QUERY_TIMEOUT.

connect_timeout bounds only the connection. A server that then stops
answering (SIGSTOPped, a paused VM, a network cut without a reset: TCP
keepalives do not help on a Unix socket, nor with a live kernel in front of a
frozen process) would leave a query waiting for ever.

So each connection db.connect opens has a watchdog, a daemon thread that
looks a few times per `answer_timeout`: is a command on the wire
(transaction_status ACTIVE), and is it still the same one (Cursor.execute
counts them in `commands`)? One without an answer for longer than
`answer_timeout` has the connection's socket shut down under it: its wait
ends, the command fails, and the error says why (errors.query_timeout, exit
4): a statement (Cursor.execute) or a COMMIT (commit(), the end of
transaction()), whose outcome the error says is unknown.
A wait with a deadline of its own (notifies(timeout=...), watch's) runs while
the connection is idle, so the watchdog never cuts it. The watchdog ends with
its connection.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from contextlib import contextmanager

_CLASS = None


def connection_class():
    """psycopg.Connection whose commands are bounded by `answer_timeout`
    seconds (set per connection, e.g. shorter for a probe; None: unbounded).
    Its cursors are deadline's Cursor, which counts the commands and names
    the timeout when one is cut short."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _classes()
    return _CLASS


def _classes():
    import psycopg

    class Cursor(psycopg.Cursor):
        __slots__ = ()

        def execute(self, query, params=None, **kwargs):
            conn = self.connection
            conn.commands += 1
            try:
                return super().execute(query, params, **kwargs)
            except psycopg.Error as exc:
                raise conn.why(exc) from None

    class Connection(psycopg.Connection):
        commands = 0  # commands sent so far: the watchdog sees them move
        timed_out: float | None = None  # the timeout the watchdog enforced, once it has
        _answer_timeout: float | None = None
        _watchdog: _Watchdog | None = None

        @classmethod
        def connect(cls, conninfo: str = "", **kwargs):
            kwargs.setdefault("cursor_factory", Cursor)
            return super().connect(conninfo, **kwargs)

        @property
        def answer_timeout(self) -> float | None:
            return self._answer_timeout

        @answer_timeout.setter
        def answer_timeout(self, seconds: float | None) -> None:
            self._answer_timeout = seconds or None
            if seconds and self._watchdog is None and not self.closed:
                self._watchdog = _Watchdog(self)

        def why(self, exc: Exception, committing: bool = False) -> Exception:
            """exc, or the query timeout's error if the watchdog caused it."""
            if self.timed_out and getattr(exc, "query_timeout", None) is None:
                return no_answer(self, self.timed_out, committing)
            return exc

        def commit(self) -> None:
            try:
                super().commit()
            except psycopg.Error as exc:
                raise self.why(exc, committing=True) from None

        @contextmanager
        def transaction(self, *args, **kwargs):
            outermost = self.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            body_done = False
            try:
                with super().transaction(*args, **kwargs) as tx:
                    yield tx
                    body_done = True  # what fails now is the COMMIT (or RELEASE SAVEPOINT)
            except psycopg.Error as exc:
                raise self.why(exc, committing=body_done and outermost) from None

        def close(self) -> None:
            watchdog, self._watchdog = self._watchdog, None
            if watchdog is not None:
                watchdog.stop()
            super().close()

    return Connection


class _Watchdog:
    """The thread that shuts a connection's socket down under a command that
    has had no answer for the connection's answer_timeout."""

    def __init__(self, conn):
        import socket

        from psycopg import pq

        self._active = pq.TransactionStatus.ACTIVE
        self._conn = weakref.ref(conn)  # the connection may go without close(): so may the thread
        self._stopped = threading.Event()
        # Our own descriptor of the socket, taken now: shutting it down later
        # cannot hit another socket that reused a number libpq has closed.
        self._sock = socket.socket(fileno=os.dup(conn.fileno()))
        self._thread = threading.Thread(target=self._run, name="genisss-deadline", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import socket

        seen, since = None, 0.0
        try:
            while True:
                conn = self._conn()
                if conn is None or conn.closed:
                    return
                timeout = conn.answer_timeout
                if timeout and conn.info.transaction_status == self._active:
                    mark, now = conn.commands, time.monotonic()
                    if mark != seen:
                        seen, since = mark, now
                    elif now - since >= timeout:
                        conn.timed_out = timeout
                        try:
                            self._sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass  # already gone: the command fails on its own
                        return
                else:
                    seen = None
                # A few looks per timeout: a command is cut after 1 to 1.25
                # times the timeout.
                tick = min(max(timeout / 8, 0.05), 1.0) if timeout else 1.0
                del conn
                if self._stopped.wait(tick):
                    return
        finally:
            self._sock.close()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


def no_answer(conn, timeout: float, committing: bool = False):
    """A server that did not answer for `timeout` seconds: close conn (its
    state is unknown: never reuse it) and return the error to raise: a
    psycopg.OperationalError carrying `query_timeout` (and `committing`: the
    cut hit a COMMIT), which db.translate words as errors.query_timeout."""
    import psycopg

    conn.close()
    err = psycopg.OperationalError(f"no answer from the server within {timeout:g} s (GENISSS_QUERY_TIMEOUT)")
    err.query_timeout, err.committing = timeout, committing
    return err
