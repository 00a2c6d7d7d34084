"""Every example a --help shows runs as written, against a real server.

The examples are read from the command tree as it is now, so a new command's
example is tried without this file changing. Each runs on its own database
(Supabase shape, a realtime schema, migrated to head): `migrate down --yes`
must not change what `status` sees. A help text is the first thing a new
user copies; `migrate down -1` failed as an unknown option for a whole stop
because no test ran what the help says.
"""

from __future__ import annotations

import shlex

import pytest
from reliability import commands

# Examples that do not end by themselves, or not here, and the test that runs them.
ELSEWHERE = {
    "genisss watch": "runs until Ctrl-C: test_watch.py runs it with --count and signals",
    "genisss relay": "runs until Ctrl-C: test_broadcast_settings.py runs it and ends it with SIGTERM",
    "genisss watch --json --count 10": "waits for 10 changes: test_watch.py runs it beside writers",
    "genisss demo --seconds 30": "30 s on the embedded default: test_demo.py runs it shorter",
}
# Examples run with a shorter duration, and otherwise as written.
SHORTER = {"genisss relay --json --for 60": "genisss relay --json --for 1"}
# The embedded server's own verbs, run on the embedded default (no URL set), in this order.
EMBEDDED = {
    "genisss db start": "started",
    "genisss db status --json": '"running": true',
    "genisss db stop": "stopped",
}


def _help_of(group, path: list[str]) -> str:
    for name in path:
        group = group.commands[name]
    return group.help or ""


def examples() -> list[str]:
    """(every example, in the order the help texts give them)."""
    import typer

    from genisss_cli.cli import app

    root = typer.main.get_command(app)
    found = []
    for command in ["", "migrate", "db", *commands()]:
        text = _help_of(root, command.split())
        for marker in ("Examples: ", "Example: "):
            if marker in text:
                found += [" ".join(e.split()) for e in text.split(marker, 1)[1].split(", ")]
                break
    return list(dict.fromkeys(found))


EXAMPLES = examples()


def test_the_examples_are_read_from_every_help():
    assert len(EXAMPLES) >= len(commands())
    assert "genisss migrate down --yes" in EXAMPLES and "genisss migrate up && genisss check" in EXAMPLES
    # What this file leaves to others, or shortens, is still an example.
    assert set(ELSEWHERE) <= set(EXAMPLES) and set(SHORTER) <= set(EXAMPLES)


def _steps(example: str, root) -> list[tuple[list[str], str | None]]:
    """The example's commands (split on &&), each with the file its stdout is
    redirected to. An absolute path is taken inside `root`."""
    steps = []
    for part in example.split(" && "):
        words = shlex.split(part)
        target = None
        if ">" in words:
            at = words.index(">")
            words, target = words[:at], words[at + 1]
        words = [str(root / w.lstrip("/")) if w.startswith("/") else w for w in words]
        for word in words:
            if word.startswith(str(root)):
                (root / word).parent.mkdir(parents=True, exist_ok=True)
        assert words[0] == "genisss", example
        steps.append((words[1:], target))
    return steps


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e not in EMBEDDED and e not in ELSEWHERE])
def test_every_example_runs_as_written(example, broadcast_db, genisss, tmp_path):
    for args, target in _steps(SHORTER.get(example, example), tmp_path):
        r = genisss(*args, env={"GENISSS_DATABASE_URL": broadcast_db.dsn}, timeout=60)
        assert "Traceback" not in r.output, r.output
        if args[0] == "check" and not broadcast_db.server.wal_logical:
            # The one finding such a server has; everything else passes.
            assert r.code == 1 and " 1 fail," in r.out and "│ wal_level " in r.out, r.output
        else:
            assert r.code == 0, f"{example}: exit {r.code}\n{r.output}"
        if target:
            (tmp_path / target).write_text(r.out)
            assert r.out.strip(), f"{example}: nothing to write to {target}"


def test_the_embedded_server_examples_run_as_written(genisss):
    assert set(EMBEDDED) <= set(EXAMPLES)
    try:
        for example, said in EMBEDDED.items():
            r = genisss(*shlex.split(example)[1:], timeout=60)
            assert r.code == 0 and said in r.output, f"{example}: exit {r.code}\n{r.output}"
    finally:
        genisss("db", "stop")  # this test's own data folder
