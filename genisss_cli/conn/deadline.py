"""Every wait for the server is bounded: GENISSS_QUERY_TIMEOUT."""

from __future__ import annotations

_CLASS = None


def connection_class():
    """psycopg.Connection whose every wait for the server is bounded.

    connect_timeout bounds only the connection. A server that then stops
    answering (SIGSTOPped, a paused VM, a network cut without a reset: TCP
    keepalives do not help on a Unix socket, nor with a live kernel in front
    of a frozen process) would leave a query waiting for ever. Every wait
    without a deadline of its own (notifies() passes one) gets
    `answer_timeout` seconds; past it the connection is closed and the
    command fails like a lost connection (exit 4). Set per connection, e.g.
    shorter for a heartbeat."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    import psycopg
    from psycopg import errors as e

    wait_timeout = getattr(e, "_WaitTimeout", None)

    class Connection(psycopg.Connection):
        answer_timeout: float | None = None

        def wait(self, gen, interval=0.1, timeout=None):
            if timeout is not None or not self.answer_timeout or wait_timeout is None:
                return super().wait(gen, interval=interval, timeout=timeout)
            try:
                return super().wait(gen, interval=interval, timeout=self.answer_timeout)
            except wait_timeout:
                raise silent_server(self.pgconn, self.answer_timeout) from None

    _CLASS = Connection
    return Connection


def silent_server(pgconn, timeout: float):
    """A server that did not answer for `timeout` seconds: close the libpq
    connection (its state is unknown: never reuse it) and return the error
    that makes the command fail as on a lost connection (exit 4)."""
    import psycopg

    pgconn.finish()
    return psycopg.OperationalError(f"no answer from the server within {timeout:g} s (GENISSS_QUERY_TIMEOUT)")
