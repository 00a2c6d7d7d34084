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


SLOW_COMMIT = """
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON global_stats
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();
"""


def test_a_commit_without_an_answer_is_a_query_timeout(migrated_db, genisss):
    """sync's COMMIT (conn.transaction()'s end) runs a deferred trigger that
    outlasts GENISSS_QUERY_TIMEOUT: the query timeout's own message, which
    says the change may have been committed, not a lost connection."""
    migrated_db.execute(SLOW_COMMIT)
    message = "no answer from the server within 1 s (GENISSS_QUERY_TIMEOUT) while committing"
    hint = ("the COMMIT was sent: whether it took effect is unknown; look before you retry "
            "(is the server frozen or cut off?)")
    for stories, extra in ((1, []), (2, ["--json"])):
        migrated_db.execute("INSERT INTO user_stories (title) VALUES ('a')")
        r = genisss("sync", *extra, dsn=migrated_db.dsn, env={"GENISSS_QUERY_TIMEOUT": "1"})
        assert r.code == 4, r.output
        if extra:
            assert json.loads(r.err) == {"error": message, "exit": 4, "hint": hint}
        else:
            assert r.err == f"genisss: error: {message} ({hint})\n"
        assert r.out == ""
        # The server finishes the commit on its own (the trigger's 3 s): the sync happened.
        deadline_ = time.monotonic() + 15
        while migrated_db.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND application_name = 'genisss'"):
            assert time.monotonic() < deadline_
            time.sleep(0.1)
        assert counter(migrated_db) == stories
