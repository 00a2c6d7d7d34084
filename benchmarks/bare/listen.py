"""Baseline for `genisss watch --json`: the barest psycopg loop that does what
watch does since migration 036: a NOTIFY is a hint, so drain what is pending
and read the row once.

Prints one JSON line per read that found a new total, with the same latency
as watch reports: receipt time minus the row's updated_at (same host).

usage: python listen.py DSN
"""

import json
import sys
import time

import psycopg

conn = psycopg.connect(sys.argv[1], autocommit=True)
conn.execute("LISTEN global_stats")
conn.execute("SELECT pg_advisory_lock_shared(7450482557741921143)")  # migration 034: register as a watcher
out = sys.stdout
last = None
while True:
    # Each generator runs to its end before the next statement: a notifies()
    # generator holds the connection's lock while it is open, so a query (or a
    # second notifies()) inside it waits forever.
    list(conn.notifies(stop_after=1))
    list(conn.notifies(timeout=0))
    total, updated_at = conn.execute(
        "SELECT total_stories, updated_at FROM public.global_stats WHERE id = 'singleton'").fetchone()
    received = time.time()
    if total != last:
        last = total
        out.write(json.dumps({"total_stories": total,
                              "latency_ms": (received - updated_at.timestamp()) * 1000.0}) + "\n")
        out.flush()
