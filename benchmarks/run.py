"""The genisss benchmark suite (issue 6; docs/performance.md).

    python -m benchmarks.run [--quick] [--json PATH] [--only NAME,...]

Starts its own embedded PostgreSQL in a temporary folder, migrates it to
head, measures every figure against a raw baseline in the same run (the two
interleaved, medians of N), prints one table and writes the same as JSON
(default benchmarks/results/latest.json). Stops and deletes the server at the
end. Exit 0 when every target is met, 1 when one is missed or not measured.

Sections (--only): startup, imports, oneshot, bump, trigger, broadcast, watch, burst, live,
drift.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import broadcast as broadcast_section  # noqa: E402
from benchmarks import harness as h  # noqa: E402
from benchmarks.harness import BenchError, median, percentile  # noqa: E402

SECTIONS = ("startup", "imports", "oneshot", "bump", "trigger", "broadcast", "watch", "burst", "live",
            "drift")

FULL = {
    "startup_n": 11, "oneshot_n": 9, "small_rows": 1_000,
    "bump_count": 20_000, "bump_n": 3,
    "pgbench_seconds": 2, "pgbench_n": 7,
    "watch_rate": 200, "watch_seconds": 3, "watch_rounds": 6,
    "burst_seconds": 10,
    "big_rows": 10_000_000, "drift_n": 7,
}
QUICK = FULL | {
    "startup_n": 5, "oneshot_n": 3, "bump_count": 5_000, "bump_n": 1,
    "pgbench_seconds": 1, "pgbench_n": 1, "watch_seconds": 1.5, "watch_rounds": 1,
    "burst_seconds": 3, "big_rows": 1_000_000, "drift_n": 3,
}

INCREMENT = "SELECT public.increment_story_counter();\n"
BARE_TRIGGER = """
CREATE OR REPLACE FUNCTION public.global_stats_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  PERFORM pg_notify('global_stats', '');
  RETURN NULL;
END
$$
"""
SMALL, WRITE, BIG = "bench_small", "bench_write", "bench_big"


# -- figures -------------------------------------------------------------------------


@dataclass
class Figure:
    key: str
    figure: str
    unit: str  # ms | /s | changes | text
    target: str
    genisss: float | str | None = None
    baseline: float | str | None = None
    ratio: float | None = None
    result: str = "not measured"  # pass | FAIL | report | not measured
    note: str = ""
    detail: dict = field(default_factory=dict)

    def judge(self, ok: bool | None) -> None:
        self.result = "report" if ok is None else ("pass" if ok else "FAIL")


class Bench:
    def __init__(self, args):
        self.args = args
        self.p = QUICK if args.quick else FULL
        self.figures: dict[str, Figure] = {}
        self.log_lines: list[str] = []
        self.commands: dict[str, bool] = {}

    def fig(self, key: str, figure: str, unit: str, target: str) -> Figure:
        f = Figure(key, figure, unit, target)
        self.figures[key] = f
        return f

    def log(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        self.log_lines.append(line)
        print(line, file=sys.stderr, flush=True)

    # -- helpers over the programs ----------------------------------------------------

    def g(self, *args: str, db: str | None = None) -> list[str]:
        pre = ["-d", self.server.dsn_for(db)] if db else []
        return [*self.progs.genisss, *pre, *args]

    def has(self, command: str) -> bool:
        """Does this genisss have the command yet? (others build them in parallel)"""
        if not self.commands:
            import typer

            from genisss_cli.cli import app

            self.commands = dict.fromkeys(typer.main.get_command(app).commands, True)
        return self.commands.get(command, False)

    def need(self, *commands: str) -> None:
        missing = [c for c in commands if not self.has(c)]
        if missing:
            raise BenchError(f"command missing: genisss {', '.join(missing)}")

    def t(self, cmd, ok=(0,)):
        return lambda: h.timed(cmd, self.progs, ok)

    def script(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.write_text(text)
        return path

    @contextmanager
    def pinned(self):
        """Backends (forked from now on) and the clients given the yielded CPUs on one CPU."""
        cpus = h.one_cpu()
        everything = os.sched_getaffinity(0) if cpus else None
        h.set_affinity(self.server.pid, cpus)
        try:
            yield cpus
        finally:
            h.set_affinity(self.server.pid, everything)

    def total(self, db: str = WRITE) -> int:
        return self.server.scalar(db, "SELECT total_stories FROM public.global_stats WHERE id = 'singleton'")


# -- set-up ----------------------------------------------------------------------------


def setup(b: Bench) -> None:
    b.workdir = h.make_workdir()
    b.progs = h.find_programs(b.workdir)
    t0 = time.perf_counter()
    b.server = h.start_server(b.workdir)
    b.log(f"embedded server up in {time.perf_counter() - t0:.1f} s ({b.workdir})")
    # A throwaway cluster: commits need not wait for the disk. With the flush,
    # every ratio would be diluted towards 1 by the disk's fsync time (about
    # 1.8 ms here), hiding the CPU and lock costs these figures are about.
    b.server.execute("postgres", "ALTER SYSTEM SET synchronous_commit = off", "SELECT pg_reload_conf()")
    b.server.execute("postgres", "CREATE DATABASE bench_template")
    h.migrate(b.server.dsn_for("bench_template"))
    for name in (SMALL, WRITE, BIG):
        b.server.execute("postgres", f"CREATE DATABASE {name} TEMPLATE bench_template")
    b.server.execute(SMALL,
                     f"INSERT INTO public.user_stories (title) "
                     f"SELECT 'story ' || g FROM generate_series(1, {b.p['small_rows']}) g",
                     "SELECT * FROM public.sync_story_counter()",
                     "VACUUM ANALYZE public.user_stories")
    with b.server.connect() as conn:
        b.settings = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in (
            "server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_level",
            "max_parallel_workers_per_gather")}
    b.log(f"migrated; PostgreSQL {b.settings['server_version']}")


def big_table(b: Bench) -> int:
    rows = b.p["big_rows"]
    if getattr(b, "big_ready", False):
        return rows
    t0 = time.perf_counter()
    b.server.execute(BIG,
                     "SET synchronous_commit = off",
                     f"INSERT INTO public.user_stories (title) "
                     f"SELECT 'story ' || g FROM generate_series(1, {rows}) g",
                     "SELECT * FROM public.sync_story_counter()",
                     "VACUUM ANALYZE public.user_stories",
                     "CHECKPOINT")
    b.big_ready = True
    b.log(f"{rows:,} rows in user_stories in {time.perf_counter() - t0:.1f} s")
    return rows


# -- sections ----------------------------------------------------------------------------


def startup(b: Bench) -> None:
    f = b.fig("startup", "start-up: genisss --help", "ms", "<= 1.3")
    f.detail["baseline_cmd"] = "python -c 'import typer, rich'"
    res = h.interleaved({
        "genisss": b.t(b.g("--help")),
        "baseline": b.t([b.progs.python, "-c", "import typer, rich"]),
    }, b.p["startup_n"])
    ms(f, res, 1.3)


def oneshot(b: Bench) -> None:
    query = "SELECT * FROM public.global_stats WHERE id = 'singleton'"
    count = "SELECT count(*) FROM public.user_stories"
    rows = b.p["small_rows"]
    for key, label, cmd, sql in (
        ("oneshot_status", "one-shot: genisss status", ("status",), query),
        ("oneshot_drift", f"one-shot: genisss drift ({rows:,} stories)", ("drift",), count),
    ):
        f = b.fig(key, label, "ms", "<= 1.3")
        f.detail["baseline_cmd"] = f"bare psycopg script: connect, {sql}"
        try:
            b.need(cmd[0])
            res = h.interleaved({
                "genisss": b.t(b.g(*cmd, db=SMALL)),
                "baseline": b.t(b.progs.bare("query.py", b.server.dsn_for(SMALL), sql)),
            }, b.p["oneshot_n"])
            ms(f, res, 1.3)
        except BenchError as exc:
            f.note = str(exc)
    # The floor under both rows: importing the fixed stack (psycopg, Typer and
    # the Rich table every command prints), without connecting, and ending as
    # genisss ends (entry.skip_teardown, then exit_now: no teardown of the
    # modules), against the same bare script. genisss cannot start and stop
    # faster than this.
    f = b.fig("oneshot_floor", "one-shot floor: import psycopg, typer, rich.table; exit", "ms", "report")
    f.detail["baseline_cmd"] = "bare psycopg script: connect, " + query
    floor = ("from genisss_cli import entry\nentry.skip_teardown()\n"
             "import psycopg, typer, rich.console, rich.table\nentry.exit_now(0)")
    res = h.interleaved({
        "genisss": b.t([b.progs.python, "-c", floor]),
        "baseline": b.t(b.progs.bare("query.py", b.server.dsn_for(SMALL), query)),
    }, b.p["oneshot_n"])
    ms(f, res, None)


def bump(b: Bench) -> None:
    n = b.p["bump_count"]
    f = b.fig("bump", f"bump story --count {n:,} (rate)", "/s", ">= 0.8")
    f.detail["baseline_cmd"] = f"pgbench -n -M prepared -c 1 -t {n} (SELECT increment_story_counter())"
    b.need("bump")
    script = b.script("increment.sql", INCREMENT)
    dsn = b.server.dsn_for(WRITE)
    walls: list[float] = []

    def genisss() -> float:
        t0 = time.perf_counter()
        out = h.run(b.g("bump", "story", "--count", str(n), "--json", db=WRITE), b.progs, cpus=cpus).stdout
        walls.append(time.perf_counter() - t0)
        return float(json.loads(out)["rate"])

    def baseline() -> float:
        return h.pgbench(b.progs, dsn, script, clients=1, transactions=n, cpus=cpus).tps

    with b.pinned() as cpus:
        res = h.interleaved({"genisss": genisss, "baseline": baseline}, b.p["bump_n"])
    f.detail["pinned_to_cpu"] = sorted(cpus) if cpus else None
    g, base = median(res["genisss"]), median(res["baseline"])
    f.genisss, f.baseline, f.ratio = g, base, g / base
    f.detail.update(samples=res, wall_seconds_with_startup=walls)
    f.judge(f.ratio >= 0.8)
    check_one_connection(b)


def check_one_connection(b: Bench) -> None:
    """Implication: bump --count N reuses one connection, one transaction per bump."""
    n = 1000
    f = b.fig("bump_connection", f"bump --count {n:,}: sessions, commits", "text",
              f"1 session, >= {n} commits")
    query = ("SELECT sessions, xact_commit FROM pg_stat_database WHERE datname = %s")
    with b.server.connect() as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        before = conn.execute(query, [WRITE]).fetchone()
        h.run(b.g("bump", "story", "--count", str(n), "--json", db=WRITE), b.progs)
        time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        after = conn.execute(query, [WRITE]).fetchone()
    sessions, commits = after[0] - before[0], after[1] - before[1]
    f.genisss = f"{sessions} session, {commits:,} commits"
    f.detail.update(sessions=sessions, commits=commits)
    f.judge(sessions == 1 and commits >= n)


def trigger(b: Bench) -> None:
    """pgbench on increment_story_counter() with each trigger variant, nobody
    watching and then with a registered watcher draining the notifications."""
    secs, reps = b.p["pgbench_seconds"], b.p["pgbench_n"]
    script = b.script("increment.sql", INCREMENT)
    dsn = b.server.dsn_for(WRITE)
    original, gated = h.migrated_trigger(b.server, WRITE)
    drop = "DROP TRIGGER global_stats_notify ON public.global_stats"
    always = ("CREATE TRIGGER global_stats_notify AFTER UPDATE ON public.global_stats "
              "FOR EACH ROW EXECUTE FUNCTION public.global_stats_notify()")
    variants = {
        "migration": [original, drop, gated],
        "bare": [BARE_TRIGGER, drop, always],
        "none": [original, drop, gated,
                 "ALTER TABLE public.global_stats DISABLE TRIGGER global_stats_notify"],
    }
    runs = {"unwatched": ("migration", "none"), "watched": ("migration", "bare", "none")}
    tps: dict[tuple[str, str, int], list[float]] = {}
    cpu: dict[tuple[str, str, int], list[float]] = {}  # server CPU per transaction, microseconds

    def measure(mode: str, clients: int, cpus, options: str = "", key: str | None = None) -> None:
        names = list(runs[mode])
        for rep in range(reps):
            for name in names if rep % 2 == 0 else list(reversed(names)):
                b.server.execute(WRITE, *variants[name], "VACUUM public.global_stats", "CHECKPOINT")
                r, per_tx = h.pgbench_cpu(b.progs, b.server, dsn, script, clients=clients,
                                          seconds=secs, cpus=cpus, options=options)
                if r.failed:
                    raise BenchError(f"pgbench: {r.failed} failed transactions")
                tps.setdefault((key or mode, name, clients), []).append(r.tps)
                if per_tx is not None:
                    cpu.setdefault((key or mode, name, clients), []).append(per_tx)

    try:
        for clients in (1, 8):
            with b.pinned() if clients == 1 else nullcontext() as cpus:
                measure("unwatched", clients, cpus)
                with h.draining_watcher(b.progs, b.workdir, dsn, cpus):
                    measure("watched", clients, cpus)
        # The same where commits wait for the disk (PostgreSQL's default, and
        # Supabase's): notifying commits are serialised while they flush.
        if not b.args.quick:
            with h.draining_watcher(b.progs, b.workdir, dsn):
                measure("watched", 8, None, "-c synchronous_commit=on", key="watched_sync")
    finally:
        b.server.execute(WRITE, *variants["migration"])

    def row(key, figure, target, mode, a, base, baseline_cmd, ok=None, clients=8):
        f = b.fig(key, figure, "/s", target)
        f.detail["baseline_cmd"] = baseline_cmd
        f.detail["pinned_to_one_cpu"] = clients == 1 and h.one_cpu() is not None
        ga, gb = tps[(mode, a, clients)], tps[(mode, base, clients)]
        f.genisss, f.baseline = median(ga), median(gb)
        f.ratio = f.genisss / f.baseline
        f.detail.update(samples={a: ga, base: gb})
        f.judge(ok(f.ratio) if ok else None)

    for clients in (1, 8):
        n = f"{clients} client{'s' * (clients > 1)}"
        row(f"tax_c{clients}", f"NOTIFY tax, {n}, nobody watching",
            ">= 0.8 (stretch)" if clients == 8 else "report", "unwatched", "migration", "none",
            "the same with no trigger at all", (lambda r: r >= 0.8) if clients == 8 else None, clients)
        row(f"trigger_c{clients}", f"trigger overhead, {n}, watched", ">= 0.95", "watched", "migration",
            "bare", "the same with a bare pg_notify('global_stats', '') trigger, same watcher",
            lambda r: r >= 0.95, clients)
        row(f"tax_watched_c{clients}", f"NOTIFY tax, {n}, watched", "report", "watched", "migration",
            "none", "the same with no trigger at all, same watcher", None, clients)
    # The same runs in server CPU per increment (the backends' user + system
    # time): steadier than throughput on a shared machine; a ratio of costs,
    # inverted so that, like the rows above, 1.0 is "as cheap as the baseline".
    for mode, a, base, label in (("unwatched", "migration", "none", "nobody watching, vs no trigger"),
                                 ("watched", "migration", "bare", "watched, vs the bare trigger")):
        for clients in (1, 8):
            ga, gb = cpu.get((mode, a, clients)), cpu.get((mode, base, clients))
            if not ga or not gb:
                continue
            f = b.fig(f"cpu_{mode}_c{clients}", f"server CPU per increment, {clients} client"
                      f"{'s' * (clients > 1)}, {label}", "us", "report")
            f.detail["baseline_cmd"] = f"the same runs as the throughput rows, variant {base!r}"
            f.genisss, f.baseline = median(ga), median(gb)
            f.ratio = f.baseline / f.genisss
            f.detail.update(samples={a: ga, base: gb}, ratio_is="baseline / genisss")
            f.judge(None)
    if ("watched_sync", "migration", 8) in tps:
        row("tax_c8_sync", "NOTIFY tax, 8 clients, watched, synchronous_commit = on", "report",
            "watched_sync", "migration", "none", "the same with no trigger at all; commits wait for the disk")


def watch_latency(b: Bench) -> None:
    rate, secs, rounds = b.p["watch_rate"], b.p["watch_seconds"], b.p["watch_rounds"]
    f = b.fig("watch_p99", f"watch latency p99, {rate} changes/s", "ms", "<= 2, p99 < 5 ms")
    f.detail["baseline_cmd"] = "bare psycopg LISTEN loop (benchmarks/bare/listen.py), same load"
    dsn = b.server.dsn_for(WRITE)
    listeners = {"baseline": b.progs.bare("listen.py", dsn)}
    if b.has("watch"):
        listeners["genisss"] = b.g("watch", "--json", db=WRITE)
    else:
        f.note = "genisss: not measured: command missing (genisss watch)"
    lat: dict[str, list[float]] = {k: [] for k in listeners}
    lost: dict[str, int] = {k: 0 for k in listeners}
    with b.server.connect(WRITE) as ping_conn:
        def ping() -> int:
            return ping_conn.execute("SELECT public.increment_story_counter()").fetchone()[0]

        names = list(listeners)
        for rnd in range(rounds):
            for name in names if rnd % 2 == 0 else list(reversed(names)):
                lis = h.Listener(listeners[name], b.progs)
                try:
                    lis.wait_ready(ping)
                    start = b.total()
                    out = h.run(b.progs.bare("writer.py", dsn, str(rate), str(secs)), b.progs).stdout
                    last = json.loads(out)["last"]
                    lis.wait_for(last, 10)
                    lines = [ln for ln in lis.since(start) if ln.total <= last]
                    lat[name] += [ln.latency_ms for ln in lines if ln.latency_ms is not None]
                    lost[name] += (last - start) - len({ln.total for ln in lines})
                finally:
                    lis.stop()
    f.detail.update(lost=lost, samples_n={k: len(v) for k, v in lat.items()})
    for name, values in lat.items():
        if values:
            f.detail[name] = {"p50": percentile(values, 50), "p99": percentile(values, 99),
                              "max": max(values)}
    base = f.detail.get("baseline", {}).get("p99")
    f.baseline = base
    if "genisss" in listeners and "genisss" in f.detail:
        g = f.detail["genisss"]["p99"]
        f.genisss, f.ratio = g, g / base
        # Since 036 a NOTIFY is a hint to read the row: two commits inside one
        # read show as the later one. Reported, not failed: the last value shows.
        f.judge(f.ratio <= 2 and g < 5)
        if lost["genisss"]:
            f.note = f"{lost['genisss']} changes coalesced into a later line"


def burst(b: Bench) -> None:
    secs = b.p["burst_seconds"]
    f = b.fig("burst", f"watch --json under a burst ({secs} s, 1 writer)", "lines",
              "last = final (a burst coalesces: lines shown of changes written)")
    f.detail["baseline_cmd"] = f"pgbench -n -M prepared -c 1 -T {secs}: the writer's count"
    b.need("watch")
    script = b.script("increment.sql", INCREMENT)
    lis = h.Listener(b.g("watch", "--json", db=WRITE), b.progs)
    try:
        with b.server.connect(WRITE) as conn:
            lis.wait_ready(lambda: conn.execute("SELECT public.increment_story_counter()").fetchone()[0])
        start = b.total()
        cpu0 = h.cpu_seconds(lis.proc.pid)
        r = h.pgbench(b.progs, b.server.dsn_for(WRITE), script, clients=1, seconds=secs)
        ended = time.perf_counter()
        final = b.total()
        lis.wait_for(final, 60)
        time.sleep(0.2)  # anything after the final total would be a bug: let it show
        cpu1 = h.cpu_seconds(lis.proc.pid)
    finally:
        lis.stop()
    written = final - start
    lines = lis.since(start)
    got = {ln.total for ln in lines}
    missing = written - len(got & set(range(start + 1, final + 1)))
    last = lines[-1].total if lines else None
    lats = [ln.latency_ms for ln in lines if ln.latency_ms is not None]
    f.genisss, f.baseline = len(got), written
    f.ratio = len(got) / written if written else None
    f.detail.update(pgbench_tps=r.tps, pgbench_transactions=r.transactions, last_line=last, final=final,
                    missing=missing, lines=len(lines),
                    drain_ms=(lines[-1].received - ended) * 1000 if lines else None,
                    watch_cpu_seconds=None if cpu0 is None or cpu1 is None else cpu1 - cpu0)
    if lats:
        f.detail.update(latency_p50_ms=percentile(lats, 50), latency_p99_ms=percentile(lats, 99),
                        latency_max_ms=max(lats))
    f.note = f"last line {last}, final {final}; {missing} changes coalesced"
    f.judge(last == final and got <= set(range(start + 1, final + 1)))


def live_view(b: Bench) -> None:
    """Implication: the live view redraws at a bounded rate, off the LISTEN loop."""
    secs = max(2, b.p["burst_seconds"] // 3)
    f = b.fig("watch_live", f"watch (live view on a terminal), {secs} s burst", "text", "<= 25 redraws/s")
    b.need("watch")
    script = b.script("increment.sql", INCREMENT)
    term = h.PtyRun(b.g("watch", db=WRITE), b.progs)
    try:
        deadline = time.monotonic() + 20
        while not term.output() and time.monotonic() < deadline and term.proc.poll() is None:
            time.sleep(0.05)
        time.sleep(1.0)  # connected and listening (the view shows the row it fetched)
        t0, cpu0 = time.perf_counter(), h.cpu_seconds(term.proc.pid)
        r = h.pgbench(b.progs, b.server.dsn_for(WRITE), script, clients=1, seconds=secs)
        t1, cpu1 = time.perf_counter(), h.cpu_seconds(term.proc.pid)
        alive = term.proc.poll() is None
    finally:
        term.stop()
    out = term.output(t0, t1)
    redraws = out.count(b"\r\x1b[2K")
    rate = redraws / (t1 - t0)
    cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / (t1 - t0)
    f.genisss = f"{rate:.1f} redraws/s at {r.tps:,.0f} changes/s" + (
        "" if cpu is None else f", {cpu:.0%} CPU")
    f.detail.update(redraws=redraws, seconds=t1 - t0, changes_per_s=r.tps, cpu_share=cpu,
                    bytes=len(out), alive=alive)
    f.judge(alive and redraws > 0 and rate <= 25)
    if not redraws:
        f.note = "no redraw seen on the terminal"


def drift(b: Bench) -> None:
    b.need("drift")
    rows = big_table(b)
    label = f"{rows / 1e6:g}M stories" + (" (quick)" if b.args.quick else "")
    dsn = b.server.dsn_for(BIG)
    f = b.fig("drift_exact", f"exact drift, {label}", "ms", "<= 1.15")
    f.detail["baseline_cmd"] = "bare psycopg script: SELECT count(*) FROM user_stories"
    res = h.interleaved({
        "genisss": b.t(b.g("drift", db=BIG)),
        "baseline": b.t(b.progs.bare("query.py", dsn, "SELECT count(*) FROM public.user_stories")),
    }, b.p["drift_n"])
    ms(f, res, 1.15)
    f = b.fig("drift_estimate", f"estimated drift, {label}", "ms", "<= 1.3")
    f.detail["baseline_cmd"] = "bare psycopg script start-up: connect, read pg_class.reltuples"
    res = h.interleaved({
        # the estimate is approximate: exit 1 (drift found) is a valid answer here
        "genisss": b.t(b.g("drift", "--estimate", db=BIG), ok=(0, 1)),
        "baseline": b.t(b.progs.bare(
            "query.py", dsn, "SELECT reltuples FROM pg_class WHERE oid = 'public.user_stories'::regclass")),
    }, b.p["oneshot_n"])
    ms(f, res, 1.3)


IMPORT_COMMANDS = (
    ("--help",), ("status",), ("drift",), ("bump", "story"), ("sync", "--dry-run"), ("check",),
    ("watch", "--json", "--count", "1"),
)
HEAVY = ("sqlalchemy", "alembic")  # the migration machinery
# What genisss itself never uses: typer >= 0.29 pulls pydantic into every
# command; typer's rich help pulls markdown_it and pygments (for markdown help
# and pretty tracebacks, both unused here).
OTHER_HEAVY = ("pydantic", "markdown_it", "pygments")


def imports(b: Bench) -> None:
    """Implication: no SQLAlchemy or Alembic (nor other unused heavy modules) outside migrate."""
    f = b.fig("imports", "no SQLAlchemy/Alembic outside migrate", "text", "none imported")
    g = b.fig("imports_other", "no other unused heavy imports", "text", "none imported")
    g.detail["modules"] = list(OTHER_HEAVY)
    per: dict[str, dict] = {}
    skipped: list[str] = []
    for cmd in IMPORT_COMMANDS:
        name = " ".join(cmd)
        if cmd[0] != "--help" and not b.has(cmd[0]):
            skipped.append(cmd[0])
            continue
        argv = [b.progs.python, "-X", "importtime", "-m", "genisss_cli", "-d", b.server.dsn_for(WRITE), *cmd]
        if cmd[0] == "watch":
            lis = h.Listener(argv, b.progs)
            with b.server.connect(WRITE) as conn:
                deadline = time.monotonic() + 20
                while lis.proc.poll() is None and time.monotonic() < deadline:
                    conn.execute("SELECT public.increment_story_counter()")
                    time.sleep(0.2)
            lis.stop()
            err = lis.proc.stderr.read()
        else:
            err = h.run(argv, b.progs, ok=(0, 1)).stderr
        mods = _importtime(err)
        tops: dict[str, int] = {}
        for m, us in mods.items():
            tops[m.split(".")[0]] = tops.get(m.split(".")[0], 0) + us
        per[name] = {"modules": len(mods), "import_ms": round(sum(mods.values()) / 1000, 1),
                     "heavy": sorted(t for t in tops if t in HEAVY + OTHER_HEAVY),
                     "top": {k: round(v / 1000, 1)
                             for k, v in sorted(tops.items(), key=lambda kv: -kv[1])[:8]}}
    for fig, group in ((f, HEAVY), (g, OTHER_HEAVY)):
        bad = [f"{name}: {', '.join(m for m in v['heavy'] if m in group)}"
               for name, v in per.items() if any(m in group for m in v["heavy"])]
        fig.genisss = "; ".join(bad) or f"none ({len(per)} commands)"
        fig.detail.update(commands=per, skipped=skipped)
        if skipped:
            fig.note = f"not measured (command missing): {', '.join(skipped)}"
        fig.judge(not bad)


def _importtime(stderr: str) -> dict[str, int]:
    """module -> self microseconds, from python -X importtime."""
    mods: dict[str, int] = {}
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = line[len("import time:"):].split("|")
            if len(parts) == 3 and parts[0].strip().isdigit():
                mods[parts[2].strip()] = int(parts[0])
    return mods


def ms(f: Figure, res: dict[str, list[float]], limit: float | None) -> None:
    """Medians; limit None: a figure to report, with no target."""
    g, base = median(res["genisss"]) * 1000, median(res["baseline"]) * 1000
    f.genisss, f.baseline, f.ratio = g, base, g / base
    f.detail["samples_ms"] = {k: [round(v * 1000, 1) for v in vs] for k, vs in res.items()}
    f.judge(None if limit is None else f.ratio <= limit)


# -- output --------------------------------------------------------------------------------


def fmt(value, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "ms":
        return f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "changes":
        return f"{value:,.0f}"
    if unit == "us":
        return f"{value:,.1f} µs"
    return str(value)


def table(b: Bench, meta: dict):
    from rich import box
    from rich.table import Table

    m = meta["machine"]
    t = Table(title=f"genisss benchmarks ({meta['mode']}, {meta['date']})", box=box.SIMPLE_HEAVY,
              caption=f"{m['nproc']} cores, {m['cpu']}, {m['memory_gb']} GB; "
                      f"PostgreSQL {meta['postgres'].get('server_version')}; "
                      f"load {meta['load_before']} -> {meta['load_after']}")
    for col in ("figure", "genisss", "baseline", "ratio", "target", "result"):
        t.add_column(col, justify="right" if col in ("genisss", "baseline", "ratio") else "left")
    styles = {"pass": "green", "FAIL": "bold red", "report": "cyan", "not measured": "yellow"}
    for f in b.figures.values():
        result = f"[{styles.get(f.result, '')}]{f.result}[/]"
        if f.note and f.result != "pass":
            result += f" [dim]({f.note})[/]"
        t.add_row(f.figure, fmt(f.genisss, f.unit), fmt(f.baseline, f.unit),
                  "-" if f.ratio is None else f"{f.ratio:.2f}", f.target, result)
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller and shorter: under a minute")
    ap.add_argument("--json", metavar="PATH", default=str(h.REPO / "benchmarks" / "results" / "latest.json"),
                    help="where to write the results (default benchmarks/results/latest.json)")
    ap.add_argument("--only", metavar="NAMES", help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    args = ap.parse_args(argv)
    only = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = set(only) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s): {', '.join(sorted(unknown))}")

    b = Bench(args)
    started = time.perf_counter()
    load_before = h.load()
    meta = {"mode": "quick" if args.quick else "full",
            "date": datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "machine": h.machine(), "load_before": load_before, "params": b.p}
    try:
        setup(b)
        steps = {"startup": startup, "imports": imports, "oneshot": oneshot, "bump": bump,
                 "trigger": trigger, "broadcast": broadcast_section.broadcast,
                 "watch": watch_latency, "burst": burst, "live": live_view,
                 "drift": drift}
        for name in SECTIONS:
            if name not in only:
                continue
            b.log(f"{name}...")
            before = set(b.figures)
            try:
                steps[name](b)
            except BenchError as exc:
                b.log(f"{name}: not measured: {exc}")
                _unmeasured(b, name, before, str(exc))
            except Exception as exc:  # a broken section must not hide the others
                traceback.print_exc()
                _unmeasured(b, name, before, f"{exc.__class__.__name__}: {exc}")
    finally:
        meta["postgres"] = getattr(b, "settings", {})
        if hasattr(b, "server"):
            try:
                h.stop_server(b.server)
            except Exception as exc:
                print(f"could not stop the benchmark server: {exc}", file=sys.stderr)
        if hasattr(b, "workdir"):
            h.remove_workdir(b.workdir)
    meta["load_after"] = h.load()
    meta["seconds"] = round(time.perf_counter() - started, 1)

    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table(b, meta))
    print(f"{meta['mode']} run: {meta['seconds']} s", file=sys.stderr)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "figures": [asdict(f) for f in b.figures.values()]},
                              indent=2, default=str) + "\n")
    print(f"results: {out}", file=sys.stderr)
    return 0 if all(f.result in ("pass", "report") for f in b.figures.values()) else 1


def _unmeasured(b: Bench, section: str, before: set[str], reason: str) -> None:
    new = [k for k in b.figures if k not in before]
    for k in new:
        f = b.figures[k]
        if f.result in ("not measured",) or f.genisss is None:
            f.result, f.note = "not measured", f.note or reason
    if not new:
        f = b.fig(section, section, "text", "-")
        f.note = reason


if __name__ == "__main__":
    sys.exit(main())
