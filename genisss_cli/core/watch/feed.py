"""`genisss watch`: the counter as it changes, through LISTEN/NOTIFY.

Migration 033's trigger NOTIFYs channel `global_stats` after every UPDATE of
the row, with the new totals and the server's clock when the trigger ran
(parse_change() reads 033's payload and 034's). Since 034 it does so only
while a watcher holds WATCH_LOCK (listen() below): a watcher registers, then
reads the row. This module has three parts:

- events(db): the LISTEN loop, a generator of events. It fetches the row on
  every (re)connect (Snapshot), yields one Change per notification, reports
  the connection's state (ConnectionState) and ticks (Idle) so that the caller
  can enforce --timeout. It owns reconnecting, with capped exponential
  backoff, and never ends on its own once it has connected.
- WatchStats: what the views show (totals, deltas, rates, latency
  percentiles, the sparkline's buckets), updated per event, cheap enough for
  thousands of changes a second; view() and summary() are snapshots for render.
- follow(): drives the loop for the command: --count, --timeout, Ctrl-C.

Nothing here prints; render.WatchLive / render.WatchJson are the sinks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from genisss_cli.core import schema
from genisss_cli.core.schema import WATCH_LOCK
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
    SELECT string_agg(pid::text, ', ' ORDER BY pid) FROM pg_catalog.pg_locks
     WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'
       AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
       AND classid = {WATCH_LOCK >> 32} AND objid = {WATCH_LOCK & 0xFFFFFFFF} AND objsubid = 1"""
# pg_current_snapshot(): the snapshot the row was read in, to tell which
# notifications (by their payload's xid) it already holds.
ROW_SQL = (
    "SELECT total_stories, total_audio_generations, updated_at, pg_catalog.pg_current_snapshot()::text "
    "FROM public.global_stats WHERE id = 'singleton'"
)
# Without migration 033's trigger (a hand-pasted 033 may lack it) nothing is
# ever sent: say so instead of showing a feed that never moves.
TRIGGER_SQL = (
    "SELECT tgenabled <> 'D' FROM pg_trigger "
    "WHERE tgrelid = 'public.global_stats'::regclass AND tgname = 'global_stats_notify'"
)
HEARTBEAT_SQL = "SELECT 1"

TICK = 0.2  # seconds between Idle events when nothing arrives
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


@dataclass(frozen=True, slots=True)
class Change:
    """One notification: the totals after one committed UPDATE of the row."""

    total_stories: int
    total_audio_generations: int
    updated_at: datetime | None  # 033's payload: the row's; 034's: the trigger's clock (sent_at)
    received_at: float  # wall clock, epoch seconds
    latency_ms: float | None  # received_at - the payload's sent_at
    xid: int | None = None  # the writer's transaction (034's payload)

    @property
    def row(self) -> Row:
        return Row(self.total_stories, self.total_audio_generations, self.updated_at)


@dataclass(frozen=True, slots=True)
class ConnectionState:
    state: str  # "connected" | "reconnecting"
    attempt: int = 0  # reconnecting: the attempt about to be made; connected: attempts it took
    error: str | None = None  # why the last connection or attempt failed
    retry_in: float | None = None  # seconds until the attempt
    at: float = 0.0  # monotonic clock when this state began


@dataclass(frozen=True, slots=True)
class Idle:
    at: float  # monotonic clock


Event = Snapshot | Change | ConnectionState | Idle


def parse_timestamp(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def parse_change(payload: str, received_at: float) -> Change | None:
    """The trigger's JSON payload as a Change; None for a payload that is not one.
    034's: {"s": stories, "a": audio, "x": xid, "t": sent_at} (short keys: the
    queue entry's size is what a watched NOTIFY costs, docs/performance.md);
    033's: {"total_stories", "total_audio_generations", "updated_at", "sent_at"}."""
    try:
        d = json.loads(payload)
        if "s" in d:
            d = {"total_stories": d["s"], "total_audio_generations": d["a"], "xid": d.get("x"),
                 "sent_at": d.get("t")}
        stories = int(d["total_stories"])
        audio = int(d["total_audio_generations"])
    except (ValueError, KeyError, TypeError, OverflowError):  # any login may NOTIFY this channel:
        return None  # 1e400 or NaN in a payload must not end the watch
    sent_at = d.get("sent_at")
    latency = updated_at = None
    if isinstance(sent_at, int | float) and not isinstance(sent_at, bool):
        latency = (received_at - sent_at) * 1000.0
        if not math.isfinite(latency):
            latency = None
    if "updated_at" in d:  # 033's payload
        updated_at = parse_timestamp(d["updated_at"])
    elif latency is not None:  # 034's payload has the xid instead
        with contextlib.suppress(ValueError, OverflowError, OSError):
            updated_at = datetime.fromtimestamp(sent_at, UTC)
    xid = d.get("xid")
    xid = xid if isinstance(xid, int) and not isinstance(xid, bool) and xid > 0 else None
    return Change(stories, audio, updated_at, received_at, latency, xid)


def unseen(backlog: list[Change], row: Row, snapshot: str) -> list[Change]:
    """Of the notifications that arrived by the time the row was read, those
    the row does not hold yet. 034's payload names its transaction, and the
    row's snapshot says whether that had committed. 033's does not: there the
    last one that carries exactly the row's values (updated_at included) is
    the row itself; drop it and everything before it."""
    if all(ch.xid is not None for ch in backlog):
        return [ch for ch in backlog if not visible(ch.xid, snapshot)]
    for i in range(len(backlog) - 1, -1, -1):
        if backlog[i].row == row:
            return backlog[i + 1:]
    return backlog


def visible(xid: int, snapshot: str) -> bool:
    """Had transaction xid (64-bit, committed) committed in snapshot
    'xmin:xmax:xip,...' (pg_current_snapshot())? As pg_visible_in_snapshot."""
    xmin, xmax, xip = snapshot.split(":")
    if xid < int(xmin):
        return True
    if xid >= int(xmax):
        return False
    return str(xid) not in xip.split(",")


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
        if st.running and st.dsn:
            dsn = st.dsn
    params = conninfo.conninfo_to_dict(dsn)
    host = str(params.get("host") or "")
    if host and not host.startswith("/"):
        for key, value in KEEPALIVES.items():
            params.setdefault(key, value)
    return dataclasses.replace(db, dsn=conninfo.make_conninfo(**params))


def read_row(conn) -> Row:
    """The singleton row (watch's own read; counters.read_row serves the other commands)."""
    return read_row_and_snapshot(conn)[0]


def read_row_and_snapshot(conn) -> tuple[Row, str]:
    """The row and the snapshot it was read in (pg_current_snapshot() as text)."""
    found = conn.execute(ROW_SQL).fetchone()
    if found is None:
        raise missing_row()
    return Row(int(found[0]), int(found[1]), found[2]), found[3]


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
        holders = conn.execute(HOLDERS_SQL).fetchone()[0] or "?"
        raise GenisssError(
            Exit.TIMEOUT,
            f"waited {timeout:g} s to register as a watcher: the transaction of backend pid {holders} "
            "changed global_stats and has not ended",
            "end that transaction (or SELECT pg_terminate_backend(pid)), then retry") from None


def _open(db, wall, last: Row | None, reconnect: bool):
    """Connect, register (LISTEN + WATCH_LOCK), then read the row: the
    connection, the Snapshot and the changes that arrived meanwhile and are
    newer than the row."""
    import psycopg

    from genisss_cli.conn import db as dbm

    conn = dbm.connect(_target(db), session=True)
    try:
        schema.known_revision(conn)
        listen(conn)
        row, snapshot = read_row_and_snapshot(conn)
        trigger = conn.execute(TRIGGER_SQL).fetchone()
        if not trigger or not trigger[0]:
            raise GenisssError(
                Exit.NOT_MIGRATED,
                "global_stats has no enabled NOTIFY trigger (global_stats_notify): no change would arrive",
                "run: genisss migrate up")
        fetched_at = wall()
        backlog = []
        with contextlib.closing(conn.notifies(timeout=0)) as gen:
            for n in gen:
                if n.channel == CHANNEL:
                    ch = parse_change(n.payload, wall())
                    if ch is not None:
                        backlog.append(ch)
        backlog = unseen(backlog, row, snapshot)
    except psycopg.Error as exc:
        conn.close()
        raise (dbm.translate(exc) or exc) from None
    except BaseException:
        conn.close()
        raise
    changed = reconnect and last is not None and row.values != last.values
    return conn, Snapshot(row, fetched_at, reconnect, changed), backlog


def events(db, *, tick: float = TICK, heartbeat: float = HEARTBEAT,
           backoff: tuple[float, float] = (BACKOFF_MIN, BACKOFF_MAX),
           wall=time.time, mono=time.monotonic, sleep=time.sleep) -> Iterator[Event]:
    """The LISTEN loop. The first connection's failure raises GenisssError
    (exit code from it: 4 unreachable, 5 not migrated, 7 pooler); after that,
    every failure is reported as ConnectionState("reconnecting") and retried,
    with backoff from backoff[0] doubling to backoff[1] (plus up to 10%
    jitter), for ever. Closing the generator closes the connection."""
    import psycopg

    conn, snap, pending = _open(db, wall, None, reconnect=False)
    last = snap.row
    try:
        yield ConnectionState("connected", at=mono())
        yield snap
        for ch in pending:
            last = ch.row
            yield ch
        while True:
            error = None
            try:
                last_traffic = mono()
                while True:
                    got = 0
                    with contextlib.closing(conn.notifies(timeout=tick)) as gen:
                        for n in gen:
                            if n.channel != CHANNEL:
                                continue
                            ch = parse_change(n.payload, wall())
                            if ch is None:
                                continue
                            got += 1
                            last = ch.row
                            yield ch
                    now = mono()
                    if got:
                        last_traffic = now
                    elif heartbeat and now - last_traffic >= heartbeat:
                        conn.execute(HEARTBEAT_SQL)
                        last_traffic = mono()
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
                    conn, snap, pending = _open(db, wall, last, reconnect=True)
                except (GenisssError, psycopg.Error, OSError) as exc:
                    error = _error_text(exc)
                    delay = min(delay * 2, backoff[1])
            yield ConnectionState("connected", attempt, None, None, mono())
            last = snap.row
            yield snap
            for ch in pending:
                last = ch.row
                yield ch
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


