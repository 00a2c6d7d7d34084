"""Everything genisss prints: Rich tables for people, JSON for programs.

The core modules return dataclasses; the functions here turn them into output.
Rich is imported on first use, so `--json` paths and errors stay light.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from datetime import date, datetime
from decimal import Decimal

from genisss_cli.conn import config

_consoles: dict[str, object] = {}


def console(stderr: bool = False):
    key = "err" if stderr else "out"
    if key not in _consoles:
        from rich.console import Console

        # emoji=False: no :code: in our text, and it spares importing 4,000 emoji names
        _consoles[key] = Console(stderr=stderr, highlight=False, emoji=False)
    return _consoles[key]


def redact(text: str) -> str:
    for secret in sorted(config.SECRETS, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    # And any password in a URL or key=value DSN that genisss never parsed, e.g.
    # one typed where another value belongs and echoed back by a usage error.
    text = _URL_PASSWORD.sub(_mask, text)
    return _WORD_PASSWORD.sub(_mask, text)


_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)([^\s'\"]+)(@)")
_WORD_PASSWORD = re.compile(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s'\"]+)()")
_PLACEHOLDERS = {"password", "pass", "***"}  # in hints: postgresql://user:password@host/db


def _mask(m: re.Match) -> str:
    return m.group(0) if m.group(2) in _PLACEHOLDERS else f"{m.group(1)}***{m.group(3)}"


def error(exc) -> None:
    """One line on stderr: what went wrong and what to do."""
    line = f"genisss: error: {exc.message}"
    if exc.hint:
        line += f" ({exc.hint})"
    sys.stderr.write(redact(" ".join(line.split())) + "\n")
    sys.stderr.flush()


def warn(message: str) -> None:
    sys.stderr.write(redact(f"genisss: {message}") + "\n")


def _default(obj):
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    if isinstance(obj, set | tuple):
        return list(obj)
    return str(obj)


def emit_json(obj) -> None:
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    sys.stdout.write(redact(json.dumps(obj, default=_default)) + "\n")
    sys.stdout.flush()


def print_line(text: str, stderr: bool = False) -> None:
    console(stderr).print(redact(text), soft_wrap=True)


def table(title: str | None, columns: list[str], rows: list[list], caption: str | None = None):
    from rich.table import Table

    t = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*(redact("" if v is None else str(v)) for v in row))
    console().print(t)


def key_values(title: str | None, pairs: list[tuple[str, object]]) -> None:
    from rich.table import Table

    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for key, value in pairs:
        t.add_row(key, redact("" if value is None else str(value)))
    console().print(t)


# -- migrate ------------------------------------------------------------------------


def migrate_result(result, as_json: bool, verb: str) -> None:
    if as_json:
        emit_json({**dataclasses.asdict(result), "changed": result.changed})
        return
    for note in result.notices:
        print_line(f"[yellow]skipped:[/] {note}")
    if not result.changed:
        print_line(f"{result.database}: already at {result.after or 'base'}, nothing to do")
        return
    steps = ", ".join(result.applied) or "-"
    print_line(
        f"{result.database}: {verb} {result.before or 'base'} -> {result.after or 'base'} "
        f"[dim](ran: {steps})[/]"
    )


def migrate_status(st, as_json: bool) -> None:
    if as_json:
        emit_json({**dataclasses.asdict(st), "up_to_date": st.up_to_date})
        return
    state = "[green]up to date[/]" if st.up_to_date else f"[yellow]{len(st.pending)} pending[/]"
    key_values("Migration status", [
        ("database", st.database),
        ("current", st.current or "none (never migrated by genisss)"),
        ("head", st.head),
        ("pending", ", ".join(st.pending) or "-"),
        ("state", state),
    ])
    if st.adoptable:
        print_line("global_stats exists without a recorded revision (033 applied by hand): "
                   "`genisss migrate up` adopts it and keeps the counter")
    elif not st.up_to_date:
        print_line("run: genisss migrate up")


def history(revs, current: str | None, as_json: bool) -> None:
    if as_json:
        emit_json([{**dataclasses.asdict(r), "current": r.revision == current} for r in revs])
        return
    rows = [[r.revision, r.down_revision or "base", r.doc, "*" if r.revision == current else ""]
            for r in revs]
    table("Migrations (oldest first)", ["revision", "revises", "what", "current"], rows)


def downgrade_plan(plan) -> None:
    pairs = [
        ("database", plan.database),
        ("from", plan.current or "base"),
        ("to", plan.target or "base"),
        ("reverts", ", ".join(plan.reverts) or "-"),
    ]
    for item in plan.drops:
        pairs.append(("drops", item))
    if plan.counters:
        for name, value in plan.counters.items():
            pairs.append(("loses", f"{name} = {value}"))
    pairs.append(("keeps", "user_stories and its rows"))
    key_values("migrate down", pairs)


# -- db -------------------------------------------------------------------------------


def db_url(database, as_json: bool) -> None:
    if as_json:
        emit_json({"url": database.display, "source": database.source, "embedded": database.embedded,
                   "transaction_pooler": database.transaction_pooler})
        return
    sys.stdout.write(redact(database.display) + "\n")


def embedded_status(st, as_json: bool) -> None:
    if as_json:
        emit_json(st)
        return
    key_values("Embedded PostgreSQL", [
        ("state", "[green]running[/]" if st.running else "[yellow]stopped[/]"),
        ("data", st.pgdata),
        ("version", st.major_version),
        ("pid", st.pid),
        ("url", st.dsn),
    ])


# -- counters (status, bump, drift, sync) -----------------------------------------------


def interactive() -> bool:
    """Progress bars and spinners only for a person at a terminal, never when piped."""
    return sys.stdout.isatty() and sys.stderr.isatty()


def _ago(seconds: float) -> str:
    s = int(seconds)
    if s < 5:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if s >= size:
            n = s // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def _when(ts, now) -> str:
    if ts is None:
        return "never"
    return f"{ts.astimezone():%Y-%m-%d %H:%M:%S %Z} ({_ago((now - ts).total_seconds())})"


def counter_status(st, as_json: bool) -> None:
    if as_json:
        emit_json(st)
        return
    from datetime import timedelta

    now = st.updated_at + timedelta(seconds=st.updated_ago_seconds)  # the server's clock
    if st.up_to_date:
        revision = f"[green]{st.revision}[/] (head)"
    elif st.revision is None:
        revision = "[yellow]none recorded[/] (033 applied by hand: `genisss migrate up` adopts it)"
    else:
        revision = f"[yellow]{st.revision}[/], head is {st.head} (run: genisss migrate up)"
    if st.in_publication:
        publication = f"[green]in {st.publication}[/]"
    elif st.publication_exists:
        publication = f"[yellow]not in {st.publication}[/]: browsers get no live updates"
    else:
        publication = f"[yellow]no publication {st.publication}[/] (plain PostgreSQL; Supabase has it)"
    key_values("Story counter", [
        ("total_stories", f"[bold]{st.total_stories}[/]"),
        ("total_audio_generations", st.total_audio_generations),
        ("last_story_at", _when(st.last_story_at, now)),
        ("last_audio_at", _when(st.last_audio_at, now)),
        ("updated_at", _when(st.updated_at, now)),
        ("database", f"{st.database} (PostgreSQL {st.server_version})"),
        ("migration", revision),
        ("realtime", publication),
    ])


class _BumpBar:
    def __init__(self, total: int, kind: str):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn(f"bump {kind}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console(stderr=True), auto_refresh=False, transient=True,
        )
        self.task = self.progress.add_task("bump", total=total, rate="")
        self.started = None

    def __call__(self, done: int) -> None:
        import time

        now = time.monotonic()
        if self.started is None:
            self.started = now
        elapsed = now - self.started
        rate = f"{done / elapsed:,.0f}/s" if elapsed > 0.2 else ""
        self.progress.update(self.task, completed=done, rate=rate)
        self.progress.refresh()


def bump_progress(total: int, kind: str, enabled: bool):
    """A context manager giving a progress callback (None when there is no bar)."""
    from contextlib import contextmanager

    @contextmanager
    def bar():
        if not enabled or total < 100:
            yield None
            return
        b = _BumpBar(total, kind)
        with b.progress:
            b(0)
            yield b

    return bar()


def bump_result(res, as_json: bool) -> None:
    totals = res.totals
    if as_json:
        emit_json({
            "kind": res.kind, "requested": res.requested, "bumped": res.bumped, "value": res.value,
            "total_stories": totals.total_stories if totals else None,
            "total_audio_generations": totals.total_audio_generations if totals else None,
            "seconds": round(res.seconds, 6), "rate": round(res.rate, 1),
            "interrupted": res.interrupted, "in_flight_unknown": res.in_flight_unknown,
        })
    else:
        column = "total_stories" if res.kind == "story" else "total_audio_generations"
        value = res.value if res.value is not None else getattr(totals, column, None)
        line = f"{column} = [bold]{value}[/]"
        if res.requested > 1:
            line += (f" after {res.bumped} bump{'s' if res.bumped != 1 else ''} in {res.seconds:.2f} s"
                     f" ({res.rate:,.0f}/s)")
        print_line(line)
    if res.interrupted:
        warn(f"interrupted after {res.bumped} of {res.requested} bumps"
             + ("; the one in flight may or may not have counted" if res.in_flight_unknown else ""))


def spinner_after(text: str, enabled: bool, delay: float = 0.5):
    """A spinner on stderr that appears only if the block lasts more than `delay` seconds."""
    from contextlib import contextmanager

    @contextmanager
    def spin():
        if not enabled:
            yield
            return
        import threading

        lock = threading.Lock()
        state = {"status": None, "done": False}

        def start():
            with lock:
                if not state["done"]:
                    state["status"] = console(stderr=True).status(text)
                    state["status"].start()

        timer = threading.Timer(delay, start)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            with lock:
                state["done"] = True
                if state["status"] is not None:
                    state["status"].stop()

    return spin()


def drift_report(report, as_json: bool) -> None:
    if as_json:
        emit_json({
            "counters": [dataclasses.asdict(r) for r in report.rows],
            "tolerance": report.tolerance, "estimated": report.estimated, "ok": report.ok,
            "notes": report.notes,
        })
        return
    rows = []
    for r in report.rows:
        actual = f"~{r.actual}" if r.estimated else str(r.actual)
        style = "green" if r.drift == 0 else ("yellow" if abs(r.drift) <= report.tolerance else "red")
        rows.append([r.name, r.table, r.counter, actual, f"[{style}]{r.drift:+d}[/]"])
    caption = None
    if report.estimated:
        caption = "~ : an estimate (pg_class.reltuples, as of the last ANALYZE), not a count"
    table("Drift = counter - actual", ["name", "counts rows of", "counter", "actual", "drift"], rows,
          caption)
    for note in report.notes:
        print_line(f"[dim]note:[/] {note}")
    if report.ok:
        within = f" (within tolerance {report.tolerance})" if any(r.drift for r in report.rows) else ""
        print_line(f"[green]no drift[/]{within}")
    else:
        bad = [r for r in report.rows if abs(r.drift) > report.tolerance]
        fix = "; run: genisss sync" if any(r.name == "stories" for r in bad) else ""
        print_line(f"[red]drift[/] in {', '.join(r.name for r in bad)}{fix}")


def sync_result(res, as_json: bool) -> None:
    if as_json:
        emit_json({**dataclasses.asdict(res), "changed": res.changed})
        return
    if res.skipped:
        print_line(f"no drift (total_stories = {res.old_count}); nothing to do")
        return
    table("sync_story_counter()", ["old_count", "new_count", "difference"],
          [[res.old_count, res.new_count, f"{res.difference:+d}"]])
    if res.dry_run:
        print_line("dry run: nothing changed" + ("; run: genisss sync" if res.difference else ""))


# -- watch ------------------------------------------------------------------------------

_SPARK_BARS = "▁▂▃▄▅▆▇█"
_SPARK_ZERO = "·"


def sparkline(values) -> str:
    """One character a value: · for none, then eight heights scaled to the largest."""
    top = max(values, default=0)
    out = []
    for v in values:
        if v <= 0 or top <= 0:
            out.append(_SPARK_ZERO)
        else:
            out.append(_SPARK_BARS[min(7, max(0, -(-v * 8 // top) - 1))])
    return "".join(out)


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) < 10:
        return f"{v:.2f} ms"
    if abs(v) < 1000:
        return f"{v:.1f} ms"
    return f"{v / 1000:.2f} s"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S.%f")[:-3]


def _count(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def watch_panel(v):
    """The live view of one WatchView (genisss_cli.watch): a Rich renderable."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    window = "5 min" if v.rate_window_s >= 299 else f"{int(v.rate_window_s)} s"
    counters = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    counters.add_column("")
    counters.add_column("total", justify="right")
    counters.add_column("since start", justify="right")
    counters.add_column(f"per min ({window})", justify="right")
    counters.add_row("stories", _count(v.total_stories), f"{v.delta_stories:+,}",
                     f"{v.stories_per_min:,.1f}")
    counters.add_row("audio generations", _count(v.total_audio_generations),
                     f"{v.delta_audio_generations:+,}", f"{v.audio_per_min:,.1f}")

    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    if v.state == "connected":
        state = Text("● connected", style="green")
    elif v.state == "reconnecting":
        when = "trying now" if not v.retry_in else f"next try in {v.retry_in:.1f} s"
        state = Text(f"↻ reconnecting (attempt {v.attempt}, {when})", style="yellow")
        if v.error:
            state.append(f": {redact(v.error)}", style="dim")
    else:
        state = Text(f"… {v.state}", style="yellow")
    info.add_row("connection", state)
    if v.last_change_at is None:
        last = "none yet"
    else:
        last = f"{_clock(v.last_change_at)} ({_duration(v.since_last_change_s or 0)} ago)"
    info.add_row("last change", last)
    info.add_row("latency", f"last {_ms(v.latency_last_ms)}   p50 {_ms(v.latency_p50_ms)}   "
                            f"p99 {_ms(v.latency_p99_ms)}   max {_ms(v.latency_max_ms)}")
    peak = max(v.spark, default=0)
    spark = Text(sparkline(v.spark), style="cyan")
    spark.append(f"  last {v.spark_minutes} min, peak {peak:,}/min, now {v.changes_per_min:,.1f}/min",
                 style="dim")
    info.add_row("changes/min", spark)
    seen = f"{v.changes:,} seen, {v.reconnects} reconnect{'s' if v.reconnects != 1 else ''}"
    if v.resyncs:
        seen += f", {v.resyncs} jump{'s' if v.resyncs != 1 else ''} after reconnecting"
    info.add_row("changes", seen)
    return Panel(Group(counters, Text(""), info), title=f"genisss watch · {redact(v.where)}",
                 title_align="left", subtitle=f"watching {_duration(v.watching_s)} · Ctrl-C to stop",
                 subtitle_align="right", expand=False)


class WatchLive:
    """The live view: Rich Live redraws it at most `fps` times a second from its
    own thread, each time from the newest state; the LISTEN loop never waits
    for the screen."""

    def __init__(self, stats, fps: float = 10):
        self.stats = stats
        self.fps = fps
        self._live = None

    def __rich__(self):
        with self.stats.lock:
            v = self.stats.view()
        return watch_panel(v)

    def __enter__(self):
        from rich.live import Live

        self._live = Live(self, console=console(), refresh_per_second=self.fps, transient=True,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        self._live.stop()

    def event(self, ev) -> None:
        pass  # the refresh thread reads the stats


def _utc(epoch: float) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _iso(value) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        from datetime import UTC

        value = value.astimezone(UTC)
    return value.isoformat()


class WatchJson:
    """--json: one object a line on stdout for every change, flushed per line;
    the connection's story goes to stderr, so stdout stays pure JSON lines."""

    def __init__(self, where: str):
        self.where = where

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _line(self, stories, audio, updated_at, received_at, latency_ms, resync: bool) -> None:
        try:
            sys.stdout.write(json.dumps({
                "total_stories": stories,
                "total_audio_generations": audio,
                "updated_at": _iso(updated_at),
                "received_at": _utc(received_at),
                "latency_ms": None if latency_ms is None else round(latency_ms, 3),
                "resync": resync,
            }) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader is gone (| head): no more output, and no complaint at exit.
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise

    def event(self, ev) -> None:
        from genisss_cli.core import watch

        if isinstance(ev, watch.Change):
            self._line(ev.total_stories, ev.total_audio_generations, ev.updated_at, ev.received_at,
                       ev.latency_ms, False)
        elif isinstance(ev, watch.Snapshot):
            r = ev.row
            totals = (f"total_stories {r.total_stories:,}, "
                      f"total_audio_generations {r.total_audio_generations:,}")
            if not ev.reconnect:
                warn(f"watching {watch.CHANNEL} at {self.where}: {totals} (Ctrl-C to stop)")
                return
            if ev.changed:  # what changed while away, as one jump
                self._line(r.total_stories, r.total_audio_generations, r.updated_at, ev.fetched_at, None,
                           True)
            warn(f"reconnected to {self.where}: {totals}"
                 + (" (changed while away)" if ev.changed else ""))
        elif isinstance(ev, watch.ConnectionState) and ev.state == "reconnecting":
            warn(f"reconnecting in {ev.retry_in or 0:.1f} s (attempt {ev.attempt}): "
                 f"{ev.error or 'connection lost'}")


_STOP_REASONS = {
    "interrupted": "Ctrl-C",
    "terminated": "SIGTERM",
    "count": "--count reached",
    "timeout": "--timeout: no change",
    "output closed": "output closed",
    "ended": "the feed ended",
}


def watch_summary(s, as_json: bool) -> None:
    """The end of a watch; with --json a JSON object on stderr (stdout carries only changes)."""
    if as_json:
        sys.stderr.write(json.dumps({"summary": dataclasses.asdict(s)}) + "\n")
        sys.stderr.flush()
        return
    key_values("genisss watch", [
        ("stopped", f"{_STOP_REASONS.get(s.reason, s.reason)}, after {_duration(s.watched_s)}"),
        ("changes seen", f"{s.changes:,}"),
        ("stories", f"{_count(s.total_stories)} ({s.delta_stories:+,} since start)"),
        ("audio generations",
         f"{_count(s.total_audio_generations)} ({s.delta_audio_generations:+,} since start)"),
        ("reconnects", f"{s.reconnects}" + (f" ({s.resyncs} with changes while away)" if s.resyncs else "")),
        ("latency",
         f"p50 {_ms(s.latency_p50_ms)}   p99 {_ms(s.latency_p99_ms)}   max {_ms(s.latency_max_ms)}"),
    ])


# -- check ------------------------------------------------------------------------------

_CHECK_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def check_results(database: str, results, as_json: bool) -> None:
    counts = {s: sum(r.status == s for r in results) for s in _CHECK_STYLE}
    if as_json:
        emit_json({"database": database, "checks": results, "summary": counts})
        return
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"genisss check: {escape(redact(database))}", title_justify="left", show_lines=True)
    for col in ("check", "status", "found", "fix"):
        t.add_column(col, overflow="fold")
    for r in results:
        style = _CHECK_STYLE.get(r.status, "")
        t.add_row(escape(r.name), f"[{style}]{r.status}[/]", escape(redact(r.detail)),
                  escape(redact(r.fix or "")))
    console().print(t)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if counts["fail"]:
        summary += " - run each fix as the table's owner (SQL) or in a shell (genisss/psql commands)"
    print_line(escape(summary))
