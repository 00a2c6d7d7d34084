"""Views of `genisss watch`: the live panel, the JSON lines, the summary."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from datetime import UTC, datetime

from genisss_cli.core import watch
from genisss_cli.render.out import emit_json, key_values, print_line, say
from genisss_cli.render.redact import mask_text
from genisss_cli.render.registry import json_view, text_view

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
    """The live view of one WatchView (genisss_cli.core.watch): a Rich renderable."""
    from rich.console import Group  # Rich only for the live view
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
            state.append(f": {mask_text(v.error)}", style="dim")
    elif v.state == "gone":
        state = Text(f"✗ connected, but {v.error}", style="red")
    else:
        state = Text(f"… {v.state}", style="yellow")
    info.add_row("database", Text(mask_text(v.where), overflow="fold"))  # a title would be cropped
    info.add_row("connection", state)
    if v.state == "gone":
        info.add_row("fix", Text(v.fix or "", style="bold"))
        info.add_row("", Text("waiting for it to come back (--exit-on-gone: exit 5)", style="dim"))

    if v.last_change_at is None:
        last = "none yet"
    else:
        last = f"{_clock(v.last_change_at)} ({_duration(v.since_last_change_s or 0)} ago)"
    info.add_row("last change", last)
    info.add_row("latency", f"last {_ms(v.latency_last_ms)}   p50 {_ms(v.latency_p50_ms)}   "
                            f"p99 {_ms(v.latency_p99_ms)}   max {_ms(v.latency_max_ms)}")
    peak = max(v.spark, default=0)
    spark = Text(sparkline(v.spark), style="cyan")
    spark.append(f"  last {v.spark_minutes} min, peak {peak:,}/min, now {v.changes_last_min:,}/min",
                 style="dim")
    info.add_row("changes/min", spark)
    seen = f"{v.changes:,} seen, {v.reconnects} reconnect{'s' if v.reconnects != 1 else ''}"
    if v.resyncs:
        seen += f", {v.resyncs} jump{'s' if v.resyncs != 1 else ''} after reconnecting"
    info.add_row("changes", seen)
    return Panel(Group(counters, Text(""), info), title="genisss watch",
                 title_align="left", subtitle=f"watching {_duration(v.watching_s)} · Ctrl-C to stop",
                 subtitle_align="right", expand=False)


class WatchLive:
    """The live view: Rich Live redraws it at most `fps` times a second from its
    own thread, each time from the newest state; the LISTEN loop never waits
    for the screen."""

    def __init__(self, env, stats, fps: float = 10):
        self.env = env
        self.stats = stats
        self.fps = fps
        self._live = None

    def __rich__(self):
        with self.stats.lock:
            v = self.stats.view()
        return watch_panel(v)

    def __enter__(self):
        from rich.live import Live  # Rich only for the live view

        self._live = Live(self, console=self.env.console, refresh_per_second=self.fps, transient=True,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        self._live.stop()

    def event(self, ev) -> None:
        # The refresh thread reads the stats; a note is printed once, above the
        # view (Live keeps it there), and stays after it.
        if isinstance(ev, watch.Snapshot) and not (ev.reconnect or ev.resumed):
            from rich.markup import escape

            for note in ev.notes:
                print_line(self.env, f"[yellow]note:[/] {escape(note)}")


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _iso(value) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.isoformat()


class WatchJson:
    """--json: one object a line on stdout for every change, flushed per line;
    the connection's story goes to stderr, so stdout stays pure JSON lines."""

    def __init__(self, env, where: str):
        self.env = env
        self.where = where

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _line(self, stories, audio, updated_at, received_at, latency_ms, resync: bool) -> None:
        out = self.env.stdout
        try:
            out.write(json.dumps({
                "total_stories": stories,
                "total_audio_generations": audio,
                "updated_at": _iso(updated_at),
                "received_at": _utc(received_at),
                "latency_ms": None if latency_ms is None else round(latency_ms, 3),
                "resync": resync,
            }) + "\n")
            out.flush()
        except BrokenPipeError:
            # The reader is gone (| head): no more output, and no complaint at exit.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
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
            for note in ev.notes if not (ev.reconnect or ev.resumed) else ():
                say(self.env, f"note: {note}")
            if ev.resumed:
                if ev.changed:
                    self._line(r.total_stories, r.total_audio_generations, r.updated_at, ev.fetched_at,
                               None, True)
                say(self.env, f"global_stats is back at {self.where}: {totals}")
                return
            if not ev.reconnect:
                say(self.env, f"watching {watch.CHANNEL} at {self.where}: {totals} (Ctrl-C to stop)")
                return
            if ev.changed:  # what changed while away, as one jump
                self._line(r.total_stories, r.total_audio_generations, r.updated_at, ev.fetched_at, None,
                           True)
            say(self.env, f"reconnected to {self.where}: {totals}"
                 + (" (changed while away)" if ev.changed else ""))
        elif isinstance(ev, watch.ConnectionState) and ev.state == "gone":
            say(self.env, f"{ev.error} (fix: {ev.fix}); waiting for it to come back")
        elif isinstance(ev, watch.ConnectionState) and ev.state == "reconnecting":
            say(self.env, f"reconnecting in {ev.retry_in or 0:.1f} s (attempt {ev.attempt}): "
                 f"{ev.error or 'connection lost'}")


_STOP_REASONS = {
    "interrupted": "Ctrl-C",
    "terminated": "SIGTERM",
    "count": "--count reached",
    "timeout": "--timeout: no change",
    "output closed": "output closed",
    "ended": "the feed ended",
    "gone": "the counter is gone (--exit-on-gone)",
}


@json_view(watch.WatchSummary)
def summary_json(env, s) -> None:
    """The end of a watch, on stderr: stdout carries only changes."""
    emit_json(env, {"summary": dataclasses.asdict(s)}, stderr=True)


@text_view(watch.WatchSummary)
def summary_text(env, s) -> None:
    key_values(env, "genisss watch", [
        ("stopped", f"{_STOP_REASONS.get(s.reason, s.reason)}, after {_duration(s.watched_s)}"),
        ("changes seen", f"{s.changes:,}"),
        ("stories", f"{_count(s.total_stories)} ({s.delta_stories:+,} since start)"),
        ("audio generations",
         f"{_count(s.total_audio_generations)} ({s.delta_audio_generations:+,} since start)"),
        ("reconnects", f"{s.reconnects}" + (f" ({s.resyncs} with changes while away)" if s.resyncs else "")),
        ("latency",
         f"p50 {_ms(s.latency_p50_ms)}   p99 {_ms(s.latency_p99_ms)}   max {_ms(s.latency_max_ms)}"),
    ])




def sink(env, stats, where: str):
    """Where watch's events go: JSON lines with --json, else the live view."""
    return WatchJson(env, where) if env.json else WatchLive(env, stats)
