"""The embedded default: a fresh machine, no database configured."""

import json
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import clean_env

from genisss_cli.core import schema


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
        assert f"embedded/postgres: upgraded base -> {schema.HEAD}" in r.out
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
        assert r.code == 0 and json.loads(r.out)["current"] == schema.HEAD
    finally:
        genisss("db", "stop")


def test_concurrent_first_start_is_shared(tmp_path):
    """Four genisss processes starting the embedded server at once: one server, all work."""
    env = clean_env(tmp_path)
    argv = [sys.executable, "-m", "genisss_cli", "migrate", "status", "--json"]
    try:
        procs = [subprocess.Popen(argv[:-1] if i else argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for i in range(4)]
        results = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [1, 1, 1, 1], results  # 1: migrations pending
        pgdata = str(tmp_path / "genisss-data" / "pgdata")
        assert len(postmasters(pgdata)) == 1
        # The one that started it says so, unless it ran with --json (the first); the others never.
        said = [len(STARTED.findall(err)) for _out, err in results]
        assert said[0] == 0 and sum(said) <= 1, results
        assert results[0][1] == "" and json.loads(results[0][0])["up_to_date"] is False
    finally:
        subprocess.run([sys.executable, "-m", "genisss_cli", "db", "stop"], env=env, cwd=tmp_path,
                       capture_output=True, timeout=60)


STARTED = re.compile(r"^genisss: started the embedded PostgreSQL (\d+\.\d+) in (.+) \((\d+\.\d) s\)$", re.M)


def test_the_embedded_server_announces_its_start_once(tmp_path, genisss):
    pgdata = str(tmp_path / "genisss-data" / "pgdata")
    try:
        r = genisss("migrate", "up")
        assert r.code == 0, r.err
        lines = r.err.splitlines()
        assert len(lines) == 1 and STARTED.fullmatch(lines[0]), r.err  # on stderr, one line
        version, where, _seconds = STARTED.fullmatch(lines[0]).groups()
        assert where == pgdata and "started" not in r.out
        with psycopg.connect(json.loads(genisss("db", "url", "--json").out)["url"]) as c:
            assert c.execute("SHOW server_version").fetchone()[0].split()[0] == version
        for args in (["status"], ["migrate", "status", "--json"], ["db", "start"]):
            r = genisss(*args)  # running already: nothing said
            assert r.code == 0 and not STARTED.search(r.err), (args, r.err)

        assert genisss("db", "stop").code == 0
        r = genisss("status", "--json")  # --json: stdout is the document, stderr stays quiet
        assert r.code == 0 and r.err == "" and json.loads(r.out)["total_stories"] == 0

        assert genisss("db", "stop").code == 0
        r = genisss("db", "start")  # its status on stdout, the start on stderr
        assert r.code == 0 and STARTED.fullmatch(r.err.strip()) and "running" in r.out, r
        r = genisss("db", "start", "--json")
        assert r.code == 0 and r.err == "" and json.loads(r.out)["running"] is True
    finally:
        genisss("db", "stop")


@pytest.mark.parametrize("where", ["DATABASE_URL", "GENISSS_DATABASE_URL", ".env", "-d"])
def test_db_stop_stops_the_embedded_server_whatever_the_url(tmp_path, genisss, migrated_db, where):
    """The embedded server left running from before a URL was set: db stop
    ends it (and only it), even when the URL is elsewhere, or malformed."""
    pgdata = str(tmp_path / "genisss-data" / "pgdata")
    try:
        assert genisss("db", "start").code == 0 and len(postmasters(pgdata)) == 1
        for url, json_too in ((migrated_db.dsn, False), ("postgress://u:s3cr3t@nowhere/db", True)):
            env, args = {}, []
            if where == ".env":
                (tmp_path / ".env").write_text(f"DATABASE_URL={url}\n")
            elif where == "-d":
                args = ["-d", url]
            else:
                env[where] = url
            r = genisss(*args, "db", "stop", *(["--json"] if json_too else []), env=env)
            assert r.code == 0, r.output
            if json_too:
                assert json.loads(r.out) == {"stopped": False, "running": False, "pgdata": pgdata}
            else:
                assert r.out == "stopped\n" and postmasters(pgdata) == []
            assert "s3cr3t" not in r.output
        assert migrated_db.scalar("SELECT 1") == 1  # the other server is untouched
        assert "It concerns the embedded server only" in " ".join(genisss("db", "stop", "--help").out.split())
    finally:
        genisss("db", "stop")
