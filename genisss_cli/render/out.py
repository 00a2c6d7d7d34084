"""The primitives every view writes with: a line, a table, key-value pairs, JSON.

Each takes the Env, whose streams and consoles are the only ones written to.
Everything is passed through mask_text on its way out: a value genisss was
given (a server's message, a name the user typed) may hold a connection string.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from decimal import Decimal

from genisss_cli.conn.config import Dsn
from genisss_cli.render.redact import mask_text, show_url


def _default(obj):
    if isinstance(obj, Dsn):
        return show_url(obj.value)
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    if isinstance(obj, set | tuple):
        return list(obj)
    return str(obj)


def to_json(obj) -> str:
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    return json.dumps(obj, default=_default)


def emit_json(env, obj, stderr: bool = False) -> None:
    """One JSON document on a line. mask_text touches only a connection
    string's password, never a number or a quote: it always parses."""
    stream = env.stderr if stderr else env.stdout
    stream.write(mask_text(to_json(obj)) + "\n")
    stream.flush()


def write(env, text: str) -> None:
    """Text as it is (SQL, a URL already masked), on stdout."""
    env.stdout.write(text)
    env.stdout.flush()


def print_line(env, text: str, stderr: bool = False) -> None:
    """A line of Rich markup that genisss wrote around values it was given."""
    (env.err_console if stderr else env.console).print(mask_text(text), soft_wrap=True)


def say(env, message: str) -> None:
    """`genisss: message` on stderr, for what is neither output nor an error."""
    env.stderr.write(f"genisss: {mask_text(message)}\n")
    env.stderr.flush()


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Dsn):
        return show_url(value.value)
    return mask_text(str(value))


def table(env, title: str | None, columns: list[str], rows: list[list], caption: str | None = None,
          whole: tuple[str, ...] = (), words: tuple[str, ...] = ()):
    """Cells wrap at spaces and fold a word too long for its column, never cut
    it with an ellipsis; the columns named in whole (identifiers) keep their
    values on one line, those in words (names of a few identifiers) wrap only
    between words, and the others give way."""
    from rich.table import Table  # Rich only for output that draws it

    t = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for i, col in enumerate(columns):
        if col in whole:
            t.add_column(col, no_wrap=True, min_width=max([len(col)] + [len(cell(r[i])) for r in rows]))
        elif col in words:
            t.add_column(col, overflow="fold", min_width=_longest_word(col, i, rows))
        else:
            t.add_column(col, overflow="fold")  # wrapped between words; a word wider than the column folds
    for row in rows:
        t.add_row(*(cell(v) for v in row))
    limits = _limits(env.console.width, columns, rows, whole, words) if words else {}
    for column in t.columns:
        column.max_width = limits.get(column.header, column.max_width)
    env.console.print(t)


def _longest_word(col: str, i: int, rows: list[list]) -> int:
    return max([len(col)] + [len(w) for r in rows for w in cell(r[i]).split()])


def _limits(width: int, columns: list[str], rows: list[list], whole, words) -> dict[str, int]:
    """How wide each column that gives way may grow, so that a words column
    keeps its longest word whole: Rich alone folds that word sooner than it
    narrows another column. What the whole and words columns leave is shared fairly
    (a column narrower than its share keeps its own width); none where too
    little is left to share."""
    room = width - 3 * len(columns) - 1  # borders and padding: 3 a column, and 1
    natural = {}
    for i, col in enumerate(columns):
        longest = max([len(col)] + [len(cell(r[i])) for r in rows])
        if col in whole:
            room -= longest
        elif col in words:
            room -= _longest_word(col, i, rows)
        else:
            natural[col] = longest
    limits: dict[str, int] = {}
    pending = sorted(natural, key=natural.get)
    while pending and room >= 8 * len(pending):
        fair = room // len(pending)
        if natural[pending[0]] > fair:
            limits.update({col: fair for col in pending})
            break
        col = pending.pop(0)
        limits[col] = natural[col]
        room -= natural[col]
    return limits


def key_values(env, title: str | None, pairs: list[tuple[str, object]]) -> None:
    from rich.table import Table  # Rich only for output that draws it

    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold", overflow="fold")  # never an ellipsis: a value too wide folds
    t.add_column(overflow="fold")
    for key, value in pairs:
        t.add_row(key, cell(value))
    env.console.print(t)
