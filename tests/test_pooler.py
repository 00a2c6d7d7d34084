"""A real PgBouncer between genisss and the server (the system PostgreSQL).

Only the port (6543, Supabase's) used to tell genisss that it faced a
transaction pooler. Behind one on any other port, `genisss watch` said it was
watching and then received nothing: LISTEN and the watcher's session lock
stayed on a server session that the pooler handed to other clients. db.connect
now proves it (db._require_kept_session). Skipped where pgbouncer is not
installed and cannot be (tests/tools.py installs it as root) or there is no
system server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import tools

SYSTEM_HOST, SYSTEM_PORT = "127.0.0.1", 5432


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pgbouncer(server, migrated_db):
    """start(pool_mode, pool_size=5) -> DSN of migrated_db through a PgBouncer."""
    if server.name != "system":
        pytest.skip("PgBouncer is pointed at the system PostgreSQL over TCP")
    binary, why = tools.pgbouncer()
    if binary is None:
        pytest.skip(why)
    user = psycopg.conninfo.conninfo_to_dict(server.admin_dsn).get("user") or "root"
    # PgBouncer refuses to run as root; then it runs as nobody, which must read its config.
    run_as = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 and shutil.which("runuser") else []
    procs, folders = [], []

    def start(pool_mode: str, pool_size: int = 5) -> str:
        folder = Path(tempfile.mkdtemp(prefix="genisss-pgbouncer-"))
        folders.append(folder)
        folder.chmod(0o755)
        port = free_port()
        ini = folder / "pgbouncer.ini"
        ini.write_text(f"""[databases]
{migrated_db.name} = host={SYSTEM_HOST} port={SYSTEM_PORT} dbname={migrated_db.name} user={user}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = 50
logfile =
pidfile =
syslog = 0
""")
        ini.chmod(0o644)
        proc = subprocess.Popen([*run_as, binary, str(ini)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        dsn = f"postgresql://{user}@127.0.0.1:{port}/{migrated_db.name}"
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return dsn
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"pgbouncer did not start: {proc.stderr.read()[-500:]}")
                time.sleep(0.1)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def server_pid(dsn: str) -> tuple[int, int]:
    """(the pid the client was told, the server's own pid)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.info.backend_pid, conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_watch_refuses_a_transaction_pooler_on_any_port(pgbouncer, genisss):
    dsn = pgbouncer("transaction")
    told, real = server_pid(dsn)
    assert told != real  # the premise: a pooler answers with its own backend key

    r = genisss("watch", "--json", "--count", "1", "--timeout", "5", dsn=dsn)
    assert r.code == 7, r.output
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "is a transaction pooler" in lines[0], r.err
    assert "Traceback" not in r.output


def test_check_fails_its_connection_row_and_live_refuses(pgbouncer, genisss):
    dsn = pgbouncer("transaction")
    r = genisss("check", "--json", dsn=dsn)
    assert r.code == 1, r.output
    rows = {row["name"]: row for row in json.loads(r.out)["checks"]}
    assert rows["connection"]["status"] == "fail"
    assert "is a transaction pooler" in rows["connection"]["detail"]
    assert rows["connection"]["fix"].startswith("use the direct or session-mode connection string")

    r = genisss("check", "--live", "--json", dsn=dsn)
    assert r.code == 7, r.output
    assert "is a transaction pooler" in r.err


def test_check_passes_its_connection_row_through_a_session_pooler(pgbouncer, genisss):
    r = genisss("check", "--json", dsn=pgbouncer("session"))
    rows = {row["name"]: row for row in json.loads(r.out)["checks"]}
    assert rows["connection"]["status"] == "pass", rows["connection"]
    assert "can LISTEN" in rows["connection"]["detail"]


def test_bumps_through_a_transaction_pooler_prepare_nothing(pgbouncer, popen_genisss, migrated_db):
    """bump's fast path prepares its statement; behind a transaction pooler two
    bumps met each other's statement on a shared server session ("already
    exists", "does not exist"). Behind any pooler bump now runs unprepared."""
    dsn = pgbouncer("transaction")
    procs = [popen_genisss("bump", "story", "--count", "2000", "--json", dsn=dsn) for _ in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert json.loads(out)["bumped"] == 2000
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == 6000


@pytest.mark.parametrize("pool_size", [5, 1])  # 1: the probe finds no free session and waits
def test_watch_works_through_a_session_pooler(pgbouncer, start_watch_dsn, migrated_db, pool_size):
    w = start_watch_dsn(pgbouncer("session", pool_size))
    with migrated_db.connect() as conn:
        conn.execute("SELECT increment_story_counter()")
    out, err = w.communicate(timeout=60)
    assert w.returncode == 0, err
    changes = [json.loads(line) for line in out.splitlines() if '"total_stories"' in line
               and '"summary"' not in line]
    assert [c["total_stories"] for c in changes] == [1]


@pytest.fixture
def start_watch_dsn(popen_genisss):
    """watch --json --count 1 through dsn, returned once it is watching."""

    def start(dsn: str) -> subprocess.Popen:
        proc = popen_genisss("watch", "--json", "--count", "1", "--timeout", "30", dsn=dsn)
        line = proc.stderr.readline()  # "genisss: watching ..." once registered
        assert "watching" in line, line + proc.stderr.read()
        return proc

    return start
