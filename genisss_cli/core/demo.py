"""`genisss demo`: the whole loop, in a database of its own on the embedded server.

A demo database (DEMO_PREFIX + the process's pid) is made and migrated; a
worker thread bumps its counter a few times a second, as the real worker
does; the command watches it with `genisss watch`'s own feed and view; at the
end the database is dropped. The user's databases are never written.

The worker is a thread, not a process: it dies with genisss whatever ends it
(a process would outlive a kill -9 and keep writing), signals reach only the
main thread, where watch's policy handles them, and a few increments a
second cost the GIL nothing. A demo killed too hard to drop its database
(kill -9) leaves it behind; the next demo drops it (its pid is gone).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from genisss_cli.core import schema
from genisss_cli.errors import Exit, GenisssError

AUDIO_EVERY = 4  # one audio generation every this many stories, so both rows move
DROP_TIMEOUT = 30.0  # seconds the drop may take (FORCE ends the demo's own sessions)
WORKER_LOCK_TIMEOUT = "5s"  # a worker's increment never waits longer for the row


def refuse_real_database(target) -> None:
    """The demo makes and drops databases: only on the embedded server, never
    on one a URL names (that is someone's data)."""
    if not target.embedded:
        raise GenisssError(
            Exit.USAGE,
            f"genisss demo runs only on the embedded server, but the database in use comes "
            f"from {target.source}",
            f"{target.undo()} to use the embedded server")


def name_for(pid: int) -> str:
    return f"{schema.DEMO_PREFIX}{pid}"


def _pid_of(name: str) -> int | None:
    tail = name.removeprefix(schema.DEMO_PREFIX)
    return int(tail) if name.startswith(schema.DEMO_PREFIX) and tail.isdigit() else None


def _on(server, dbname: str):
    """The Database of dbname on server's cluster."""
    from psycopg import conninfo

    return dataclasses.replace(server, dsn=conninfo.make_conninfo(server.dsn, dbname=dbname))


_DEMOS_SQL = "SELECT datname FROM pg_catalog.pg_database WHERE starts_with(datname, %s) ORDER BY 1"


def create(server, pid: int | None = None):
    """Make the demo database on server (a db.Database of the embedded
    cluster), after dropping those of demos whose process is gone. Returns
    (its db.Database, the names of the leftovers dropped)."""
    from psycopg import sql

    from genisss_cli.conn import db, embedded

    name = name_for(os.getpid() if pid is None else pid)
    with db.connect(server) as conn:
        names = [r[0] for r in conn.execute(_DEMOS_SQL, [schema.DEMO_PREFIX]).fetchall()]
        stale = [n for n in names if n != name and (p := _pid_of(n)) is not None and not embedded.alive(p)]
        for old in stale:
            _drop(conn, old)
        if name in names:  # this pid's, from a demo of long ago: start afresh
            _drop(conn, name)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _on(server, name), stale


def _drop(conn, name: str) -> None:
    from psycopg import sql

    # WITH (FORCE) ends the sessions still on it: the worker's and the watch's.
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def drop(server, name: str) -> None:
    """Drop the demo database, within DROP_TIMEOUT; a failure says how to drop it by hand."""
    from genisss_cli.conn import db

    bounded = dataclasses.replace(server, connect_timeout=min(server.connect_timeout, DROP_TIMEOUT),
                                  query_timeout=DROP_TIMEOUT)
    try:
        with db.connect(bounded) as conn:
            _drop(conn, name)
    except Exception as exc:
        error = _as_error(exc)
        raise GenisssError(error.code, f"could not drop the demo database {name}: {error.message}",
                           f"the next genisss demo drops it, or: genisss db psql -- -c 'DROP DATABASE "
                           f"{name} WITH (FORCE)'") from None


# -- the worker ------------------------------------------------------------------------------


class Worker(threading.Thread):
    """Bumps the demo's counter `rate` stories a second (and an audio
    generation every AUDIO_EVERY stories) on its own connection, as the real
    worker calls increment_story_counter(), until stop(). A failure ends it
    and is kept in .error, for the demo to end on."""

    def __init__(self, database, rate: float):
        super().__init__(name="genisss-demo-worker", daemon=True)
        self.database = database
        self.interval = 1.0 / rate
        self.stories = 0
        self.audio = 0
        self.error: GenisssError | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        from genisss_cli.conn import db
        from genisss_cli.core.counters import BUMP_SQL

        try:
            with db.connect(self.database) as conn:
                conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, false)", [WORKER_LOCK_TIMEOUT])
                due = time.monotonic()
                while not self._stopping.wait(max(0.0, due - time.monotonic())):
                    conn.execute(BUMP_SQL["story"])
                    self.stories += 1
                    if self.stories % AUDIO_EVERY == 0:
                        conn.execute(BUMP_SQL["audio"])
                        self.audio += 1
                    due = max(due + self.interval, time.monotonic() - self.interval)
        except Exception as exc:
            if not self._stopping.is_set():  # a session ended by the drop is no failure
                self.error = _as_error(exc)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)


def _as_error(exc: Exception) -> GenisssError:
    from genisss_cli.conn import db

    if isinstance(exc, GenisssError):
        return exc
    return db.translate(exc) or GenisssError(Exit.DATABASE, f"the demo's worker failed: {exc}")


def until(stream: Iterator, seconds: float | None, worker: Worker, mono=time.monotonic) -> Iterator:
    """watch's event stream, which starts the worker once the watch has read
    the row (so the view sees every bump), and ends after `seconds` from then
    or when the worker fails (watch.follow then stops with reason "ended").
    The feed ticks (Idle) a few times a second, so the end comes on time."""
    from genisss_cli.core.watch import Snapshot

    end = None
    try:
        for ev in stream:
            yield ev
            if end is None and isinstance(ev, Snapshot):
                worker.start()
                end = float("inf") if seconds is None else mono() + seconds
            if worker.failed or (end is not None and mono() >= end):
                return
    finally:
        stream.close()


# -- the demo -------------------------------------------------------------------------------


def run(server, *, rate: float, seconds: float | None, sink_for, announce) -> tuple[DemoResult, int]:
    """The demo on server (the embedded cluster's db.Database): make, migrate,
    bump and watch, then drop; the result and the exit code. sink_for(stats,
    where, worker) gives watch's sink; announce(text) tells what happens.

    Ctrl-C and SIGTERM while it sets up are noted and acted on between steps
    (never half a CREATE or a migration); while it watches, they are watch's
    (interrupts.py); while it drops, they are noted only: the drop is bounded
    and must run. Exit 0 once the demo ran, whatever ended it; 130 when a
    signal came before it could start."""
    import signal

    from genisss_cli.core import migrate, watch
    from genisss_cli.interrupts import Interrupts

    worker: Worker | None = None
    with Interrupts((signal.SIGINT, signal.SIGTERM), deferring=True) as guard:
        demo_db, leftovers = create(server)
        name = demo_db.params["dbname"]
        try:
            if not guard.requested:
                announce(f"made the database {name} on the embedded server; migrating it")
                migrate.upgrade(demo_db)
            outcome = None
            if not guard.requested:
                worker = Worker(demo_db, rate)  # started by until(), once the watch is on
                announce(f"a worker bumps {name} at {rate:g} stories a second; "
                         + (f"stopping after {seconds:g} s" if seconds else "Ctrl-C to stop"))
                stats = watch.WatchStats(demo_db.where)
                outcome = watch.follow(demo_db, stats, sink_for(stats, demo_db.where, worker),
                                       stream=until(watch.events(demo_db), seconds, worker))
        finally:
            try:
                if worker is not None:
                    worker.stop()
            finally:
                drop(server, name)
    if worker is not None and worker.error is not None:
        raise GenisssError(worker.error.code, f"the demo's worker stopped: {worker.error.message} "
                           f"(the demo database {name} was dropped)", worker.error.hint)
    if outcome is None:
        stopped = "SIGTERM" if guard.signum == signal.SIGTERM else "Ctrl-C"
        result = DemoResult(name, rate, 0, 0, f"{stopped}, before it started", True, leftovers)
        return result, Exit.INTERRUPTED
    summary = outcome.summary
    if summary.reason == "ended":  # until() ended the feed
        summary = dataclasses.replace(summary, reason=f"--seconds {seconds:g}")
    return (DemoResult(name, rate, worker.stories, worker.audio, summary.reason, True, leftovers, summary),
            outcome.code)


# -- the result ---------------------------------------------------------------------------------


@dataclass
class DemoResult:
    database: str  # the demo database's name (dropped at the end)
    rate: float  # stories a second the worker aimed at
    stories: int  # increments the worker made
    audio: int
    stopped: str  # Ctrl-C, SIGTERM, --seconds N, the worker's failure
    dropped: bool  # the demo database is gone
    leftovers: list[str] = field(default_factory=list)  # earlier demos' databases dropped first
    summary: object = None  # core.watch.WatchSummary
