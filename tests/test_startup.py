"""`--help` loads Typer and the command modules, nothing more: each command
imports core and render when it runs (docs/architecture.md, Imports), so help
and shell completion stay quick (docs/performance.md, the startup rows)."""

import json
import subprocess
import sys

import pytest
from conftest import clean_env

# core.schema holds the names and limits that option defaults and help texts
# show (--publication's default, bump's --count bound, the revisions).
ALLOWED = {"genisss_cli.core", "genisss_cli.core.schema"}
HELP = [["--help"], ["bump", "--help"], ["migrate", "--help"], ["migrate", "up", "--help"],
        ["db", "--help"], ["db", "stop", "--help"], ["watch", "--help"], ["check", "--help"]]


@pytest.mark.parametrize("argv", HELP, ids=" ".join)
def test_help_imports_neither_core_nor_render(tmp_path, argv):
    script = ("import json, sys; from genisss_cli import cli; code = cli.run(sys.argv[1:]); "
              "sys.stderr.write(json.dumps([code, sorted(m for m in sys.modules "
              "if m.startswith(('genisss_cli.core', 'genisss_cli.render', 'psycopg', 'rich', "
              "'sqlalchemy', 'alembic')))]))")
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True,
                          timeout=60, env=clean_env(tmp_path), cwd=tmp_path)
    code, loaded = json.loads(proc.stderr)
    assert code == 0 and "Usage: genisss" in proc.stdout, proc
    assert set(loaded) - ALLOWED == set()
