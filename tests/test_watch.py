"""genisss watch: the live feed through LISTEN/NOTIFY, on real PostgreSQL.

Every watch here is the real command in a subprocess; the bumps come from
another connection (psycopg), as the worker's would. The time limits below are
only there so that a broken watch fails instead of hanging.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from datetime import datetime

import psycopg
import pytest
from conftest import clean_env

from genisss_cli.conn import embedded
from genisss_cli.core import watch
from genisss_cli.core.checks import fixes
from genisss_cli.render.watch import sparkline

LIMIT = 60  # seconds: a safety net, never an expectation


class Watch:
    """A background `genisss watch`, its stdout and stderr collected line by line."""

    def __init__(self, proc: subprocess.Popen, read_stdout: bool = True):
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self.cond = threading.Condition()
        streams = ((proc.stdout, self.out), (proc.stderr, self.err))[0 if read_stdout else 1:]
        self.threads = [threading.Thread(target=self._pump, args=(s, lines), daemon=True)
                        for s, lines in streams]
        for t in self.threads:
            t.start()

    def _pump(self, stream, lines) -> None:
        for line in stream:
            with self.cond:
                lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait(self, predicate, what: str) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate() or self.proc.poll() is not None, LIMIT)
            if not (ok and predicate()):
                pytest.fail(f"watch never showed {what}; exit {self.proc.poll()}\n"
                            f"stdout: {self.out[-5:]}\nstderr: {self.err}")

    def wait_err(self, text: str) -> None:
        self.wait(lambda: any(text in line for line in self.err), repr(text))

    def wait_ready(self) -> None:
        self.wait_err("watching global_stats at")

    def wait_out(self, predicate, what: str) -> None:
        self.wait(lambda: any(predicate(json.loads(line)) for line in self.out), what)

    def finish(self) -> int:
        code = self.proc.wait(LIMIT)
        for t in self.threads:
            t.join(LIMIT)
        return code

    def changes(self) -> list[dict]:
        return [json.loads(line) for line in self.out]

    def summary(self) -> dict:
        return json.loads(self.err[-1])["summary"]


@pytest.fixture
def start_watch(popen_genisss):
    def start(*args, dsn: str | None = None, env: dict | None = None, read_stdout=True) -> Watch:
        return Watch(popen_genisss("watch", *args, dsn=dsn, env=env), read_stdout)

    return start


def bump(conn, kind: str = "story", n: int = 1) -> int:
    fn = "increment_story_counter" if kind == "story" else "increment_audio_counter"
    for _ in range(n):
        value = conn.execute(f"SELECT {fn}()").fetchone()[0]
    return value


# -- JSON lines ----------------------------------------------------------------------


def test_json_count_follows_bumps_from_another_process(migrated_db, start_watch):
    w = start_watch("--json", "--count", "5", dsn=migrated_db.dsn)
    w.wait_ready()
    with migrated_db.connect() as conn:
        for i, kind in enumerate(("story", "audio", "story", "story", "audio"), 1):
            bump(conn, kind)
            if i < 5:  # one change at a time: a burst would show as its last value
                w.wait_out(lambda c, i=i: len(w.out) >= i, f"change {i}")
    assert w.finish() == 0, w.err
    lines = w.changes()
    assert [(c["total_stories"], c["total_audio_generations"]) for c in lines] == [
        (1, 0), (1, 1), (2, 1), (3, 1), (3, 2)]
    for c in lines:
        assert set(c) == {"total_stories", "total_audio_generations", "updated_at", "received_at",
                          "latency_ms", "resync"}
        assert c["resync"] is False
        assert 0 <= c["latency_ms"] < 5000  # same host, same clock
        assert datetime.fromisoformat(c["received_at"]) >= datetime.fromisoformat(c["updated_at"])
    s = w.summary()
    assert s["reason"] == "count" and s["changes"] == 5 and s["delta_stories"] == 3
    assert s["latency_p50_ms"] <= s["latency_p99_ms"] <= s["latency_max_ms"]


def test_burst_of_thousands_last_line_is_the_final_total(migrated_db, start_watch):
    n = 3000
    w = start_watch("--json", "--timeout", "3", dsn=migrated_db.dsn)  # ends 3 s after the burst
    w.wait_ready()
    with migrated_db.connect() as conn:
        final = bump(conn, "story", n)
    assert w.finish() == 0, w.err
    totals = [c["total_stories"] for c in w.changes()]
    # Values the table had, rising; a burst between two reads shows as its last
    # value, and the final one always shows.
    assert 1 <= len(totals) <= n and totals == sorted(set(totals))
    assert totals[-1] == final == migrated_db.scalar("SELECT total_stories FROM global_stats")


def test_changes_made_while_away_show_as_one_jump(migrated_db, start_watch):
    """The connection is cut and the database refuses new ones while the
    counter moves: on reconnect watch fetches the row again, prints the jump
    as one `resync` line, then follows as before. Ctrl-C ends it with exit 0."""
    w = start_watch("--json", dsn=migrated_db.dsn)
    w.wait_ready()
    name = migrated_db.name
    with migrated_db.connect() as conn, migrated_db.server.admin() as admin:
        bump(conn)
        w.wait_out(lambda c: c["total_stories"] == 1, "the first bump")
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'genisss'").fetchone()[0]
            assert killed == 1
            w.wait_err("not currently accepting connections")
            bump(conn, "story", 4)
            bump(conn, "audio", 2)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        w.wait_err("reconnected to")
        bump(conn)
        w.wait_out(lambda c: c["total_stories"] == 6, "the bump after reconnecting")
    w.proc.send_signal(signal.SIGINT)
    assert w.finish() == 0, w.err
    lines = w.changes()
    assert [(c["total_stories"], c["total_audio_generations"], c["resync"]) for c in lines] == [
        (1, 0, False), (5, 2, True), (6, 2, False)]
    assert lines[1]["latency_ms"] is None
    s = w.summary()
    assert (s["reason"], s["changes"], s["reconnects"], s["resyncs"]) == ("interrupted", 2, 1, 1)
    assert (s["total_stories"], s["total_audio_generations"]) == (6, 2)
    assert any("reconnecting in" in line and "(attempt 1)" in line for line in w.err)


def test_survives_a_restart_of_the_embedded_server(tmp_path, genisss, start_watch):
    """An operator's embedded server (GENISSS_DATA_DIR), on a throwaway cluster
    of this test's own: stop it under a running watch, start it again, bump."""
    base = tmp_path / "genisss-data"  # the data folder the genisss fixtures point at
    embedded.start(base)
    try:
        assert genisss("migrate", "up").code == 0
        dsn = embedded.status(base).dsn
        w = start_watch("--json")
        w.wait_ready()
        with psycopg.connect(dsn, autocommit=True) as conn:
            bump(conn)
        w.wait_out(lambda c: c["total_stories"] == 1, "the first bump")
        embedded.stop(base)
        w.wait_err("reconnecting in")
        embedded.start(base)
        w.wait_err("reconnected to")
        with psycopg.connect(embedded.status(base).dsn, autocommit=True) as conn:
            bump(conn)
            in_db = conn.execute("SELECT total_stories FROM global_stats").fetchone()[0]
        w.wait_out(lambda c: c["total_stories"] == in_db == 2, "the bump after the restart")
        assert w.proc.poll() is None  # still watching
        w.proc.send_signal(signal.SIGINT)
        assert w.finish() == 0
        assert w.summary()["reconnects"] == 1
    finally:
        embedded.stop(base)


def _states(dsn: str, heartbeat: float, seconds: float) -> list[str]:
    """Run the LISTEN loop in-process for a while, doing nothing; the states it reported."""
    from genisss_cli.conn import db

    stream = watch.events(db.Database(dsn, "test", False), tick=0.05, heartbeat=heartbeat)
    states = []
    end = time.monotonic() + seconds
    try:
        for ev in stream:
            if isinstance(ev, watch.ConnectionState):
                states.append(ev.state)
            if time.monotonic() > end:
                break
    finally:
        stream.close()
    return states


def test_heartbeat_keeps_an_idle_session_timeout_away(migrated_db):
    """A server (or pooler) that ends idle sessions: without the heartbeat the
    session is ended and watch reconnects; with it, the session stays."""
    dsn = psycopg.conninfo.make_conninfo(migrated_db.dsn, options="-c idle_session_timeout=1000")
    assert "reconnecting" in _states(dsn, heartbeat=0, seconds=2.5)
    assert _states(dsn, heartbeat=0.1, seconds=2.5) == ["connected"]


# -- ending -------------------------------------------------------------------------------


def test_timeout_exits_on_silence(migrated_db, genisss):
    r = genisss("watch", "--json", "--timeout", "0.3", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    assert r.out == ""  # stdout carries changes only
    assert json.loads(r.err.strip().splitlines()[-1])["summary"]["reason"] == "timeout"

    # Waiting for a change that does not come is a failure a script can see.
    r = genisss("watch", "--count", "1", "--timeout", "0.3", dsn=migrated_db.dsn)
    assert r.code == 8
    assert "changes seen" in r.out
    assert r.err.strip() == "genisss: error: saw 0 of 1 changes before 0.3 s of silence"


def test_sigterm_stops_it_like_ctrl_c(migrated_db, start_watch):
    """A service manager's stop (systemd, Kubernetes) is SIGTERM: the summary,
    exit 0, and the reason says which signal it was."""
    w = start_watch("--json", dsn=migrated_db.dsn)
    w.wait_ready()
    with migrated_db.connect() as conn:
        bump(conn)
        w.wait_out(lambda c: c["total_stories"] == 1, "the bump")
    w.proc.send_signal(signal.SIGTERM)
    assert w.finish() == 0, w.err
    s = w.summary()
    assert (s["reason"], s["changes"], s["total_stories"]) == ("terminated", 1, 1)
    assert not any("Traceback" in line for line in w.err), w.err


def test_a_closed_stdout_ends_it_quietly(migrated_db, start_watch):
    """genisss watch --json | head -n 1"""
    w = start_watch("--json", dsn=migrated_db.dsn, read_stdout=False)
    w.wait_ready()
    with migrated_db.connect() as conn:
        bump(conn)
        assert json.loads(w.proc.stdout.readline())["total_stories"] == 1
        w.proc.stdout.close()
        bump(conn)
        assert w.finish() == 0
    assert w.summary()["reason"] == "output closed"
    assert not any("Traceback" in line or "Exception" in line for line in w.err), w.err


def test_transaction_pooler_is_refused_in_one_line(genisss):
    r = genisss("watch", dsn="postgresql://postgres:secret@127.0.0.1:6543/postgres")
    assert r.code == 7
    assert r.out == ""
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "transaction pooler" in lines[0] and "5432" in lines[0]
    assert "secret" not in r.err


def test_unreachable_server_at_start_exits_4(genisss):
    r = genisss("watch", "--json", dsn="postgresql://root@127.0.0.1:1/test")
    assert r.code == 4
    assert r.out == "" and len(r.err.strip().splitlines()) == 1


def test_unmigrated_database_exits_5(fresh_db, genisss):
    r = genisss("watch", dsn=fresh_db.dsn)
    assert r.code == 5
    assert r.out == ""
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "migration 033 is not applied" in lines[0]


def test_missing_notify_trigger_exits_5(migrated_db, genisss):
    """A 033 pasted by hand without the trigger: no change would ever arrive."""
    migrated_db.execute("DROP TRIGGER global_stats_notify ON global_stats")
    r = genisss("watch", "--json", dsn=migrated_db.dsn)
    assert r.code == 5
    lines = r.err.strip().splitlines()
    assert [json.loads(line) for line in lines] == [{
        "error": "global_stats has no NOTIFY trigger (global_stats_notify): no change would arrive",
        "exit": 5, "hint": f"fix: {fixes.missing_notify_trigger()}"}]


# -- the live view, in a real terminal ---------------------------------------------------

_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


class Terminal:
    """A pseudo-terminal running one command: what it drew, and a keyboard."""

    def __init__(self, argv: list[str], env: dict, rows: int = 30, cols: int = 110):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

        def controlling_terminal():  # a new session whose terminal is this pty, as in a shell
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     preexec_fn=controlling_terminal)
        os.close(slave)
        self.raw = b""
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the other side is closed
                data = b""
            with self.cond:
                if not data:
                    self.cond.notify_all()
                    return
                self.raw += data
                self.cond.notify_all()

    @property
    def text(self) -> str:
        return _ESCAPES.sub("", self.raw.decode("utf-8", "replace")).replace("\r", "")

    def wait_for(self, needle: str, start: int = 0) -> int:
        with self.cond:
            self.cond.wait_for(lambda: needle in self.text[start:] or not self.reader.is_alive(), LIMIT)
            at = self.text.find(needle, start)
        if at < 0:
            pytest.fail(f"the screen never showed {needle!r}:\n{self.text[-3000:]}")
        return at

    def frame(self, at: int) -> str:
        """The whole frame of the live view that was being drawn at offset `at`."""
        text = self.text
        return text[text.rfind("╭", 0, at):text.find("╯", at) + 1]

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> int:
        code = self.proc.wait(LIMIT)
        self.reader.join(LIMIT)
        os.close(self.master)
        return code


def test_live_view_in_a_terminal_shows_the_totals(migrated_db, tmp_path):
    migrated_db.execute("UPDATE global_stats SET total_stories = 1323, total_audio_generations = 77")
    env = clean_env(tmp_path, TERM="xterm-256color")
    env.pop("COLUMNS", None)
    env.pop("NO_COLOR", None)
    term = Terminal([sys.executable, "-m", "genisss_cli", "-d", migrated_db.dsn, "watch"], env)
    try:
        at = term.wait_for("1,323")  # the row, fetched before the first change
        term.wait_for("● connected")
        with migrated_db.connect() as conn:
            bump(conn)
        at = term.wait_for("1,324", at)  # the runbook's "Counter updated via Realtime: 1324"
        term.wait_for("╯", at)
        screen = term.frame(at)
        assert re.search(r"stories +1,324 +\+1 ", screen), screen  # total, since start
        assert re.search(r"audio generations +77 +\+0 ", screen), screen
        assert "● connected" in screen and "latency" in screen and "ms" in screen
        term.wait_for("1 seen", at)
        time.sleep(0.3)  # a second frame, drawn in place
        term.press(b"\x03")  # Ctrl-C, through the terminal
        end = term.wait_for("changes seen")
    finally:
        code = term.close()
    assert code == 0
    summary = term.text[end:]
    assert "Ctrl-C, after" in term.text[end - 400:] and "1,324 (+1 since start)" in summary
    assert "Traceback" not in term.text


# -- the parts, without a server -----------------------------------------------------


def test_latency_percentiles_are_within_one_percent():
    stats = watch.LatencyStats()
    for v in range(1, 1001):  # 0.1 .. 100.0 ms
        stats.add(v / 10)
    assert stats.percentile(50) == pytest.approx(50.0, rel=0.01)
    assert stats.percentile(99) == pytest.approx(99.0, rel=0.01)
    assert stats.percentile(100) == stats.max == 100.0
    stats.add(-3.0)  # a remote server's clock ahead of ours
    assert stats.min == -3.0 and stats.percentile(0.01) == -3.0


def test_a_change_is_the_row_and_its_delay():
    row = watch.Row(5, 2, datetime.fromisoformat("2025-01-02T03:04:05.000+02:00"))
    ch = watch.change(row, row.updated_at.timestamp() + 0.0125)
    assert (ch.total_stories, ch.total_audio_generations, ch.row) == (5, 2, row)
    assert ch.latency_ms == pytest.approx(12.5, abs=0.001)  # float epoch seconds
    assert watch.change(watch.Row(1, 0, None), 1.0).latency_ms is None


def test_sparkline_and_windows():
    assert sparkline([0, 1, 2, 4, 8]) == "·▁▂▄█"
    assert sparkline([0, 0]) == "··"
    w = watch.Window(60.0, 1800.0)
    w.add(0.0, 3)
    w.add(59.0, 1)
    w.add(61.0, 2)
    series = w.series(125.0)
    assert len(series) == 30 and series[-3:] == [4, 2, 0]
    assert w.series(60.0 * 40) == [0] * 30  # gone after 30 minutes


def _change(n: int) -> watch.Change:
    return watch.change(watch.Row(n, 0, None), 0.0)


def test_now_never_exceeds_the_peak():
    """Ten changes in the first ten seconds used to read "now 60/min" beside
    "peak 10/min" (a 5-minute average extrapolated, against a partial calendar
    minute). Both come from one series now; the same at any instant."""
    clock = [1000.0]
    stats = watch.WatchStats(mono=lambda: clock[0])
    stats.apply(watch.Snapshot(watch.Row(0, 0, None), 0.0, False, False))
    for n in range(1, 11):
        clock[0] += 1.0
        stats.apply(_change(n))
    v = stats.view()
    assert v.changes_last_min == 10 and max(v.spark) == 10
    import random

    rnd = random.Random(7)
    for n in range(11, 3000):
        clock[0] += rnd.choice((0.01, 0.5, 3.0, 59.9, 61.0, 400.0))
        stats.apply(_change(n))
        clock[0] += rnd.random() * 90
        v = stats.view()
        assert v.changes_last_min <= max(v.spark), (n, v.changes_last_min, v.spark)
        assert v.changes_last_min == v.spark[-1]


def test_live_view_redraws_cleanly_at_80x24(migrated_db, tmp_path):
    """The frames, as a VT100 (pyte) shows them on an 80x24 terminal: one
    panel, its borders square (no line wider than the screen, which would wrap
    and leave the old frame's lines behind), every field whole, now <= peak."""
    pyte = pytest.importorskip("pyte")
    env = clean_env(tmp_path, TERM="xterm-256color")
    env.pop("COLUMNS", None)
    env.pop("NO_COLOR", None)
    term = Terminal([sys.executable, "-m", "genisss_cli", "-d", migrated_db.dsn, "watch"], env,
                    rows=24, cols=80)
    try:
        term.wait_for("● connected")
        with migrated_db.connect() as conn:
            bump(conn, "story", 25)  # in about a second: "now" used to read far above the peak
        at = term.wait_for("+25 ")  # since start: a burst shows as fewer changes, never fewer stories
        term.wait_for("╯", at)
        time.sleep(0.5)  # a few more frames, drawn in place
        screen = pyte.Screen(80, 24)
        pyte.ByteStream(screen).feed(term.raw)
        lines = [line.rstrip() for line in screen.display]
    finally:
        term.press(b"\x03")
        code = term.close()
    assert code == 0
    panel = [line for line in lines if line.strip()]
    text = "\n".join(panel)
    assert text.count("╭") == 1 and text.count("╰") == 1, text  # one frame, not frames stacked
    top = next(i for i, line in enumerate(panel) if "╭" in line)
    bottom = next(i for i, line in enumerate(panel) if "╰" in line)
    width = len(panel[top])
    assert width <= 80
    for line in panel[top:bottom + 1]:
        assert len(line) == width and line[-1] in "╮│╯", text
    for field in ("stories", "audio generations", "● connected", "latency", "changes/min", "+25",
                  "Ctrl-C to stop"):
        assert field in text, text
    # A value wider than its column folds onto the next line, never cut: the
    # database's name is whole once the panel's lines are joined (a long socket
    # path, as in CI's basetemp, folds it).
    assert migrated_db.name in "".join(line.strip("│ ") for line in panel), text
    seen = int(re.search(r"(\d+) seen", text).group(1))
    found = re.search(r"peak (\d+)/min, now (\d+)/min", " ".join(text.replace("│", " ").split()))
    assert found, text
    peak, now = found.groups()
    assert int(now) <= int(peak) and int(now) == seen, text


def test_the_gone_view_shows_what_broke_and_its_fix_at_80_columns():
    """The live view of a broken counter (the feed's part is tested through the
    CLI in test_states.py), drawn by Rich at 80 columns."""
    import io

    from rich.console import Console

    from genisss_cli.render.watch import watch_panel

    stats = watch.WatchStats("127.0.0.1:5432/db")
    stats.apply(watch.Snapshot(watch.Row(5, 1, None), 0.0, False, False))
    fix = fixes.disabled_trigger("global_stats_notify")
    stats.apply(watch.ConnectionState("gone", error="the NOTIFY trigger global_stats_notify is disabled",
                                      fix=fix, at=stats.mono()))
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(watch_panel(stats.view()))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    flat = " ".join(text.replace("│", " ").split())
    assert "✗ connected, but the NOTIFY trigger global_stats_notify is disabled" in flat, text
    assert f"fix {fix}" in flat and "waiting for it to come back (--exit-on-gone: exit 5)" in flat, text
