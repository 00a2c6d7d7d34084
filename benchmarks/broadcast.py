"""The `broadcast` section of benchmarks/run.py (issue 15): increments per second
with Broadcast from Database installed, as a ratio to the same database with
the broadcast trigger disabled.

The database is bench_template's shape plus the tests' own small realtime
schema (tests/realtime_schema.py: the project may not contain Supabase's), then
migrated so that 035 installs its trigger. Every variant runs on that one
database; between runs realtime.messages is emptied, so that each run starts
from the same shape. A variant is its setup and teardown SQL, from the
baseline state (the broadcast trigger disabled): 035's public broadcast, and
037's coalescing at R = 5.
"""

from __future__ import annotations

import importlib.util
from contextlib import nullcontext
from dataclasses import dataclass, field

from benchmarks import harness as h
from benchmarks.harness import BenchError, median

DB = "bench_broadcast"
TRIGGER = "global_stats_broadcast"
DISABLE = f"ALTER TABLE public.global_stats DISABLE TRIGGER {TRIGGER}"
ENABLE = f"ALTER TABLE public.global_stats ENABLE TRIGGER {TRIGGER}"
INCREMENT = "SELECT public.increment_story_counter();\n"


@dataclass
class Variant:
    key: str
    label: str
    setup: list[str] = field(default_factory=list)  # from the baseline state
    teardown: list[str] = field(default_factory=list)  # back to it


BASELINE = Variant("none", "the broadcast trigger disabled")
# 037's coalescing at R = 5: each increment reads the settings row, and only
# the increments that send (at most 5 a second) write it and insert a message.
SETTINGS = "genisss.broadcast_settings"
VARIANTS = [
    Variant("public", "the trigger, every change sent (public)", [ENABLE], [DISABLE]),
    Variant("coalesced", "037's trigger, at most 5 sends a second",
            [ENABLE, f"UPDATE {SETTINGS} SET max_per_second = 5"],
            [DISABLE, f"UPDATE {SETTINGS} SET max_per_second = NULL"]),
]


def realtime_schema():
    """tests/realtime_schema.py, imported by its path (tests/ is no package)."""
    path = h.REPO / "tests" / "realtime_schema.py"
    spec = importlib.util.spec_from_file_location("realtime_schema", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(b) -> None:
    b.server.execute("postgres", f"CREATE DATABASE {DB}")
    with b.server.connect(DB) as conn:
        realtime_schema().install(conn)
    h.migrate(b.server.dsn_for(DB))
    if b.server.scalar(DB, "SELECT count(*) FROM pg_trigger WHERE tgname = %s", [TRIGGER]) != 1:
        raise BenchError("migration 035 did not install its trigger over the test realtime schema")
    b.server.execute(DB, DISABLE)


def measure(b, variants: list[Variant], clients: int, cpus) -> dict[str, dict[str, list[float]]]:
    """pgbench on increment_story_counter() for each variant, in ABBA order:
    {variant: {"tps": [...], "cpu_us": [...], "messages": [...]}}."""
    secs, reps = b.p["pgbench_seconds"], b.p["pgbench_n"]
    script = b.script("increment.sql", INCREMENT)
    dsn = b.server.dsn_for(DB)
    out: dict[str, dict[str, list[float]]] = {v.key: {"tps": [], "cpu_us": [], "messages": []}
                                              for v in variants}
    for rep in range(reps):
        for v in variants if rep % 2 == 0 else list(reversed(variants)):
            b.server.execute(DB, "TRUNCATE realtime.messages", "VACUUM public.global_stats", "CHECKPOINT",
                             *v.setup)
            try:
                r, per_tx = h.pgbench_cpu(b.progs, b.server, dsn, script, clients=clients, seconds=secs,
                                          cpus=cpus)
            finally:
                b.server.execute(DB, *v.teardown)
            if r.failed:
                raise BenchError(f"pgbench: {r.failed} failed transactions ({v.key})")
            sent = b.server.scalar(DB, "SELECT count(*) FROM realtime.messages")
            out[v.key]["tps"].append(r.tps)
            out[v.key]["messages"].append(sent / r.transactions if r.transactions else 0)
            if per_tx is not None:
                out[v.key]["cpu_us"].append(per_tx)
    return out


def variant_row(b, v: Variant, clients: int, res: dict) -> None:
    """One figure: v's increments per second over the baseline's, same run."""
    n = f"{clients} client{'s' * (clients > 1)}"
    f = b.fig(f"broadcast_{v.key}_c{clients}", f"broadcast: {v.label}, {n}", "/s", "report")
    f.detail["baseline_cmd"] = f"the same pgbench, same database, {BASELINE.label}"
    f.detail["pinned_to_one_cpu"] = clients == 1 and h.one_cpu() is not None
    ga, gb = res[v.key]["tps"], res[BASELINE.key]["tps"]
    f.genisss, f.baseline = median(ga), median(gb)
    f.ratio = f.genisss / f.baseline
    ca, cb = res[v.key]["cpu_us"], res[BASELINE.key]["cpu_us"]
    f.detail.update(samples={v.key: ga, BASELINE.key: gb},
                    messages_per_increment={v.key: res[v.key]["messages"],
                                            BASELINE.key: res[BASELINE.key]["messages"]})
    if ca and cb:
        f.detail.update(cpu_us={v.key: median(ca), BASELINE.key: median(cb)},
                        cpu_ratio=median(cb) / median(ca), cpu_ratio_is="baseline / variant")
    f.judge(None)
    sent = median(res[v.key]["messages"])
    if sent < 0.99:  # coalescing sends few by design; any other variant must send each
        f.note = f"{sent:.4f} messages per increment"


def broadcast(b) -> None:
    prepare(b)
    variants = [BASELINE, *VARIANTS]
    for clients in (1, 8):
        with b.pinned() if clients == 1 else nullcontext() as cpus:
            res = measure(b, variants, clients, cpus)
        for v in VARIANTS:
            variant_row(b, v, clients, res)
