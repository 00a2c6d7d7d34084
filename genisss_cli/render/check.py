"""The view of `genisss check`: one table, a row a check, with its fix."""

from __future__ import annotations

from genisss_cli.core import checks
from genisss_cli.render.out import emit_json, print_line
from genisss_cli.render.redact import mask_text
from genisss_cli.render.registry import json_view, text_view

_CHECK_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def _counts(results) -> dict[str, int]:
    return {s: sum(r.status == s for r in results) for s in _CHECK_STYLE}


@json_view(checks.CheckReport)
def report_json(env, report) -> None:
    emit_json(env, {"database": report.database, "checks": report.results,
                    "summary": _counts(report.results)})


@text_view(checks.CheckReport)
def report_text(env, report) -> None:
    from rich.markup import escape  # Rich only for output that draws it
    from rich.table import Table

    results, counts = report.results, _counts(report.results)
    t = Table(title=f"genisss check: {escape(mask_text(report.database))}", title_justify="left",
              show_lines=True)
    for col in ("check", "status", "found", "fix"):
        t.add_column(col, overflow="fold")
    for r in results:
        style = _CHECK_STYLE.get(r.status, "")
        t.add_row(escape(r.name), f"[{style}]{r.status}[/]", escape(mask_text(r.detail)),
                  escape(mask_text(r.fix or "")))
    env.console.print(t)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if counts["fail"]:
        summary += " - run each fix as the table's owner (SQL) or in a shell (genisss/psql commands)"
    print_line(env, escape(summary))
