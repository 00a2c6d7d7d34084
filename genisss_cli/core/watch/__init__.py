"""`genisss watch`: the counter as it changes, through LISTEN/NOTIFY.

- feed: the LISTEN loop as a generator of events (Snapshot, Change,
  ConnectionState, Idle); it owns registering, reconnecting and backoff;
- stats: what the views show, updated per event;
- follow: drives the feed for the command (--count, --timeout, signals).

Nothing here prints: render/ is the sink.
"""

from genisss_cli.core.watch.feed import (
    CHANNEL,
    Change,
    ConnectionState,
    Event,
    Idle,
    Row,
    Snapshot,
    events,
    listen,
    parse_change,
    read_row,
    read_row_and_snapshot,
    unseen,
    visible,
)
from genisss_cli.core.watch.follow import Outcome, follow
from genisss_cli.core.watch.stats import LatencyStats, WatchStats, WatchSummary, WatchView, Window

__all__ = [
    "CHANNEL", "Change", "ConnectionState", "Event", "Idle", "LatencyStats", "Outcome", "Row", "Snapshot",
    "WatchStats", "WatchSummary", "WatchView", "Window", "events", "follow", "listen", "parse_change",
    "read_row", "read_row_and_snapshot", "unseen", "visible",
]
