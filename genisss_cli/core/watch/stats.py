"""What the watch views show: totals, deltas, rates, latency percentiles and the
sparkline's buckets, updated per event, cheap enough for thousands of changes a
second."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

from genisss_cli.core.watch.feed import Change, ConnectionState, Event, Row, Snapshot

RATE_WINDOW = 300.0  # seconds: the per-minute rates are averaged over the last 5 minutes
SPARK_BUCKET = 60.0  # one sparkline bar per minute
SPARK_BARS = 30  # over the last 30 minutes
SPARK_STEP = 1.0  # seconds: the bars are sums of 1 s buckets, so they slide with the clock

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
    changes_per_min: float  # averaged over rate_window_s, as the counters' rates
    rate_window_s: float
    changes_last_min: int  # the sparkline's "now": its last bar
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
    fix: str | None = None  # state "gone": what repairs it
    notes: tuple[str, ...] = ()  # what the feed survives but an operator should hear of


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
        self.spark = Window(SPARK_STEP, SPARK_BUCKET * SPARK_BARS)
        self.notes: tuple[str, ...] = ()

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
            self.notes = ev.notes
            self.current = ev.row
        elif isinstance(ev, ConnectionState):
            self.state = ev

    def _deltas(self) -> tuple[int, int]:
        if self.first is None or self.current is None:
            return 0, 0
        return (self.current.total_stories - self.first.total_stories,
                self.current.total_audio_generations - self.first.total_audio_generations)

    def bars(self, now: float) -> list[int]:
        """Changes in each of the last SPARK_BARS minutes, the minute ending now
        last. One series gives the bars, the peak (the highest bar) and "now"
        (the last bar), so now can never exceed the peak: they are one
        quantity, at one instant. Earlier, "now" was a 5-minute average
        extrapolated from the time watched (10 changes in the first 10 s read
        60/min) and the peak a count in calendar minutes, the current one
        partial: 10/min."""
        per_bar = round(SPARK_BUCKET / SPARK_STEP)
        seconds = self.spark.series(now)
        return [int(sum(seconds[i:i + per_bar])) for i in range(0, len(seconds), per_bar)]

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
        bars = self.bars(now)
        return WatchView(
            where=self.where, state=st.state, attempt=st.attempt, error=st.error, retry_in=retry_in,
            total_stories=cur.total_stories if cur else None,
            total_audio_generations=cur.total_audio_generations if cur else None,
            delta_stories=ds, delta_audio_generations=da,
            stories_per_min=stories * per_min, audio_per_min=audio * per_min,
            changes_per_min=changes * per_min, rate_window_s=span,
            changes_last_min=bars[-1],
            last_change_at=self.last_change_wall,
            since_last_change_s=None if self.last_change_mono is None else now - self.last_change_mono,
            latency_last_ms=self.latency.last, latency_p50_ms=self.latency.percentile(50),
            latency_p99_ms=self.latency.percentile(99), latency_max_ms=self.latency.max,
            changes=self.changes, resyncs=self.resyncs, reconnects=self.reconnects,
            spark=bars, spark_minutes=SPARK_BARS,
            watching_s=now - self.started, fix=st.fix, notes=self.notes,
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

