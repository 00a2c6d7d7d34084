"""`genisss watch`: the counter as it changes, through LISTEN/NOTIFY.

The trigger's NOTIFY on channel `global_stats` is only a hint that the row
changed: it carries nothing genisss believes. On a hint watch drains every
notification pending and reads the row once, so a burst costs one read, and a
NOTIFY that anyone may send (any login can NOTIFY any channel) costs a
harmless read and can never put a value on screen that was not in the table.
Since 034 the trigger notifies only while a watcher holds WATCH_LOCK
(listen() below): a watcher registers, then reads the row.

events(db) is the LISTEN loop, a generator of events. It fetches the row on
every (re)connect (Snapshot), yields a Change when a read after a hint finds
the row changed, reports the connection's state (ConnectionState) and ticks
(Idle) so that the caller can enforce --timeout. It owns reconnecting, with
capped exponential backoff, and never ends on its own once it has connected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from genisss_cli.core import schema
from genisss_cli.core.schema import WATCH_LOCK
from genisss_cli.core.watch import probe
from genisss_cli.errors import Exit, GenisssError, missing_row

CHANNEL = schema.CHANNEL
LISTEN_SQL = f"LISTEN {CHANNEL}"  # a constant name, never user input
# Migration 034's trigger notifies only while some session holds WATCH_LOCK
# in share mode (see its docstring).
REGISTER_SQL = f"SELECT pg_catalog.pg_advisory_lock_shared({WATCH_LOCK})"
# Registering waits for writers that changed the row unwatched to commit: a
# moment, unless a transaction that changed it stays open. Then say who.
REGISTER_TIMEOUT = 10.0
# The key's holders: a bigint key is (classid, objid) = (high, low) 32 bits, objsubid 1.
HOLDERS_SQL = f"""
    SELECT l.pid, coalesce(a.usename, '?'), coalesce(nullif(a.application_name, ''), 'no application_name'),
           coalesce(a.state, '?'),
           EXISTS (SELECT 1 FROM pg_catalog.pg_locks r
                    WHERE r.pid = l.pid AND r.locktype = 'relation' AND r.mode = 'RowExclusiveLock'
                      AND r.relation = to_regclass('{schema.TABLE}'))
      FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock'
       AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
       AND l.classid = {WATCH_LOCK >> 32} AND l.objid = {WATCH_LOCK & 0xFFFFFFFF} AND l.objsubid = 1
     ORDER BY l.pid"""
ROW_SQL = (
    f"SELECT total_stories, total_audio_generations, updated_at FROM {schema.TABLE} "
    f"WHERE id = '{schema.ROW_ID}'"
)
HEARTBEAT_SQL = "SELECT 1"

TICK = 0.2  # seconds between Idle events when nothing arrives
# Seconds between two looks at the catalogs (probe.py) while watching: a table
# dropped, a migration reverted or a trigger disabled sends no notification.
PROBE = 2.0
HEARTBEAT = 30.0  # a query after this much silence: finds a dead link, keeps idle timeouts away
BACKOFF_MIN = 0.2
BACKOFF_MAX = 5.0
# TCP keepalives (ignored on Unix sockets): a cut network is noticed in about
# 25 s instead of never; a caller's own settings in the DSN win.
KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "25000",
}


# -- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    total_stories: int
    total_audio_generations: int
    updated_at: datetime | None

    @property
    def values(self) -> tuple[int, int]:
        return self.total_stories, self.total_audio_generations


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The row, fetched fresh on connect and on every reconnect."""

    row: Row
    fetched_at: float  # wall clock, epoch seconds
    reconnect: bool  # False for the first connection
    changed: bool  # a reconnect found other values than the last ones seen: missed changes
    resumed: bool = False  # read when the counter came back after being gone (state "gone")
    notes: tuple[str, ...] = ()  # states the feed survives, each with its fix (probe.py)


@dataclass(frozen=True, slots=True)
class Change:
    """The row, read after a hint found it changed: its values are the table's."""

    total_stories: int
    total_audio_generations: int
    updated_at: datetime | None  # the row's: when the change's transaction began
    received_at: float  # wall clock, epoch seconds, when the read returned
    latency_ms: float | None  # received_at - updated_at

    @property
    def row(self) -> Row:
        return Row(self.total_stories, self.total_audio_generations, self.updated_at)


@dataclass(frozen=True, slots=True)
class ConnectionState:
    state: str  # "connected" | "reconnecting" | "gone" (connected, but the counter is broken)
    attempt: int = 0  # reconnecting: the attempt about to be made; connected: attempts it took
    error: str | None = None  # why the last connection or attempt failed; gone: what is broken
    retry_in: float | None = None  # seconds until the attempt
    at: float = 0.0  # monotonic clock when this state began
    fix: str | None = None  # gone: what repairs it (core/checks/fixes.py)


@dataclass(frozen=True, slots=True)
class Idle:
    at: float  # monotonic clock


Event = Snapshot | Change | ConnectionState | Idle


def change(row: Row, received_at: float) -> Change:
    latency = None
    if row.updated_at is not None:
        latency = (received_at - row.updated_at.timestamp()) * 1000.0
    return Change(row.total_stories, row.total_audio_generations, row.updated_at, received_at, latency)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, GenisssError):
        return exc.message
    from genisss_cli.conn import db as dbm

    translated = dbm.translate(exc)
    if translated is not None:
        return translated.message
    return f"{exc.__class__.__name__}: {exc}".splitlines()[0]


def _target(db):
    """The database to (re)connect to: the embedded server is looked up again
    (it may have been restarted), and TCP keepalives are added."""
    from psycopg import conninfo


    dsn = db.dsn
    if db.embedded:
        from genisss_cli.conn import embedded

        st = embedded.status(db.data_dir)
        if st.running and st.dsn:  # its socket and port may be new; the database is the same
            dsn = conninfo.make_conninfo(st.dsn, dbname=db.params.get("dbname") or "postgres")
    params = conninfo.conninfo_to_dict(dsn)
    host = str(params.get("host") or "")
    if host and not host.startswith("/"):
        for key, value in KEEPALIVES.items():
            params.setdefault(key, value)
    return dataclasses.replace(db, dsn=conninfo.make_conninfo(**params))


def read_row(conn) -> Row:
    """The singleton row, as the table has it now."""
    found = conn.execute(ROW_SQL, prepare=True).fetchone()
    if found is None:
        raise missing_row()
    return Row(int(found[0]), int(found[1]), found[2])


def _drain(conn) -> bool:
    """Take every notification already here; were any on our channel?"""
    with contextlib.closing(conn.notifies(timeout=0)) as gen:
        return any([n.channel == CHANNEL for n in gen])


def listen(conn, timeout: float = REGISTER_TIMEOUT) -> None:
    """Register conn (an autocommit session) as a watcher: LISTEN, then take
    WATCH_LOCK in share mode for the session. The lock waits for writers that
    took the key before us (they did not notify) to commit, so a row read
    after this returns has their changes, and every later change notifies.
    Harmless on a 033 database, whose trigger notifies always. Waiting longer
    than timeout seconds raises GenisssError (TIMEOUT) naming the holders."""
    from psycopg import errors

    from genisss_cli.conn import db

    conn.execute(LISTEN_SQL)
    try:
        # A session lock outlives the transaction it was taken in; the
        # timeout does not.
        with conn.transaction():
            db.set_lock_timeout(conn, timeout)
            conn.execute(REGISTER_SQL)
    except errors.LockNotAvailable:
        raise _register_timeout(conn, timeout) from None


def _register_timeout(conn, timeout: float) -> GenisssError:
    """Who holds WATCH_LOCK exclusively, and how: a writer's transaction that
    changed the row unwatched, or a session holding the advisory key itself."""
    holders = conn.execute(HOLDERS_SQL).fetchall()
    if not holders:
        return GenisssError(Exit.TIMEOUT, f"waited {timeout:g} s to register as a watcher", "retry")
    pid, role, app, state, wrote = holders[0]
    who = f"backend pid {pid} ({role}, {app}, {state})"
    if wrote:
        return GenisssError(
            Exit.TIMEOUT,
            f"waited {timeout:g} s to register as a watcher: the transaction of {who} changed "
            "global_stats and has not ended",
            f"end that transaction (or SELECT pg_terminate_backend({pid})), then retry")
    return GenisssError(
        Exit.TIMEOUT,
        f"waited {timeout:g} s to register as a watcher: {who} holds the watch key "
        f"({WATCH_LOCK}) as an advisory lock of its own, which no genisss takes",
        f"SELECT pg_terminate_backend({pid}), or pg_advisory_unlock_all() in that session")


def _connect(db):
    """Connect and register (LISTEN + WATCH_LOCK): the connection and what
    probe.problems() finds (broken states first). Notifications already
    pending are hints for changes the row may not hold yet: the loop reads
    again for them."""
    import psycopg

    from genisss_cli.conn import db as dbm

    conn = dbm.connect(_target(db), session=True)
    try:
        revision = schema.known_revision(conn)
        listen(conn)
        found = probe.problems(conn, revision)
    except psycopg.Error as exc:
        conn.close()
        raise (dbm.translate(exc) or exc) from None
    except BaseException:
        conn.close()
        raise
    return conn, found


def _broken(found: list[probe.Problem]) -> probe.Problem | None:
    return found[0] if found and found[0].broken else None


def _snapshot(conn, wall, last: Row | None, found, reconnect: bool, resumed: bool = False) -> Snapshot:
    row = read_row(conn)
    changed = last is not None and row.values != last.values and (reconnect or resumed)
    notes = tuple(f"{p.what} (fix: {p.fix})" for p in found if not p.broken)
    return Snapshot(row, wall(), reconnect, changed, resumed, notes)


def _look(conn) -> list[probe.Problem]:
    return probe.problems(conn, schema.current_revision(conn))


def _while_gone(conn, problem, tick: float, every: float, mono, sleep):
    """Say what is broken, look again every `every` seconds until it is not;
    the problems found then. Hints that arrive meanwhile are dropped: the row
    is read when the counter is back."""
    yield ConnectionState("gone", error=problem.what, fix=problem.fix, at=mono())
    while True:
        due = mono() + every
        while mono() < due:
            _drain(conn)
            sleep(min(tick, max(0.0, due - mono())))
            yield Idle(mono())
        found = _look(conn)
        now = _broken(found)
        if now is None:
            return found
        if now != problem:  # another state: say that one
            problem = now
            yield ConnectionState("gone", error=problem.what, fix=problem.fix, at=mono())


def events(db, *, tick: float = TICK, heartbeat: float = HEARTBEAT, every: float = PROBE,
           backoff: tuple[float, float] = (BACKOFF_MIN, BACKOFF_MAX),
           wall=time.time, mono=time.monotonic, sleep=time.sleep) -> Iterator[Event]:
    """The LISTEN loop. The first connection's failure raises GenisssError
    (exit code from it: 4 unreachable, 5 not migrated or broken, 7 pooler);
    after that, every failure is reported as ConnectionState("reconnecting")
    and retried, with backoff from backoff[0] doubling to backoff[1] (plus up
    to 10% jitter), for ever; a counter found broken (every `every` seconds,
    probe.py) as ConnectionState("gone"), until it is back. Closing the
    generator closes the connection."""
    import psycopg

    conn, found = _connect(db)
    if (problem := _broken(found)) is not None:
        conn.close()
        raise problem.error()
    try:
        snap = _snapshot(conn, wall, None, found, reconnect=False)
    except BaseException:
        conn.close()
        raise
    last = snap.row
    try:
        yield ConnectionState("connected", at=mono())
        yield snap
        pending = None  # a broken counter found on reconnecting
        while True:
            error = None
            try:
                if pending is not None:
                    found = yield from _while_gone(conn, pending, tick, every or PROBE, mono, sleep)
                    pending = None
                    snap = _snapshot(conn, wall, last, found, reconnect=True)
                    last = snap.row
                    yield snap
                last_traffic = last_look = mono()
                hinted = _drain(conn)  # what arrived while registering and reading
                while True:
                    if not hinted:
                        with contextlib.closing(conn.notifies(timeout=tick)) as gen:
                            for n in gen:
                                if n.channel == CHANNEL:
                                    hinted = True
                                    break
                    now = mono()
                    problem = None
                    if hinted:
                        _drain(conn)  # one read answers every hint that is here
                        last_traffic = now
                        hinted = False
                        try:
                            row = read_row(conn)
                        except GenisssError:  # the row is gone: say what the catalogs say
                            row, last_look = None, -every
                        if row is not None and row != last:
                            last = row
                            yield change(row, wall())
                    elif heartbeat and now - last_traffic >= heartbeat:
                        conn.execute(HEARTBEAT_SQL)
                        last_traffic = mono()
                    if every and now - last_look >= every:
                        found = _look(conn)
                        problem = _broken(found)
                        last_look = last_traffic = mono()
                    if problem is not None:
                        found = yield from _while_gone(conn, problem, tick, every or PROBE, mono, sleep)
                        snap = _snapshot(conn, wall, last, found, reconnect=False, resumed=True)
                        last = snap.row
                        yield ConnectionState("connected", at=mono())
                        yield snap
                        last_look = last_traffic = mono()
                        hinted = _drain(conn)
                    yield Idle(now)
            except (psycopg.Error, OSError) as exc:
                error = _error_text(exc)
            with contextlib.suppress(Exception):
                conn.close()
            conn = None
            attempt = 0
            delay = backoff[0]
            while conn is None:
                attempt += 1
                wait = delay * (1 + random.random() * 0.1)
                start = mono()
                yield ConnectionState("reconnecting", attempt, error, wait, start)
                while (left := start + wait - mono()) > 0:
                    sleep(min(tick, left))
                    yield Idle(mono())
                try:
                    conn, found = _connect(db)
                    problem = _broken(found)
                    snap = None if problem else _snapshot(conn, wall, last, found, reconnect=True)
                except (GenisssError, psycopg.Error, OSError) as exc:
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.close()
                    conn = None
                    error = _error_text(exc)
                    delay = min(delay * 2, backoff[1])
            yield ConnectionState("connected", attempt, None, None, mono())
            if problem is not None:
                pending = problem
                continue
            last = snap.row
            yield snap
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
