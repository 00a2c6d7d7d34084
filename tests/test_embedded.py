"""The embedded default: a fresh machine, no database configured."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import clean_env


def postmasters(pgdata: str) -> list[int]:
    """PIDs of server processes started with -D pgdata (the children are not)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-D" in args and pgdata.encode() in args:
                found.append(int(entry.name))
    return found


def test_migrate_up_on_the_embedded_default(tmp_path, genisss):
    data = tmp_path / "genisss-data"  # the genisss fixture's GENISSS_DATA_DIR
    try:
        r = genisss("migrate", "up")
        assert r.code == 0, r.err
        assert "embedded/postgres: upgraded base -> 035_broadcast_counter" in r.out
        r = genisss("migrate", "status", "--json")
        assert r.code == 0 and json.loads(r.out)["up_to_date"] is True

        st = json.loads(genisss("db", "status", "--json").out)
        assert st["running"] and st["pgdata"] == str(data / "pgdata")
        url = genisss("db", "url").out.strip()
        assert url.startswith("postgresql://postgres@/postgres?host=")
        assert (data / "pgdata" / "genisss.conf").read_text().count("wal_level = logical") == 1

        r = genisss("db", "stop", "--json")
        assert json.loads(r.out) == {"stopped": True, "running": False, "pgdata": str(data / "pgdata")}
        # started again on demand, data kept
        r = genisss("migrate", "status", "--json")
        assert r.code == 0 and json.loads(r.out)["current"] == "035_broadcast_counter"
    finally:
        genisss("db", "stop")


def test_concurrent_first_start_is_shared(tmp_path):
    """Two genisss processes starting the embedded server at once: one server, both work."""
    env = clean_env(tmp_path)
    argv = [sys.executable, "-m", "genisss_cli", "migrate", "status", "--json"]
    try:
        procs = [subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        results = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [1, 1, 1], results  # 1: migrations pending
        pgdata = str(tmp_path / "genisss-data" / "pgdata")
        assert len(postmasters(pgdata)) == 1
    finally:
        subprocess.run([sys.executable, "-m", "genisss_cli", "db", "stop"], env=env, cwd=tmp_path,
                       capture_output=True, timeout=60)
