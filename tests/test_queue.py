"""A watcher that stops reading never makes an increment fail (migration 036).

PostgreSQL's NOTIFY queue is held by its slowest listener; once it is full
every notifying transaction fails. Here a registered watcher sits in an open
transaction (so it reads nothing) on a throwaway cluster whose queue is made
small (max_notify_queue_pages, PostgreSQL 17+), and the worker's increments
go on: the trigger stops notifying past half the queue, says so once in the
server log, and check reports the usage. 034's trigger, as a control, fails
every increment once the queue is full.
"""

import json

import psycopg
import pytest
from conftest import migrate_up
from reliability import Cluster

from genisss_cli.conn import embedded
from genisss_cli.core import schema, watch

PAGES = 64  # the smallest queue PostgreSQL allows: 64 pages of 8 kB


@pytest.fixture
def small_queue(tmp_path):
    cluster = Cluster(tmp_path / "queue")
    try:
        with psycopg.connect(cluster.admin_dsn, autocommit=True) as conn:
            if int(conn.execute("SHOW server_version_num").fetchone()[0]) < 170000:
                pytest.skip("max_notify_queue_pages needs PostgreSQL 17 or later")
            conn.execute(f"ALTER SYSTEM SET max_notify_queue_pages = {PAGES}")
            conn.execute("CREATE DATABASE q")
        embedded.stop(cluster.base)
        cluster.start()
        dsn = psycopg.conninfo.make_conninfo(cluster.admin_dsn, dbname="q")
        migrate_up(dsn)
        yield cluster, dsn
    finally:
        embedded.stop(cluster.base)


def usage(dsn) -> float:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT pg_notification_queue_usage()").fetchone()[0]


def test_a_frozen_watcher_cannot_stop_the_worker(small_queue, genisss):
    cluster, dsn = small_queue
    with psycopg.connect(dsn, autocommit=True) as frozen:
        watch.listen(frozen)  # registered: the trigger notifies for it
        frozen.execute("BEGIN")
        frozen.execute("SELECT 1")  # in a transaction: it reads no notification
        r = genisss("bump", "story", "--count", "30000", "--json", dsn=dsn)
        assert r.code == 0, r.err
        assert json.loads(r.out)["total_stories"] == 30000  # every increment committed
        assert schema.QUEUE_STOP <= usage(dsn) < 1.0

        r = genisss("check", "--json", dsn=dsn)
        row = {c["name"]: c for c in json.loads(r.out)["checks"]}["notify queue"]
        assert row["status"] == "warn" and "stopped notifying" in row["detail"], row
        assert f"pid {frozen.info.backend_pid}" in row["detail"]
        logged = "\n".join(p.read_text(errors="replace") for p in cluster.pgdata.rglob("*.log"))
        if (cluster.pgdata / "log").is_file():
            logged += (cluster.pgdata / "log").read_text(errors="replace")
        assert logged.count("genisss: the NOTIFY queue is at least half full") == 1, logged[-2000:]

        # The control: 034's trigger notifies whatever the queue holds.
        r = genisss("migrate", "down", schema.WATCHED, "--yes", dsn=dsn)
        assert r.code == 0 and f"{schema.HEAD} -> {schema.WATCHED}" in r.out, r.out + r.err
        r = genisss("bump", "story", "--count", "30000", "--json", dsn=dsn)
        assert r.code == 10 and "too many notifications in the NOTIFY queue" in r.err, r.out + r.err
        frozen.execute("ROLLBACK")
