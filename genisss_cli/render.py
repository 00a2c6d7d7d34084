"""Everything genisss prints: Rich tables for people, JSON for programs.

The core modules return dataclasses; the functions here turn them into output.
Rich is imported on first use, so `--json` paths and errors stay light.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import date, datetime
from decimal import Decimal

from genisss_cli import config

_consoles: dict[str, object] = {}


def console(stderr: bool = False):
    key = "err" if stderr else "out"
    if key not in _consoles:
        from rich.console import Console

        _consoles[key] = Console(stderr=stderr, highlight=False)
    return _consoles[key]


def redact(text: str) -> str:
    for secret in sorted(config.SECRETS, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


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
