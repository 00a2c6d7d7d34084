"""Views of the counter commands: status, bump, drift, sync; bump's progress bar
and the spinner of a long count."""

from __future__ import annotations

import dataclasses
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

from genisss_cli.core import counters
from genisss_cli.render.out import emit_json, key_values, print_line, say, table
from genisss_cli.render.registry import json_view, text_view


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


@text_view(counters.Status)
def status_text(env, st) -> None:
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
    key_values(env, "Story counter", [
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
    def __init__(self, env, total: int, kind: str):
        from rich.progress import (  # Rich only where a bar is drawn
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
            console=env.err_console, auto_refresh=False, transient=True,
        )
        self.task = self.progress.add_task("bump", total=total, rate="")
        self.started = None

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        elapsed = now - self.started
        rate = f"{done / elapsed:,.0f}/s" if elapsed > 0.2 else ""
        self.progress.update(self.task, completed=done, rate=rate)
        self.progress.refresh()


@contextmanager
def bump_progress(env, total: int, kind: str):
    """A progress callback for bump (None when there is no bar: --json, a pipe, a small count)."""
    if env.json or not env.interactive or total < 100:
        yield None
        return
    b = _BumpBar(env, total, kind)
    with b.progress:
        b(0)
        yield b


@json_view(counters.BumpResult)
def bump_json(env, res) -> None:
    totals = res.totals
    emit_json(env, {
        "kind": res.kind, "requested": res.requested, "bumped": res.bumped, "value": res.value,
        "total_stories": totals.total_stories if totals else None,
        "total_audio_generations": totals.total_audio_generations if totals else None,
        "seconds": round(res.seconds, 6), "rate": round(res.rate, 1),
        "interrupted": res.interrupted, "in_flight_unknown": res.in_flight_unknown,
    })
    _bump_interrupted(env, res)


@text_view(counters.BumpResult)
def bump_text(env, res) -> None:
    totals = res.totals
    column = "total_stories" if res.kind == "story" else "total_audio_generations"
    value = res.value if res.value is not None else getattr(totals, column, None)
    line = f"{column} = [bold]{value}[/]"
    if res.requested > 1:
        line += (f" after {res.bumped} bump{'s' if res.bumped != 1 else ''} in {res.seconds:.2f} s"
                 f" ({res.rate:,.0f}/s)")
    print_line(env, line)
    _bump_interrupted(env, res)


def _bump_interrupted(env, res) -> None:
    if res.interrupted:
        say(env, f"interrupted after {res.bumped} of {res.requested} bumps"
             + ("; the one in flight may or may not have counted" if res.in_flight_unknown else ""))


@contextmanager
def spinner_after(env, text: str | None, delay: float = 0.5):
    """A spinner on stderr that appears only if the block lasts more than `delay`
    seconds (none for --json, a pipe, or no text)."""
    if not text or env.json or not env.interactive:
        yield
        return
    lock = threading.Lock()
    state = {"status": None, "done": False}

    def start():
        with lock:
            if not state["done"]:
                state["status"] = env.err_console.status(text)
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


@json_view(counters.DriftReport)
def drift_json(env, report) -> None:
    emit_json(env, {
        "counters": [dataclasses.asdict(r) for r in report.rows],
        "tolerance": report.tolerance, "estimated": report.estimated, "ok": report.ok,
        "notes": report.notes,
    })


@text_view(counters.DriftReport)
def drift_text(env, report) -> None:
    rows = []
    for r in report.rows:
        actual = f"~{r.actual}" if r.estimated else str(r.actual)
        style = "green" if r.drift == 0 else ("yellow" if abs(r.drift) <= report.tolerance else "red")
        rows.append([r.name, r.table, r.counter, actual, f"[{style}]{r.drift:+d}[/]"])
    caption = None
    if report.estimated:
        caption = "~ : an estimate (pg_class.reltuples, as of the last ANALYZE), not a count"
    table(env, "Drift = counter - actual", ["name", "counts rows of", "counter", "actual", "drift"], rows,
          caption)
    for note in report.notes:
        print_line(env, f"[dim]note:[/] {note}")
    if report.ok:
        within = f" (within tolerance {report.tolerance})" if any(r.drift for r in report.rows) else ""
        print_line(env, f"[green]no drift[/]{within}")
    else:
        bad = [r for r in report.rows if abs(r.drift) > report.tolerance]
        fix = "; run: genisss sync" if any(r.name == "stories" for r in bad) else ""
        print_line(env, f"[red]drift[/] in {', '.join(r.name for r in bad)}{fix}")


@json_view(counters.SyncResult)
def sync_json(env, res) -> None:
    emit_json(env, {**dataclasses.asdict(res), "changed": res.changed})


@text_view(counters.SyncResult)
def sync_text(env, res) -> None:
    if res.skipped:
        print_line(env, f"no drift (total_stories = {res.old_count}); nothing to do")
        return
    table(env, "sync_story_counter()", ["old_count", "new_count", "difference"],
          [[res.old_count, res.new_count, f"{res.difference:+d}"]])
    if res.dry_run:
        print_line(env, "dry run: nothing changed" + ("; run: genisss sync" if res.difference else ""))
