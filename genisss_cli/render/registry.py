"""Which view shows which result: one dispatch on the result's type.

A view module registers a text view (Rich) for each result type it knows,
and a JSON view where the JSON is more than the dataclass's fields.
"""

from __future__ import annotations

from collections.abc import Callable

TEXT: dict[type, Callable] = {}
JSON: dict[type, Callable] = {}


def text_view(kind: type):
    def register(fn):
        TEXT[kind] = fn
        return fn

    return register


def json_view(kind: type):
    def register(fn):
        JSON[kind] = fn
        return fn

    return register


def lookup(table: dict[type, Callable], kind: type) -> Callable | None:
    for cls in kind.__mro__:  # a subclass shows as its parent unless it has its own view
        if cls in table:
            return table[cls]
    return None
