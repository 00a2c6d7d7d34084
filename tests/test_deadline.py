"""GENISSS_QUERY_TIMEOUT (genisss_cli/conn/deadline.py): a command without an
answer for that long fails in one line (exit 4); a wait that has a deadline of
its own (watch between changes) is never cut; nothing is left running.
The frozen servers are in test_faults.py."""

import json
import threading
import time

import psycopg

from genisss_cli.conn import deadline


def counter(db) -> int:
    return db.scalar("SELECT total_stories FROM global_stats")


def test_a_command_without_an_answer_for_the_timeout_gives_up(migrated_db, genisss):
    """sync waits for the counter's row lock (its --lock-timeout is longer than
    GENISSS_QUERY_TIMEOUT): the query timeout ends it, and nothing changed."""
    migrated_db.execute("INSERT INTO user_stories (title) VALUES ('a'), ('b')")
    with migrated_db.connect(autocommit=False) as holder:
        holder.execute("SELECT 1 FROM global_stats WHERE id = 'singleton' FOR UPDATE")
        started = time.monotonic()
        r = genisss("sync", "--lock-timeout", "30", dsn=migrated_db.dsn,
                    env={"GENISSS_QUERY_TIMEOUT": "1"})
        took = time.monotonic() - started
        holder.rollback()
    assert r.code == 4, r.output
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "no answer from the server within 1 s (GENISSS_QUERY_TIMEOUT)" in lines[0]
    assert took < 25  # the query timeout, not the lock timeout
    assert counter(migrated_db) == 0


def test_watch_waits_longer_than_the_timeout_for_a_change(migrated_db, genisss):
    """Between changes watch waits with its own deadline, on an idle
    connection: GENISSS_QUERY_TIMEOUT does not cut that wait."""
    r = genisss("watch", "--json", "--timeout", "2.5", dsn=migrated_db.dsn,
                env={"GENISSS_QUERY_TIMEOUT": "0.5"})
    assert r.code == 0, r.err
    assert json.loads(r.err.strip().splitlines()[-1])["summary"]["reason"] == "timeout"
    assert "no answer" not in r.err


def test_the_watchdog_ends_with_its_connection(migrated_db):
    threads = threading.active_count()
    conn = deadline.connection_class().connect(migrated_db.dsn, autocommit=True)
    conn.answer_timeout = 0.5
    assert threading.active_count() == threads + 1
    conn.execute("SELECT pg_sleep(0.2)")  # shorter than the timeout: answered
    for _ in conn.notifies(timeout=1.5):  # idle, with its own deadline: not cut
        pass
    try:
        conn.execute("SELECT pg_sleep(5)")
    except psycopg.OperationalError as exc:
        assert str(exc) == "no answer from the server within 0.5 s (GENISSS_QUERY_TIMEOUT)"
    else:
        raise AssertionError("pg_sleep(5) was not cut")
    assert conn.closed  # its state is unknown: never reused
    deadline_ = time.monotonic() + 5
    while threading.active_count() > threads and time.monotonic() < deadline_:
        time.sleep(0.01)
    assert threading.active_count() == threads

    conn = deadline.connection_class().connect(migrated_db.dsn, autocommit=True)
    conn.answer_timeout = 900
    conn.close()
    assert threading.active_count() == threads
