"""What the NOTIFY trigger's body costs per call, in server time, without the noise of pgbench.

A PL/pgSQL loop on the server evaluates each form 200,000 times (the row in a
record where the trigger has NEW; octet_length where the trigger calls
pg_notify, so that nothing is queued) and reports microseconds per call:
min and median of 7 rounds. The rounds interleave the forms. Starts its own
embedded server.

The loop runs in one transaction, so it leaves out what PL/pgSQL and the
trigger's WHEN set up again in every transaction, which an increment (its own
transaction) pays each time: benchmarks/side/trigger_parts.py measures that.

usage: python -m benchmarks.side.trigger_body
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import harness as h  # noqa: E402

COUNTS = """'{"total_stories":' || r.total_stories
          || ',"total_audio_generations":' || r.total_audio_generations"""
KEY = 7450482557741921143  # migration 034's
P034 = COUNTS + """ || ',"xid":' || pg_current_xact_id()
          || ',"sent_at":' || date_part('epoch', clock_timestamp()) || '}'"""
P033 = COUNTS + """ || ',"updated_at":' || to_json(r.updated_at)
          || ',"sent_at":' || extract(epoch FROM clock_timestamp()) || '}'"""
FORMS = {
    "bare: PERFORM f('')": "PERFORM pg_catalog.octet_length('');",
    "033: PERFORM f(payload inline)": f"PERFORM pg_catalog.octet_length({P033});",
    "034 before: PERFORM f(payload inline)": f"PERFORM pg_catalog.octet_length({P034});",
    "034: payload := ...; PERFORM f(payload)": f"v := {P034}; PERFORM pg_catalog.octet_length(v);",
    "034's payload alone (assignment)": f"v := {P034};",
    "033's payload alone (assignment)": f"v := {P033};",
    # 034's gate. Nobody watching, each writer's try succeeds and its commit
    # releases the key: a session-level lock and unlock stand in for that.
    # Watched (WATCHED below: another session holds the key shared), it fails.
    "gate, nobody watching (try + unlock)":
        f"b := pg_try_advisory_lock({KEY}); b := pg_advisory_unlock({KEY});",
    "gate, watched (the try fails)": f"b := pg_try_advisory_xact_lock({KEY});",
}
WATCHED = "gate, watched (the try fails)"
N = 200_000
ROUNDS = 7


def function_sql() -> str:
    branches = "\n".join(f"  {'IF' if i == 0 else 'ELSIF'} k = {i} THEN FOR i IN 1..n LOOP {body} END LOOP;"
                         for i, body in enumerate(FORMS.values()))
    return f"""
CREATE FUNCTION pg_temp.body_cost(k int, n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE r record; v text; b boolean; t0 timestamptz;
BEGIN
  SELECT * INTO r FROM public.global_stats WHERE id = 'singleton';
  t0 := clock_timestamp();
{branches}
  END IF;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$"""


def main() -> int:
    workdir = h.make_workdir()
    server = h.start_server(workdir)
    try:
        server.execute("postgres", "CREATE DATABASE side")
        h.migrate(server.dsn_for("side"))
        with server.connect("side") as conn, server.connect("side") as watcher:
            conn.execute(function_sql())
            names = list(FORMS)
            samples: dict[str, list[float]] = {name: [] for name in names}
            for rnd in range(ROUNDS):
                for k in (range(len(names)) if rnd % 2 == 0 else reversed(range(len(names)))):
                    if names[k] == WATCHED:
                        watcher.execute(f"SELECT pg_advisory_lock_shared({KEY})")
                    row = conn.execute("SELECT pg_temp.body_cost(%s, %s)", [k, N]).fetchone()
                    if names[k] == WATCHED:
                        watcher.execute(f"SELECT pg_advisory_unlock_shared({KEY})")
                    samples[names[k]].append(row[0])
        for name in names:
            values = samples[name]
            print(f"{name:42s} min {min(values):5.2f} us   median {statistics.median(values):5.2f} us")
    finally:
        h.stop_server(server)
        h.remove_workdir(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
