"""Baseline for `genisss watch --json`: the barest psycopg LISTEN loop.

Prints one JSON line per notification on channel global_stats with the same
latency as watch reports: receipt time minus the payload's sent_at ("t", the
trigger's clock_timestamp(), on the same host).

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
for note in conn.notifies():
    received = time.time()
    payload = json.loads(note.payload)  # migration 034's: {"s": stories, "a": audio, "x": xid, "t": sent_at}
    out.write(json.dumps({"total_stories": payload["s"],
                          "latency_ms": (received - payload["t"]) * 1000.0}) + "\n")
    out.flush()
