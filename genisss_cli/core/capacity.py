"""`genisss capacity`: do N viewers of the counter fit a Supabase plan's Realtime quota?

Every message counts once per client that receives it, so a change pushed to
N viewers costs N messages, by Postgres Changes and by Broadcast alike:

    messages/s = writes/s x viewers          (coalesced at R: min(W, R) x viewers)

against the plan's messages per second, and N connections against its
connection limit. The largest rate that fits is floor(quota / viewers): one
message a second to each viewer more than that is over the quota whatever the
path. docs/realtime.md explains the three paths.

The write rate is given, or measured: UPDATEs of public.global_stats counted by
pg_stat_user_tables.n_tup_upd over a window (n_tup_hot_upd is a part of
n_tup_upd, not added to it). A backend reports its counts at most once a
second while busy, and up to 10 s late after a burst (PostgreSQL 15 and
later), so a window of several seconds over a steady rate is what it measures
well; the counter's own delta over the window is shown beside it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from genisss_cli.core import schema
from genisss_cli.errors import not_migrated


@dataclass(frozen=True)
class Plan:
    name: str
    connections: int  # concurrent Realtime clients
    messages_per_second: int


# Supabase's Realtime limits page (supabase.com/docs/guides/realtime/limits), the
# one place they are written.
PLANS = {
    "free": Plan("free", 200, 100),
    "pro": Plan("pro", 500, 500),
    "pro-nocap": Plan("pro-nocap", 10_000, 2_500),  # Pro without the spend cap
    "team": Plan("team", 10_000, 2_500),
}
POSTGRES_CHANGES = "postgres_changes"
BROADCAST = "broadcast"
COALESCED = "broadcast_coalesced"
DEFAULT_WINDOW = 5.0


@dataclass
class Measured:
    """Where the write rate came from, when it was measured."""

    database: str
    window_seconds: float
    updates: int  # pg_stat_user_tables.n_tup_upd of public.global_stats, its delta
    increments: int  # total_stories + total_audio_generations, its delta (a cross-check)


@dataclass
class PathLoad:
    path: str  # postgres_changes | broadcast | broadcast_coalesced
    sends_per_second: float  # changes sent to the topic
    messages_per_second: float  # sends x viewers: what the quota counts
    messages_fit: bool
    connections_fit: bool
    fits: bool  # both


@dataclass
class Capacity:
    plan: Plan
    viewers: int
    writes_per_second: float
    rate: float | None  # the coalescing bound, sends per second
    largest_rate: int  # floor(quota / viewers): the most sends per second that fit
    chosen: str  # the path the exit code is about: coalesced with a rate, else broadcast
    fits: bool  # the chosen path's
    paths: list[PathLoad] = field(default_factory=list)
    measured: Measured | None = None


def estimate(plan: Plan, viewers: int, writes_per_second: float, rate: float | None = None,
             measured: Measured | None = None) -> Capacity:
    """The arithmetic: each path's messages per second against the plan."""

    def load(path: str, sends: float) -> PathLoad:
        messages = sends * viewers
        quota, connections = messages <= plan.messages_per_second, viewers <= plan.connections
        return PathLoad(path, sends, messages, quota, connections, quota and connections)

    paths = [load(POSTGRES_CHANGES, writes_per_second), load(BROADCAST, writes_per_second)]
    if rate is not None:
        paths.append(load(COALESCED, min(writes_per_second, rate)))
    chosen = COALESCED if rate is not None else BROADCAST
    return Capacity(plan, viewers, writes_per_second, rate, math.floor(plan.messages_per_second / viewers),
                    chosen, next(p.fits for p in paths if p.path == chosen), paths, measured)


def _sample(conn) -> tuple[int, int]:
    # Each read its own transaction (the connection is autocommit), after
    # dropping the statistics snapshot: within one, the figures would not move.
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(f"""
        SELECT (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = to_regclass(%s)),
               (SELECT total_stories + total_audio_generations FROM {schema.TABLE} WHERE id = %s)""",
                       [schema.TABLE, schema.ROW_ID]).fetchone()
    return int(row[0] or 0), int(row[1] or 0)


def measure(conn, where: str, window: float = DEFAULT_WINDOW, sleep=time.sleep) -> tuple[float, Measured]:
    """The counter's UPDATEs per second over window seconds."""
    if conn.execute("SELECT to_regclass(%s) IS NULL", [schema.TABLE]).fetchone()[0]:
        raise not_migrated(where)
    updates0, total0 = _sample(conn)
    t0 = time.monotonic()
    sleep(window)
    updates1, total1 = _sample(conn)
    elapsed = time.monotonic() - t0
    updates = updates1 - updates0
    return updates / elapsed, Measured(where, round(elapsed, 3), updates, total1 - total0)
