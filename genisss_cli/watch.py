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
import json
import math
import random
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from genisss_cli.errors import Exit, GenisssError
from genisss_cli.revisions import WATCH_LOCK

CHANNEL = "global_stats"
# The channel name is a constant, never user input.
LISTEN_SQL = "LISTEN global_stats"
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

RATE_WINDOW = 300.0  # seconds: the per-minute rates are averaged over the last 5 minutes
SPARK_BUCKET = 60.0  # one sparkline bar per minute
SPARK_BARS = 30  # over the last 30 minutes


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
    from genisss_cli import db as dbm

    translated = dbm.translate(exc)
    if translated is not None:
        return translated.message
    return f"{exc.__class__.__name__}: {exc}".splitlines()[0]


def _target(db):
    """The database to (re)connect to: the embedded server is looked up again
    (it may have been restarted), and TCP keepalives are added."""
    from psycopg import conninfo

    from genisss_cli import db as dbm

    dsn = db.dsn
    if db.embedded:
        from genisss_cli import embedded

        st = embedded.status()
        if st.running and st.dsn:
            dsn = st.dsn
    params = conninfo.conninfo_to_dict(dsn)
    host = str(params.get("host") or "")
    if host and not host.startswith("/"):
        for key, value in KEEPALIVES.items():
            params.setdefault(key, value)
    return dbm.Database(conninfo.make_conninfo(**params), db.source, db.embedded)


def read_row(conn) -> Row:
    """The singleton row (watch's own read; counters.read_row serves the other commands)."""
    return _read_row_and_snapshot(conn)[0]


def _read_row_and_snapshot(conn) -> tuple[Row, str]:
    """The row and the snapshot it was read in (pg_current_snapshot() as text)."""
    found = conn.execute(ROW_SQL).fetchone()
    if found is None:
        raise GenisssError(Exit.NOT_MIGRATED, "global_stats has no 'singleton' row",
                           "run: genisss migrate up (it puts the row back)")
    return Row(int(found[0]), int(found[1]), found[2]), found[3]


def listen(conn, timeout: float = REGISTER_TIMEOUT) -> None:
    """Register conn (an autocommit session) as a watcher: LISTEN, then take
    WATCH_LOCK in share mode for the session. The lock waits for writers that
    took the key before us (they did not notify) to commit, so a row read
    after this returns has their changes, and every later change notifies.
    Harmless on a 033 database, whose trigger notifies always. Waiting longer
    than timeout seconds raises GenisssError (TIMEOUT) naming the holders."""
    from psycopg import errors

    from genisss_cli import db

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

    from genisss_cli import db as dbm

    conn = dbm.connect(_target(db), session=True)
    try:
        listen(conn)
        row, snapshot = _read_row_and_snapshot(conn)
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


# -- statistics ----------------------------------------------------------------------


class LatencyStats:
    """Latencies in log buckets 1% wide: percentiles over the whole session in
    constant memory, within 1% (clamped to the exact min and max)."""

    _STEP = math.log(1.01)
    _FLOOR = 0.001  # ms; smaller magnitudes count as 0

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.last: float | None = None
        self.min: float | None = None
        self.max: float | None = None

    def add(self, ms: float) -> None:
        self.count += 1
        self.last = ms
        if self.max is None or ms > self.max:
            self.max = ms
        if self.min is None or ms < self.min:
            self.min = ms
        mag = abs(ms)
        key = 0 if mag < self._FLOOR else 1 + round(math.log(mag / self._FLOOR) / self._STEP)
        self.buckets[-key if ms < 0 else key] += 1

    def _value(self, key: int) -> float:
        if key == 0:
            return 0.0
        v = self._FLOOR * math.exp((abs(key) - 1) * self._STEP)
        return -v if key < 0 else v

    def percentile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.count))
        if rank >= self.count:
            return self.max
        if rank == 1:
            return self.min
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                return min(max(self._value(key), self.min), self.max)
        return self.max


class Window:
    """Sums of values in fixed time buckets over a sliding span; bursts cost one
    bucket a second, quiet periods nothing."""

    def __init__(self, bucket: float, span: float, width: int = 1) -> None:
        self.bucket = bucket
        self.n = max(1, round(span / bucket))
        self.width = width
        self._q: deque[list] = deque()

    def _trim(self, idx: int) -> None:
        q = self._q
        while q and q[0][0] <= idx - self.n:
            q.popleft()

    def add(self, t: float, *values: float) -> None:
        idx = int(t // self.bucket)
        q = self._q
        if q and q[-1][0] == idx:
            b = q[-1]
            for i, v in enumerate(values, 1):
                b[i] += v
        else:
            q.append([idx, *values])
            self._trim(idx)

    def sums(self, t: float) -> list[float]:
        self._trim(int(t // self.bucket))
        out = [0.0] * self.width
        for b in self._q:
            for i in range(self.width):
                out[i] += b[i + 1]
        return out

    def series(self, t: float, column: int = 0) -> list[float]:
        """One value per bucket, oldest first, the current (partial) bucket last."""
        idx = int(t // self.bucket)
        self._trim(idx)
        out = [0.0] * self.n
        for b in self._q:
            pos = self.n - 1 - (idx - b[0])
            if 0 <= pos < self.n:
                out[pos] = b[column + 1]
        return out


@dataclass(frozen=True)
class WatchView:
    """What the live view shows, taken at one instant."""

    where: str
    state: str
    attempt: int
    error: str | None
    retry_in: float | None
    total_stories: int | None
    total_audio_generations: int | None
    delta_stories: int
    delta_audio_generations: int
    stories_per_min: float
    audio_per_min: float
    changes_per_min: float
    rate_window_s: float
    last_change_at: float | None  # wall clock
    since_last_change_s: float | None
    latency_last_ms: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    changes: int
    resyncs: int
    reconnects: int
    spark: list[int]  # changes per minute, SPARK_BARS of them, oldest first
    spark_minutes: int
    watching_s: float


@dataclass(frozen=True)
class WatchSummary:
    """The end of a watch: what it saw."""

    reason: str  # interrupted | terminated | count | timeout | output closed | ended
    watched_s: float
    changes: int
    resyncs: int
    reconnects: int
    total_stories: int | None
    total_audio_generations: int | None
    delta_stories: int
    delta_audio_generations: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None


class WatchStats:
    """Everything the views need, updated by apply(event) in the LISTEN thread
    and read by view() from the render thread (both under .lock)."""

    def __init__(self, where: str = "", mono=time.monotonic) -> None:
        self.where = where
        self.mono = mono
        self.lock = threading.Lock()
        self.started = mono()
        self.first: Row | None = None
        self.current: Row | None = None
        self.changes = 0
        self.resyncs = 0
        self.reconnects = 0
        self.state = ConnectionState("connecting", at=self.started)
        self.last_change_wall: float | None = None
        self.last_change_mono: float | None = None
        self.latency = LatencyStats()
        self.rates = Window(1.0, RATE_WINDOW, width=3)  # stories, audio, changes
        self.spark = Window(SPARK_BUCKET, SPARK_BUCKET * SPARK_BARS)

    def apply(self, ev: Event) -> None:
        if isinstance(ev, Change):
            now = self.mono()
            prev = self.current
            self.current = ev.row
            self.changes += 1
            if prev is not None:
                self.rates.add(now, ev.total_stories - prev.total_stories,
                               ev.total_audio_generations - prev.total_audio_generations, 1)
            else:
                self.rates.add(now, 0, 0, 1)
            self.spark.add(now, 1)
            self.last_change_wall = ev.received_at
            self.last_change_mono = now
            if ev.latency_ms is not None:
                self.latency.add(ev.latency_ms)
        elif isinstance(ev, Snapshot):
            if self.first is None:
                self.first = ev.row
            if ev.reconnect:
                self.reconnects += 1
                if ev.changed:
                    self.resyncs += 1
            self.current = ev.row
        elif isinstance(ev, ConnectionState):
            self.state = ev

    def _deltas(self) -> tuple[int, int]:
        if self.first is None or self.current is None:
            return 0, 0
        return (self.current.total_stories - self.first.total_stories,
                self.current.total_audio_generations - self.first.total_audio_generations)

    def view(self) -> WatchView:
        now = self.mono()
        stories, audio, changes = self.rates.sums(now)
        span = min(RATE_WINDOW, max(now - self.started, 1.0))
        per_min = 60.0 / span
        ds, da = self._deltas()
        st = self.state
        retry_in = None
        if st.retry_in is not None:
            retry_in = max(0.0, st.at + st.retry_in - now)
        cur = self.current
        return WatchView(
            where=self.where, state=st.state, attempt=st.attempt, error=st.error, retry_in=retry_in,
            total_stories=cur.total_stories if cur else None,
            total_audio_generations=cur.total_audio_generations if cur else None,
            delta_stories=ds, delta_audio_generations=da,
            stories_per_min=stories * per_min, audio_per_min=audio * per_min,
            changes_per_min=changes * per_min, rate_window_s=span,
            last_change_at=self.last_change_wall,
            since_last_change_s=None if self.last_change_mono is None else now - self.last_change_mono,
            latency_last_ms=self.latency.last, latency_p50_ms=self.latency.percentile(50),
            latency_p99_ms=self.latency.percentile(99), latency_max_ms=self.latency.max,
            changes=self.changes, resyncs=self.resyncs, reconnects=self.reconnects,
            spark=[int(v) for v in self.spark.series(now)], spark_minutes=SPARK_BARS,
            watching_s=now - self.started,
        )

    def summary(self, reason: str) -> WatchSummary:
        ds, da = self._deltas()
        cur = self.current
        return WatchSummary(
            reason=reason, watched_s=round(self.mono() - self.started, 3), changes=self.changes,
            resyncs=self.resyncs, reconnects=self.reconnects,
            total_stories=cur.total_stories if cur else None,
            total_audio_generations=cur.total_audio_generations if cur else None,
            delta_stories=ds, delta_audio_generations=da,
            latency_p50_ms=_round(self.latency.percentile(50)),
            latency_p99_ms=_round(self.latency.percentile(99)),
            latency_max_ms=_round(self.latency.max),
        )


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


# -- the command's loop ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    summary: WatchSummary
    code: int
    message: str | None = None  # why the exit code is not 0


class _CtrlC:
    """SIGINT (and SIGTERM) raises KeyboardInterrupt only while the loop waits for the
    server; while an event is being applied or written it is noted and acted
    on right after, so a JSON line is never cut in half."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)  # SIGTERM: a service manager's stop

    def __init__(self) -> None:
        self.requested = False
        self.deferring = False
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        self.requested = True
        self.signum = self.signum or signum
        if not self.deferring:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handler) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def follow(db, stats: WatchStats, sink, *, count: int | None = None, timeout: float | None = None,
           stream: Iterator[Event] | None = None) -> Outcome:
    """Run the LISTEN loop into sink (a context manager with .event(ev)) until
    --count changes, --timeout seconds without one, Ctrl-C or a closed stdout.
    The first connection's errors propagate (GenisssError); then it never fails."""
    mono = stats.mono
    reason = "interrupted"
    stream = stream if stream is not None else events(db)
    ctrl_c = _CtrlC()
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
                reason = "terminated" if ctrl_c.signum == signal.SIGTERM else "interrupted"
            except BrokenPipeError:
                ctrl_c.deferring = True
                reason = "output closed"
    finally:
        ctrl_c.deferring = True
        stream.close()
    summary = stats.summary(reason)
    if reason == "timeout" and count is not None and stats.changes < count:
        return Outcome(summary, Exit.TIMEOUT,
                       f"saw {stats.changes} of {count} changes before {timeout:g} s of silence")
    return Outcome(summary, Exit.OK)
