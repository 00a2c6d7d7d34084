"""The view of `genisss demo`: watch's live view with the worker's line under
it, then watch's summary and what became of the demo database."""

from __future__ import annotations

import dataclasses

from genisss_cli.core import demo
from genisss_cli.render.out import emit_json, print_line
from genisss_cli.render.registry import json_view, text_view
from genisss_cli.render.watch import WatchLive, summary_text, watch_panel


class DemoLive(WatchLive):
    """watch's live view, and under it what the worker has done."""

    def __init__(self, env, stats, worker):
        super().__init__(env, stats)
        self.worker = worker

    def __rich__(self):
        from rich.console import Group  # Rich only for the live view
        from rich.text import Text

        with self.stats.lock:
            v = self.stats.view()
        w = self.worker
        line = Text(f"demo worker: {_n(w.stories, 'story', 'stories')} and "
                    f"{_n(w.audio, 'audio generation', 'audio generations')} made, "
                    f"{1 / w.interval:g} stories a second", style="dim")
        return Group(watch_panel(v), line)


def sink(env, stats, where: str, worker):
    """JSON lines with --json (watch's own), else the live view with the worker's line."""
    if env.json:
        from genisss_cli.render.watch import sink as watch_sink

        return watch_sink(env, stats, where)
    return DemoLive(env, stats, worker)


@json_view(demo.DemoResult)
def demo_json(env, res) -> None:
    """On stderr, as watch's summary: stdout carries only the changes."""
    emit_json(env, {"demo": dataclasses.asdict(res)}, stderr=True)


@text_view(demo.DemoResult)
def demo_text(env, res) -> None:
    if res.summary is not None:
        summary_text(env, res.summary)
    for old in res.leftovers:
        print_line(env, f"dropped {old}, left by a demo that was killed")
    print_line(env, f"demo: stopped ({res.stopped}); the worker made {_n(res.stories, 'story', 'stories')} "
               f"and {_n(res.audio, 'audio generation', 'audio generations')}; dropped the database "
               f"{res.database}. Your own databases were not touched.")


def _n(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"
