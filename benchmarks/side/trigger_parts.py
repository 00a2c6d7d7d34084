"""Which part of migration 034's trigger costs what, with a watcher registered.

The suite's "trigger overhead" row compares 034's trigger with a bare
`pg_notify('global_stats', '')` trigger. This takes 034's trigger apart, one
part at a time, under the same pgbench load and the same draining watcher:

    bare         PERFORM pg_notify('global_stats', '')       (the suite's baseline)
    bare+gate    the same, with 034's WHEN (the try fails: the watcher holds the key)
    bare+53      a constant payload as long as 034's            (the queue entry's size)
    payload      034's payload and pg_notify, no WHEN
    payload inline   the same as one PERFORM (034 assigns the payload first)
    stories only     a payload of NEW.total_stories alone
    034          034's function and trigger, as migrated

and reports, per variant, the median pgbench rate and the server CPU per
increment (the postmaster's reaped children: the pgbench backends), each
against bare. Each round runs every variant once (ABBA order); on this shared
machine a round's CPU figure moves by +-20 %, so it takes ~25 rounds for the
medians to settle within a few microseconds. 1-client runs pin pgbench and
the backends to one CPU and the watcher to the other, as the suite does.
Starts its own embedded server.

usage: python -m benchmarks.side.trigger_parts [CLIENTS [ROUNDS [SECONDS [VARIANT,...]]]]
       (default: 1 client, 25 rounds of 1 s, every variant; about 5 min)
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import harness as h  # noqa: E402
from genisss_cli.core.schema import WATCH_LOCK  # noqa: E402

PAYLOAD = """payload := '{"s":' || NEW.total_stories || ',"a":' || NEW.total_audio_generations
      || ',"x":' || pg_current_xact_id() || ',"t":' || date_part('epoch', clock_timestamp()) || '}';
    PERFORM pg_notify('global_stats', payload);"""
BODIES = {
    "bare": "PERFORM pg_notify('global_stats', '');",
    "bare+53": "PERFORM pg_notify('global_stats', '" + "x" * 53 + "');",
    "payload": PAYLOAD,
    "stories only": "PERFORM pg_notify('global_stats', NEW.total_stories::text);",
    "payload inline": """PERFORM pg_notify('global_stats', '{"s":' || NEW.total_stories
      || ',"a":' || NEW.total_audio_generations || ',"x":' || pg_current_xact_id()
      || ',"t":' || date_part('epoch', clock_timestamp()) || '}');""",
}


def function(body: str) -> str:
    return f"""CREATE OR REPLACE FUNCTION public.global_stats_notify() RETURNS trigger
    LANGUAGE plpgsql SET search_path = ''
    AS $$ DECLARE payload text; BEGIN {body} RETURN NULL; END $$"""


def trigger(gated: bool) -> list[str]:
    when = f"WHEN (NOT pg_catalog.pg_try_advisory_xact_lock({WATCH_LOCK}))" if gated else ""
    return ["DROP TRIGGER IF EXISTS global_stats_notify ON public.global_stats",
            f"CREATE TRIGGER global_stats_notify AFTER UPDATE ON public.global_stats FOR EACH ROW "
            f"{when} EXECUTE FUNCTION public.global_stats_notify()"]


VARIANTS = {
    "bare": [function(BODIES["bare"]), *trigger(False)],
    "bare+gate": [function(BODIES["bare"]), *trigger(True)],
    "bare+53": [function(BODIES["bare+53"]), *trigger(False)],
    "payload": [function(BODIES["payload"]), *trigger(False)],
    "payload inline": [function(BODIES["payload inline"]), *trigger(False)],
    "stories only": [function(BODIES["stories only"]), *trigger(False)],
    "034": None,  # as migrated: read back from the database
}


def main() -> None:
    given = [int(a) for a in sys.argv[1:4]]
    clients, rounds, seconds = given + [1, 25, 1][len(given):]
    workdir = h.make_workdir()
    progs = h.find_programs(workdir)
    server = h.start_server(workdir)
    try:
        server.execute("postgres", "ALTER SYSTEM SET synchronous_commit = off", "SELECT pg_reload_conf()")
        dsn = server.dsn_for("postgres")
        h.migrate(dsn)
        function, gated = h.migrated_trigger(server, "postgres")
        VARIANTS["034"] = [function, "DROP TRIGGER global_stats_notify ON public.global_stats", gated]
        script = workdir / "increment.sql"
        script.write_text("SELECT public.increment_story_counter();\n")
        cpus = h.one_cpu() if clients == 1 else None
        h.set_affinity(server.pid, cpus)
        names = sys.argv[4].split(",") if len(sys.argv) > 4 else list(VARIANTS)
        tps: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        with h.draining_watcher(progs, workdir, dsn, cpus):
            for rnd in range(rounds):
                for name in names if rnd % 2 == 0 else names[::-1]:
                    server.execute("postgres", *VARIANTS[name], "VACUUM public.global_stats", "CHECKPOINT")
                    r, per_tx = h.pgbench_cpu(progs, server, dsn, script, clients=clients,
                                              seconds=seconds, cpus=cpus)
                    tps[name].append(r.tps)
                    cpu[name].append(per_tx)
        base_tps, base_cpu = statistics.median(tps["bare"]), statistics.median(cpu["bare"])
        print(f"{clients} client(s), {rounds} rounds of {seconds} s, watched; ratios against bare")
        print(f"{'variant':14} {'tps':>8} {'ratio':>6} {'CPU us':>7} {'ratio':>6}")
        for name in names:
            t, c = statistics.median(tps[name]), statistics.median(cpu[name])
            print(f"{name:14} {t:8.0f} {t / base_tps:6.2f} {c:7.1f} {base_cpu / c:6.2f}")
    finally:
        h.stop_server(server)
        h.remove_workdir(workdir)


if __name__ == "__main__":
    main()
