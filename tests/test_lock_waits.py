"""bump, sync and migrate up/down/repair/stamp behind a held lock: exit 8 after --lock-timeout,
nothing changed, and the message names the backend that holds the lock."""

import json
import re
import time

import pytest

from genisss_cli.core import schema


def held_row(db):
    """An open transaction, application_name 'blocker', holding the singleton row."""
    holder = db.connect(autocommit=False, application_name="blocker")
    holder.execute("SELECT 1 FROM global_stats WHERE id = 'singleton' FOR UPDATE")
    return holder


def state(db) -> tuple:
    return (db.scalar("SELECT version_num FROM alembic_version"),
            db.scalar("SELECT total_stories FROM global_stats"),
            db.scalar("SELECT total_audio_generations FROM global_stats"))


def assert_names_the_blocker(r, pid: int, what: str) -> None:
    assert r.code == 8, r.output
    line = r.err.strip()
    assert len(line.splitlines()) == 1, r.err
    assert re.search(rf"genisss: error: {what} gave up waiting for a lock after 1 s: held by "
                     rf"pid {pid} \('blocker', idle in transaction since \d{{4}}-\d\d-\d\d "
                     r"\d\d:\d\d:\d\d UTC, transaction open \d+ s\) \(nothing was changed; "
                     rf"end that transaction \(SELECT pg_terminate_backend\({pid}\)\) or retry later\)",
                     line), line


@pytest.mark.parametrize("args, what", [
    (("bump", "story"), "bump"),
    (("bump", "audio", "--count", "50"), "bump"),
    (("sync",), "sync"),
    (("migrate", "down", schema.REALTIME, "--yes"), "the migration"),  # 034's trigger needs the table
    (("migrate", "repair", "--yes"), "migrate repair"),  # 033's ALTER TABLE needs the table
    (("migrate", "repair"), "migrate repair"),  # the dry run takes the same locks
    (("migrate", "stamp", schema.HEAD, "--yes"), "migrate stamp"),
])
def test_a_held_row_lock_is_named_and_nothing_changes(migrated_db, genisss, args, what):
    db = migrated_db
    db.execute("INSERT INTO user_stories (title) VALUES ('a'), ('b')")  # sync would change it
    before = state(db)
    holder = held_row(db)
    try:
        pid = holder.info.backend_pid
        started = time.monotonic()
        r = genisss(*args, "--lock-timeout", "1", dsn=db.dsn)
        elapsed = time.monotonic() - started
        assert_names_the_blocker(r, pid, what)
        assert elapsed < 10
        rj = genisss(*args, "--lock-timeout", "1", "--json", dsn=db.dsn)
        assert rj.code == 8 and rj.out == "", rj.output
        doc = json.loads(rj.err)
        assert doc["exit"] == 8 and f"held by pid {pid} ('blocker'" in doc["error"]
        assert doc["hint"].startswith("nothing was changed; end that transaction")
    finally:
        holder.rollback()
        holder.close()
    assert state(db) == before
    assert genisss(*args, dsn=db.dsn).code == 0  # and with the lock gone it works


def test_migrate_up_behind_a_held_row_lock(migrated_db, genisss):
    db = migrated_db
    # at 033: up has 034 to apply, which needs the table
    assert genisss("migrate", "down", schema.REALTIME, "--yes", dsn=db.dsn).code == 0
    holder = held_row(db)
    try:
        r = genisss("migrate", "up", "--lock-timeout", "1", dsn=db.dsn)
        assert_names_the_blocker(r, holder.info.backend_pid, "the migration")
    finally:
        holder.rollback()
        holder.close()
    assert db.scalar("SELECT version_num FROM alembic_version") == schema.REALTIME
    assert db.scalar("SELECT tgqual IS NULL FROM pg_trigger WHERE tgname = 'global_stats_notify'")


def test_bump_says_how_many_it_made_before_the_lock(migrated_db, popen_genisss):
    db = migrated_db
    proc = popen_genisss("bump", "story", "--count", "1000000", "--lock-timeout", "1", "--json",
                         dsn=db.dsn)
    deadline = time.monotonic() + 60
    while db.scalar("SELECT total_stories FROM global_stats") < 20:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.02)
    holder = held_row(db)
    pid = holder.info.backend_pid
    try:
        made = db.scalar("SELECT total_stories FROM global_stats")  # not moving now
        out, err = proc.communicate(timeout=60)
    finally:
        holder.rollback()
        holder.close()
    assert proc.returncode == 8, err
    doc = json.loads(err)
    assert f"held by pid {pid} ('blocker'" in doc["error"]
    assert doc["hint"].startswith(f"{made} of 1000000 increments were made before it "
                                  f"(the counter is at {made})")
    assert db.scalar("SELECT total_stories FROM global_stats") == made
