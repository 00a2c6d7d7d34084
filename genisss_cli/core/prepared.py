"""One prepared statement, called many times as fast as libpq can: bump's hot loop.

psycopg's cursor costs about as much per call as the round trip itself, and a
non-blocking libpq wait driven from Python still ~12 % of it (docs/performance.md).
So each call is libpq's blocking PQexecPrepared, one autocommit transaction
that waits for its result, as the worker's call does.

While that call blocks, Python runs neither signal handlers nor timeouts, so a
guard thread does what they would have done:

- at the second Ctrl-C (read from signal.set_wakeup_fd, which the C-level
  handler writes to even while the main thread is in libpq) it cancels the
  call in flight, as psycopg does on Ctrl-C; the call then raises
  KeyboardInterrupt;
- when a call has had no answer for GENISSS_QUERY_TIMEOUT (a frozen server,
  which would not even take a cancel request) it shuts the socket down, and the
  call fails as deadline.silent_server says.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import threading
import time

_names = itertools.count(1)


class PreparedCall:
    """`query` prepared on conn's session; calling the object runs it and returns the first
    column of its one row as an int. stop() must follow (it ends the guard)."""

    def __init__(self, conn, query: str):
        from psycopg import errors, pq

        self._pgconn, self._encoding, self._errors = conn.pgconn, conn.info.encoding, errors
        self._ok, self._bad, self._pq = pq.ExecStatus.TUPLES_OK, pq.ConnStatus.BAD, pq
        self.timeout = getattr(conn, "answer_timeout", None)  # db.connect's GENISSS_QUERY_TIMEOUT
        self.name = f"genisss_call_{next(_names)}".encode()
        res = self._pgconn.prepare(self.name, query.encode())
        if res.status != pq.ExecStatus.COMMAND_OK:
            raise errors.error_from_result(res, encoding=self._encoding)
        self._canceller = self._pgconn.get_cancel()  # made here: the guard only uses it
        self.since = 0.0  # monotonic start of the call in flight; 0.0 between calls
        self.interrupted = self.timed_out = False
        self._guard = _Guard(self)

    def __call__(self) -> int | None:
        self.since = time.monotonic()
        res = self._pgconn.exec_prepared(self.name, None)
        self.since = 0.0
        if self.interrupted:
            raise KeyboardInterrupt
        if self.timed_out:
            from genisss_cli.conn import deadline

            raise deadline.silent_server(self._pgconn, self.timeout)
        if res.status != self._ok:
            if self._pgconn.status == self._bad:  # as psycopg's own wait reports a lost server
                raise self._errors.OperationalError(self._pq.error_message(res, encoding=self._encoding))
            raise self._errors.error_from_result(res, encoding=self._encoding)
        raw = res.get_value(0, 0)
        return None if raw is None else int(raw)

    def cancel(self) -> None:
        try:
            self._canceller.cancel()
        except Exception:
            pass  # the caller reports the call in flight as unknown either way

    def shut_down(self) -> None:
        import socket

        try:
            with socket.socket(fileno=os.dup(self._pgconn.socket)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone: the call fails on its own

    def stop(self, deallocate: bool = True) -> None:
        self._guard.stop()
        if deallocate:
            self._pgconn.exec_(b"DEALLOCATE " + self.name)


class _Guard:
    """The thread that watches a PreparedCall for a second Ctrl-C and for its timeout."""

    def __init__(self, call: PreparedCall):
        self._call = call
        self._stop_r, self._stop_w = os.pipe()
        self._sig_r, sig_w = os.pipe()
        os.set_blocking(sig_w, False)
        self._sig_w = sig_w
        try:
            self._previous = signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        except ValueError:  # not the main thread: Ctrl-C is not ours to handle
            self._previous = None
        self._thread = threading.Thread(target=self._run, name="genisss-call-guard", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        call, timeout = self._call, self._call.timeout
        tick = min(timeout / 4, 0.25) if timeout else None
        sigints = 0
        while True:
            ready = select.select([self._stop_r, self._sig_r], [], [], tick)[0]
            if self._stop_r in ready:
                return
            if self._sig_r in ready:
                sigints += os.read(self._sig_r, 512).count(signal.SIGINT)
                if sigints >= 2 and call.since:  # the second Ctrl-C: cut the call short
                    call.interrupted = True
                    call.cancel()
            since = call.since
            if timeout and since and time.monotonic() - since > timeout:
                call.timed_out = True
                call.shut_down()
                return

    def stop(self) -> None:
        if self._thread is None:
            return
        os.write(self._stop_w, b"x")
        self._thread.join()
        self._thread = None
        if self._previous is not None:
            signal.set_wakeup_fd(self._previous)
        for fd in (self._stop_r, self._stop_w, self._sig_r, self._sig_w):
            os.close(fd)
