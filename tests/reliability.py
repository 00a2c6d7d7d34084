"""Helpers shared by the reliability tests (test_security, test_fuzz, test_faults, test_load).

run_cli runs genisss in this process (fast enough for fuzzing and big
matrices) with the process state genisss keeps between calls reset, so that
one run cannot mask a password for the next. Silent and frozen servers, and
throwaway clusters that a test may stop, live here too.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

# The documented exit codes (genisss_cli/errors.py, README).
EXIT_CODES = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 130}

# What each command is run with when the whole command line is exercised.
# test_security.test_every_command_is_exercised keeps it complete.
COMMAND_ARGS: dict[str, list[list[str]]] = {
    "status": [[], ["--json"]],
    "bump": [["story"], ["audio", "-n", "3", "--json"]],
    "drift": [[], ["--json", "--estimate", "-t", "5"]],
    "sync": [["--dry-run"], ["--json"]],
    "watch": [["--json", "--count", "1", "--timeout", "0.3"]],
    "check": [[], ["--json"]],
    "metrics": [[], ["--json", "--no-realtime"]],
    "broadcast": [[], ["--json"], ["--max-per-second", "5", "--dry-run"]],
    "relay": [["--once"], ["--once", "--json"]],
    "demo": [["--seconds", "1"], ["--json", "--seconds", "1"]],  # refuses any --database-url
    "capacity": [["--viewers", "10", "--window", "0.5"],
                 ["--viewers", "10", "--writes-per-second", "2", "--json"]],
    "migrate up": [[], ["--json"], ["--dry-run"]],
    "migrate down": [["--dry-run"], ["--dry-run", "--json"]],
    "migrate status": [[], ["--json"]],
    "migrate history": [[], ["--json"]],
    "migrate sql": [[], ["down"]],
    "migrate repair": [[], ["--json"]],
    "migrate stamp": [["head"], ["head", "--json"]],
    "db url": [[], ["--json"]],
    "db psql": [["--", "-c", "select 1"]],
    "db start": [[]],
    "db stop": [[]],
    "db status": [["--json"]],
}


@dataclass
class Run:
    code: int
    out: str
    err: str
    trace: str = ""  # a traceback that escaped run() (only --debug lets one out)

    @property
    def output(self) -> str:
        return self.out + self.err + self.trace


def commands() -> list[str]:
    """genisss's commands as they are now, "migrate up" for subcommands."""
    import typer

    from genisss_cli.cli import app

    group = typer.main.get_command(app)
    names = []
    for name, cmd in group.commands.items():
        sub = getattr(cmd, "commands", None)
        names += [f"{name} {s}" for s in sub] if sub else [name]
    return names


def run_cli(argv: list[str], *, env: dict | None = None, cwd: Path, data_dir: Path | None = None,
            guard: float = 60.0) -> Run:
    """genisss.cli.run(argv, Env) in this process, as from a clean shell in `cwd`:
    the Env carries the environment, the folder and the streams, so nothing of
    one run reaches the next.

    After `guard` seconds it is interrupted as by Ctrl-C (exit 130): a command
    that hangs fails its test instead of hanging the suite."""
    from genisss_cli import cli
    from genisss_cli.env import Env

    environ = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "GENISSS_DATABASE_URL", "GENISSS_CONNECT_TIMEOUT")}
    environ["GENISSS_DATA_DIR"] = str(data_dir or cwd / "genisss-data")
    environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    # no terminal on stdin: nothing may wait for an answer
    run_env = Env(environ=environ, cwd=cwd, stdin=io.StringIO(""), stdout=out, stderr=err)
    trace = ""
    code = -1
    # Typer writes --help and its usage text to sys.stdout itself.
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), interrupt_after(guard):
        try:
            code = cli.run([str(a) for a in argv], run_env)
        except BaseException as exc:  # only --debug re-raises; Python would print this
            trace = "".join(traceback.format_exception(exc))
            code = 1
    return Run(int(code), out.getvalue(), err.getvalue(), trace)


@contextlib.contextmanager
def interrupt_after(seconds: float):
    """KeyboardInterrupt (as Ctrl-C) in the main thread after `seconds`."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def with_password(dsn: str, password: str, form: str = "url") -> str:
    """The DSN with a password, as a URL (the password percent-encoded) or as key=value words."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params["password"] = password
    if form != "url":
        return psycopg.conninfo.make_conninfo(**params)
    user = quote(params.pop("user", "") or "", safe="")
    secret = quote(params.pop("password"), safe="")
    host = params.pop("host", "") or ""
    port = params.pop("port", "") or ""
    dbname = quote(params.pop("dbname", "") or "", safe="")
    query = dict(params)
    netloc = ""
    if host.startswith("/"):
        query["host"] = host
        if port:
            query["port"] = port
    else:
        netloc = host + (f":{port}" if port else "")
    q = "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in query.items())
    return f"postgresql://{user}:{secret}@{netloc}/{dbname}" + (f"?{q}" if q else "")


# -- servers that misbehave -------------------------------------------------------------------


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers a byte.

    Stops itself after `lifetime` seconds at the latest, so a test that hangs
    cannot leave it behind."""

    def __init__(self, lifetime: float = 120.0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def dsn(self, password: str = "pw") -> str:
        return f"postgresql://u:{quote(password, safe='')}@127.0.0.1:{self.port}/db"

    def _serve(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self.accepted += 1
            self._conns.append(conn)  # held open, never read, never answered
        self._close()

    def _close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def cluster_pids(admin_dsn: str, pgdata: Path) -> list[int]:
    """The postmaster and every process it forked (backends, checkpointer...)."""
    postmaster = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]


@contextlib.contextmanager
def frozen(admin_dsn: str, pgdata: Path):
    """SIGSTOP the whole cluster; SIGCONT it on the way out, whatever happens."""
    pids = cluster_pids(admin_dsn, pgdata)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        # New backends forked just before the stop are children too.
        for pid in set(pids) | set(cluster_pids(admin_dsn, pgdata)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


# -- a cluster of one's own, to stop, freeze and restart ----------------------------------------


class Cluster:
    """A throwaway embedded PostgreSQL that a test may stop at any moment
    (never the shared session servers, never the system server)."""

    def __init__(self, base: Path):
        self.base = base
        self.start()

    def start(self) -> None:
        from genisss_cli.conn import embedded

        self.admin_dsn = embedded.start(self.base).dsn

    @property
    def pgdata(self) -> Path:
        from genisss_cli.conn import embedded

        return embedded.pgdata(self.base)

    def postmaster(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: SIGQUIT to the postmaster, no checkpoint,
        every session cut; the next start runs crash recovery."""
        pid = self.postmaster()
        if pid is None:
            return
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise RuntimeError("the postmaster did not stop after SIGQUIT")

    def restart(self) -> None:
        self.crash()
        self.start()

    def frozen(self):
        return frozen(self.admin_dsn, self.pgdata)

    def dsn(self, dbname: str) -> str:
        return psycopg.conninfo.make_conninfo(self.admin_dsn, dbname=dbname)

    def create_db(self, name: str) -> str:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def close(self) -> None:
        import shutil

        from genisss_cli.conn import embedded

        try:
            embedded.stop(self.base)
        except Exception:
            self.crash()
        shutil.rmtree(self.base, ignore_errors=True)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "a condition"):
    """Poll until predicate() is truthy; its value. (A guard against hanging, not a timed assertion.)"""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except psycopg.OperationalError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(interval)


def waiting_on_lock(dsn: str, application_name: str = "genisss") -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = %s "
                            "AND wait_event_type = 'Lock'", [application_name]).fetchone()[0]


class WatchReader:
    """Reads a background `watch --json`: its JSON lines, and its stderr."""

    def __init__(self, proc):
        self.proc = proc
        self.totals: list[tuple[int, bool]] = []  # (total_stories, resync)
        self.pairs: list[tuple[int, int]] = []  # (total_stories, total_audio_generations)
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._out, daemon=True),
                         threading.Thread(target=self._err, daemon=True)]
        for t in self._threads:
            t.start()

    def _out(self):
        for line in self.proc.stdout:
            d = json.loads(line)
            self.totals.append((d["total_stories"], d["resync"]))
            self.pairs.append((d["total_stories"], d["total_audio_generations"]))

    def _err(self):
        for line in self.proc.stderr:
            self.err.append(line)

    def last(self) -> int | None:
        """The last total_stories shown: the last change, or else the value the
        watch started on (its stderr line), when nothing changed after it."""
        if self.totals:
            return self.totals[-1][0]
        start = next((m for line in self.err if (m := re.search(r"total_stories ([\d,]+)", line))), None)
        return int(start.group(1).replace(",", "")) if start else None

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(60)
        for t in self._threads:
            t.join(60)
        return code


def assert_consistent(dsn: str) -> str | None:
    """alembic_version and migration 033's six objects agree: all there at
    033 and later (from 034 on, the trigger is the gated one), none below it
    (never a half-applied migration). The revision."""
    from genisss_cli.core import schema

    with psycopg.connect(dsn, autocommit=True) as conn:
        version = schema.current_revision(conn)
        objects = conn.execute("""
            SELECT (to_regclass('public.global_stats') IS NOT NULL)::int
                 + (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname IN
                    ('increment_story_counter', 'increment_audio_counter', 'sync_story_counter',
                     'global_stats_notify'))
                 + (SELECT count(*) FROM pg_trigger WHERE tgname = 'global_stats_notify')""").fetchone()[0]
        gated = conn.execute("""
            SELECT count(*) FROM pg_trigger WHERE tgname = 'global_stats_notify' AND tgqual IS NOT NULL
            """).fetchone()[0]
    assert objects == (6 if schema.reached(version, schema.REALTIME) else 0), (version, objects)
    assert gated == schema.reached(version, schema.WATCHED), (version, gated)
    return version
