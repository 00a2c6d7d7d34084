"""The view of `genisss check`: one table, a row a check, with its fix."""

from __future__ import annotations

from genisss_cli.core import checks
from genisss_cli.render.out import emit_json
from genisss_cli.render.redact import mask_text
from genisss_cli.render.registry import json_view, text_view

_CHECK_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def _counts(results) -> dict[str, int]:
    return {s: sum(r.status == s for r in results) for s in _CHECK_STYLE}


@json_view(checks.CheckReport)
def report_json(env, report) -> None:
    emit_json(env, {"database": report.database, "checks": report.results,
                    "summary": _counts(report.results)})


# Below this width a four-column table would fold the fixes' identifiers (a
# trigger's WHEN clause is one 58-character word): each check is a block.
WIDE = 120


def _as_table(env, title: str, results) -> None:
    from rich.markup import escape  # Rich only for output that draws it
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_lines=True)
    for col in ("check", "status", "found", "fix"):
        t.add_column(col, overflow="fold")
    for r in results:
        style = _CHECK_STYLE.get(r.status, "")
        t.add_row(escape(r.name), f"[{style}]{r.status}[/]", escape(mask_text(r.detail)),
                  escape(mask_text(r.fix or "")))
    env.console.print(t)


def _as_blocks(env, title: str, results) -> None:
    """A check a block: its name and status, then what it found and its fix,
    indented and wrapped between words, so that no identifier is cut."""
    from rich.padding import Padding  # Rich only for output that draws it
    from rich.text import Text

    console = env.console
    console.print(Text.from_markup(title, style="bold"))
    for r in results:
        console.print(Text.assemble((f"{r.status:<8}", _CHECK_STYLE.get(r.status, "")), (r.name, "bold")))
        console.print(Padding(Text(mask_text(r.detail)), (0, 0, 0, 8)))
        if r.fix:
            console.print(Padding(Text("fix: ", style="bold") + Text(mask_text(r.fix)), (0, 0, 0, 8)))


@text_view(checks.CheckReport)
def report_text(env, report) -> None:
    from rich.markup import escape  # Rich only for output that draws it

    results, counts = report.results, _counts(report.results)
    title = f"genisss check: {escape(mask_text(report.database))}"
    if env.console.width >= WIDE:
        _as_table(env, title, results)
    else:
        _as_blocks(env, title, results)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if counts["fail"]:
        summary += " - run each fix as the table's owner (SQL) or in a shell (genisss/psql commands)"
    from rich.text import Text

    env.console.print(Text(mask_text(summary)))  # wrapped between words, as the blocks are
