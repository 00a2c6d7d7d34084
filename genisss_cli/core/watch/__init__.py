"""`genisss watch`: the counter as it changes, through LISTEN/NOTIFY.

- feed: the LISTEN loop as a generator of events (Snapshot, Change,
  ConnectionState, Idle); a notification is a hint to read the row; it owns
  registering, reconnecting and backoff;
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
    change,
    events,
    listen,
    read_row,
)
from genisss_cli.core.watch.follow import Outcome, follow
from genisss_cli.core.watch.stats import LatencyStats, WatchStats, WatchSummary, WatchView, Window

__all__ = [
    "CHANNEL", "Change", "ConnectionState", "Event", "Idle", "LatencyStats", "Outcome", "Row", "Snapshot",
    "WatchStats", "WatchSummary", "WatchView", "Window", "change", "events", "follow", "listen", "read_row",
]
