"""Small results of commands that have no core of their own."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Version:
    version: str


@dataclass(frozen=True)
class Revealed:
    """`db url --reveal`: the URL in use, password and all, because the operator asked."""

    database: object  # conn.db.Database


@dataclass(frozen=True)
class Stopped:
    """`genisss db stop`: whether it was running, and is now."""

    stopped: bool
    running: bool
    pgdata: str


@dataclass(frozen=True)
class Declined:
    """The operator answered no at a confirmation: nothing changed."""

    question: str
