"""The view of `genisss metrics`: the Prometheus text format (0.0.4), or JSON.

The Prometheus text format, not OpenMetrics: node_exporter's textfile
collector, the reader this output is for, parses the Prometheus text format,
and so does a Pushgateway; OpenMetrics' `info` type and `# EOF` line would
be a parse error or noise there. The info metric is therefore a gauge named
*_info with the value 1 (Prometheus's convention). The counter's totals are
gauges, not counters: `genisss sync` can move total_stories down, which a
Prometheus counter would read as a reset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genisss_cli.core import metrics
from genisss_cli.render.out import emit_json, write
from genisss_cli.render.registry import json_view, text_view

PREFIX = "genisss_"


@dataclass
class Family:
    name: str  # without PREFIX
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)
    type: str = "gauge"


def _check_rows(m: metrics.Metrics) -> list:
    """One row a check name (the worst status wins if a name came twice);
    skipped rows say nothing about the database, so they are left out."""
    rank = {"pass": 0, "warn": 1, "fail": 2}
    worst: dict[str, str] = {}
    for r in m.checks:
        if r.status in rank and rank[r.status] >= rank.get(worst.get(r.name, "pass"), 0):
            worst[r.name] = r.status
    return list(worst.items())


def families(m: metrics.Metrics) -> list[Family]:
    """Every metric of one reading; a value that could not be read is left out."""
    out = [
        Family("up", "1 when genisss read the counter, 0 when it could not (genisss_exit_code says why)",
               [({}, int(m.up))]),
        Family("exit_code", "The exit code of this genisss metrics run: 0, 4 cannot connect, "
               "5 not migrated, 6 permission denied (README, exit codes)", [({}, m.exit_code)]),
    ]

    def one(name: str, help_text: str, value) -> None:
        if value is not None:
            out.append(Family(name, help_text, [({}, value)]))

    one("stories", "total_stories of public.global_stats (a gauge: genisss sync can lower it)", m.stories)
    one("audio_generations", "total_audio_generations of public.global_stats", m.audio_generations)
    one("drift", "total_stories minus COUNT(*) of public.user_stories (fix: genisss sync)", m.drift)
    one("seconds_since_update", "Seconds since global_stats.updated_at (any write: story, audio, sync), "
        "by the server's clock", m.seconds_since_update)
    one("seconds_since_last_story", "Seconds since global_stats.last_story_at, by the server's clock "
        "(absent until the first story)", m.seconds_since_last_story)
    one("notify_queue_usage_ratio", "pg_notification_queue_usage(): the share of the NOTIFY queue in "
        "use, 0 to 1", m.notify_queue_usage)
    if m.up or m.revision is not None:
        out.append(Family("schema_info", "The database's migration revision (empty: none recorded) "
                          "and this genisss's head", [({"revision": m.revision or "", "head": m.head}, 1)]))
    rows = _check_rows(m)
    if rows:
        out.append(Family("check_ok", "1 when the `genisss check` row passes or warns, 0 when it fails",
                          [({"check": name}, int(status != "fail")) for name, status in rows]))
        out.append(Family("check_warning", "1 when the `genisss check` row warns",
                          [({"check": name}, int(status == "warn")) for name, status in rows]))
    return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value) -> str:
    if isinstance(value, bool | int):
        return str(int(value))
    return repr(float(value))


def exposition(m: metrics.Metrics) -> str:
    """The Prometheus text format, ending in a newline."""
    lines = []
    for f in families(m):
        name = PREFIX + f.name
        lines.append(f"# HELP {name} {f.help.replace(chr(92), chr(92) * 2)}")
        lines.append(f"# TYPE {name} {f.type}")
        for labels, value in f.samples:
            inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


@text_view(metrics.Metrics)
def metrics_text(env, m) -> None:
    write(env, exposition(m))


@json_view(metrics.Metrics)
def metrics_json(env, m) -> None:
    """The same values: the reading's fields, the checks as name -> ok and status."""
    emit_json(env, {
        "database": m.database, "up": m.up, "exit_code": m.exit_code, "error": m.error,
        "stories": m.stories, "audio_generations": m.audio_generations, "drift": m.drift,
        "seconds_since_update": m.seconds_since_update,
        "seconds_since_last_story": m.seconds_since_last_story,
        "notify_queue_usage": m.notify_queue_usage, "revision": m.revision, "head": m.head,
        "checks": {name: {"ok": status != "fail", "warning": status == "warn", "status": status}
                   for name, status in _check_rows(m)},
    })
