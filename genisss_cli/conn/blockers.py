"""Who holds the lock a command waits for, so that its lock timeout names them.

Read while the command waits, from a second connection: pg_blocking_pids() of
the waiting backend is the server's own answer (the row lock of a SELECT ...
FOR UPDATE, a table lock, another migration's advisory lock alike), but only
while the wait lasts; once lock_timeout has cancelled the statement, the
server no longer links the two, and reading the holders then would be a
guess. So a thread looks at the command's connection, as the deadline
watchdog does: a command still on the wire (ACTIVE, the same `commands`
mark) after half the lock timeout is probably waiting, and only then is the
second connection opened and pg_blocking_pids() read, again at each look
until the wait ends. A command that never waits costs a thread and one round
trip for its backend pid, and no connection.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from genisss_cli.errors import GenisssError, held_by

BLOCKERS_SQL = """
SELECT a.pid, a.application_name, a.state, a.state_change,
       extract(epoch FROM now() - a.xact_start)::float8
  FROM unnest(pg_catalog.pg_blocking_pids(%s)) AS b(pid)
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = b.pid
 ORDER BY a.xact_start NULLS LAST, b.pid"""


@dataclass(frozen=True)
class Blocker:
    pid: int
    application_name: str | None  # None where pg_stat_activity hides it from this role
    state: str | None
    since: datetime | None  # when it entered that state
    open_seconds: float | None  # how long its transaction has been open

    def describe(self) -> str:
        app = repr(self.application_name) if self.application_name else "no application_name"
        state = self.state or "state not visible to this role"
        since = f" since {self.since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        opened = f", transaction open {self.open_seconds:.0f} s" if self.open_seconds is not None else ""
        return f"pid {self.pid} ({app}, {state}{since}{opened})"


class watch:
    """`with watch(database, conn, lock_timeout):` around a command on conn
    that may wait for a lock: a lock timeout raised in the block
    (errors.lock_timeout) leaves it naming the backends that held the lock."""

    def __init__(self, database, conn, lock_timeout: float):
        from genisss_cli.conn import db

        self.database, self.conn = database, conn
        self.after = max(0.05, lock_timeout / 2)
        self.pid = db.server_pid(conn)
        self.blockers: list[Blocker] = []
        self._probe = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="genisss-blockers", daemon=True)

    def __enter__(self) -> watch:
        self._thread.start()
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self._stopped.set()
        self._thread.join()
        if self._probe is not None:
            self._probe.close()
        if isinstance(exc, GenisssError) and getattr(exc, "lock_wait", False) and self.blockers:
            held_by(exc, [b.describe() for b in self.blockers], [b.pid for b in self.blockers])

    def _run(self) -> None:
        from psycopg import pq

        active = pq.TransactionStatus.ACTIVE
        tick = min(self.after / 4, 0.25)
        seen, since = None, 0.0
        while not self._stopped.wait(tick):
            conn = self.conn
            if conn.closed:
                return
            if conn.info.transaction_status != active:
                seen = None
                continue
            mark, now = getattr(conn, "commands", None), time.monotonic()
            if mark != seen or mark is None:
                seen, since = mark, now
            elif now - since >= self.after:
                try:
                    found = self._look()
                except Exception:  # a second connection refused: the timeout says less, that is all
                    return
                if found:
                    self.blockers = found

    def _look(self) -> list[Blocker]:
        from genisss_cli.conn import db

        if self._probe is None:
            self._probe = db.connect(self.database, timeout=self.after)
            self._probe.answer_timeout = max(1.0, self.after)
        return [Blocker(*row) for row in self._probe.execute(BLOCKERS_SQL, [self.pid]).fetchall()]
