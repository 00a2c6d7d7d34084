"""Everything genisss shows: show(result, env), Rich for people, JSON for programs.

Commands hand their result (a dataclass from core) to show(); it picks the
view registered for the result's type, text or JSON as the Env says. Errors
take the same path (show_error). Nothing outside this package writes to the
terminal, and a connection string becomes text only through show_url.
"""

from __future__ import annotations

import importlib

from genisss_cli.errors import Exit, GenisssError
from genisss_cli.render.out import emit_json, say
from genisss_cli.render.redact import mask_text, show_url
from genisss_cli.render.registry import JSON, TEXT, lookup

__all__ = ["bump_progress", "confirm", "mask_text", "relay_sink", "say", "show", "show_error",
           "show_url", "spinner_after", "usage_error", "watch_sink"]

# The module a result comes from -> the module of its views, imported on first
# use: an error or a --json line does not pay for the views it does not show.
_VIEWS_OF = {
    "genisss_cli.core.migrate": "genisss_cli.render.migrate",
    "genisss_cli.core.repair": "genisss_cli.render.migrate",
    "genisss_cli.core.capacity": "genisss_cli.render.capacity",
    "genisss_cli.core.broadcast": "genisss_cli.render.broadcast",
    "genisss_cli.core.relay": "genisss_cli.render.broadcast",
    "genisss_cli.core.counters": "genisss_cli.render.counters",
    "genisss_cli.core.checks.model": "genisss_cli.render.check",
    "genisss_cli.core.watch.stats": "genisss_cli.render.watch",
    "genisss_cli.core.metrics": "genisss_cli.render.metrics",
    "genisss_cli.core.demo": "genisss_cli.render.demo",
    "genisss_cli.conn.db": "genisss_cli.render.db",
    "genisss_cli.conn.embedded": "genisss_cli.render.db",
    "genisss_cli.core.info": "genisss_cli.render.db",
    "genisss_cli.core.psql": "genisss_cli.render.db",
}


def show(result, env) -> None:
    """Show one result the way env asks (env.json: JSON, else Rich)."""
    kind = type(result)
    for cls in kind.__mro__:
        if cls.__module__ in _VIEWS_OF:
            importlib.import_module(_VIEWS_OF[cls.__module__])
    view = lookup(JSON, kind) if env.json else None
    if view is None and env.json:
        emit_json(env, result)
        return
    view = view or lookup(TEXT, kind)
    if view is None:
        raise TypeError(f"no view for {kind.__name__}")
    view(env, result)


def show_error(exc: GenisssError, env, traceback: str | None = None) -> None:
    """One line on stderr: what went wrong and what to do (with --json, one JSON
    object: error, exit, hint). traceback is shown first, with --debug."""
    err = env.stderr
    if traceback:
        err.write(mask_text(traceback))
    if env.json:
        emit_json(env, {"error": exc.message, "exit": int(exc.code), "hint": exc.hint}, stderr=True)
        return
    if exc.code == Exit.INTERRUPTED and not exc.hint:
        line = f"genisss: {exc.message}"
    else:
        line = f"genisss: error: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
    err.write(mask_text(" ".join(line.split())) + "\n")
    err.flush()


def usage_error(env, text: str) -> None:
    """A usage error as Typer words it, with our prefix."""
    if env.json:
        emit_json(env, {"error": text, "exit": int(Exit.USAGE), "hint": None}, stderr=True)
        return
    env.stderr.write(mask_text(f"genisss: error: {text}") + "\n")
    env.stderr.flush()


def confirm(env, question: str) -> bool:
    """Ask on the terminal; only a y/yes answer is a yes."""
    env.stderr.write(f"{question} [y/N]: ")
    env.stderr.flush()
    answer = env.stdin.readline()
    if not answer:  # end of input
        env.stderr.write("\n")
        return False
    return answer.strip().lower() in ("y", "yes")


def bump_progress(env, total: int, kind: str):
    from genisss_cli.render import counters

    return counters.bump_progress(env, total, kind)


def spinner_after(env, text: str | None, delay: float = 0.5):
    from genisss_cli.render import counters

    return counters.spinner_after(env, text, delay)


def relay_sink(env):
    from genisss_cli.render import broadcast

    return broadcast.relay_sink(env)


def watch_sink(env, stats, where: str):
    from genisss_cli.render import watch

    return watch.sink(env, stats, where)
