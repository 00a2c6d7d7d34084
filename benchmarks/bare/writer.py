"""A paced writer: increment_story_counter() at RATE per second for SECONDS, on
an absolute schedule (a late call does not shift the ones after it), one
autocommit connection, each call its own transaction, as the worker does.

usage: python writer.py DSN RATE SECONDS   -> prints {"count", "last", "seconds", "max_late_ms"}
"""

import json
import sys
import time

import psycopg

dsn, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
total = int(rate * seconds)
interval = 1.0 / rate
with psycopg.connect(dsn, autocommit=True) as conn:
    cur = conn.cursor()
    last = None
    late = 0.0
    clock = time.perf_counter
    start = clock()
    for i in range(total):
        delay = start + i * interval - clock()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        cur.execute("SELECT public.increment_story_counter()")
        last = cur.fetchone()[0]
    elapsed = clock() - start
print(json.dumps({"count": total, "last": last, "seconds": elapsed, "max_late_ms": late * 1000.0}))
