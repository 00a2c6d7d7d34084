"""Migration 034: the trigger notifies only while a watcher is registered.

A watcher is a session that ran watch.listen() (LISTEN global_stats, then the
shared advisory lock WATCH_LOCK). These tests pin down the promise that makes
this safe: a watcher misses no change, not even one committed by a writer that
checked for watchers just before the watcher registered.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from reliability import WatchReader, wait_for

from genisss_cli.core import schema, watch

INCREMENT = "SELECT public.increment_story_counter()"


def drain(conn, timeout: float = 0.3) -> list[int]:
    return [watch.parse_change(n.payload, 0).total_stories for n in conn.notifies(timeout=timeout)]


def test_no_notify_without_a_watcher(migrated_db):
    with migrated_db.connect() as plain, migrated_db.connect() as watcher, \
            migrated_db.connect() as writer:
        plain.execute("LISTEN global_stats")  # listening, but not registered
        writer.execute(INCREMENT)
        assert drain(plain) == []
        watch.listen(watcher)
        writer.execute(INCREMENT)
        # Once someone watches, the change is notified to every listener.
        assert drain(watcher) == [2] and drain(plain, 0.1) == [2]
        watcher.close()
        writer.execute(INCREMENT)
        assert drain(plain) == []
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == 3


def test_a_registering_watcher_waits_for_a_writer_that_did_not_notify(migrated_db):
    """The writer updated the row before anyone watched (so it queued no
    NOTIFY) and has not committed: listen() waits for its commit, and the row
    read after it has the change. Without the wait the change would be lost."""
    with migrated_db.connect() as writer, migrated_db.connect() as watcher:
        writer.execute("BEGIN")
        assert writer.execute(INCREMENT).fetchone()[0] == 1  # took the key: no NOTIFY
        done = threading.Event()
        thread = threading.Thread(target=lambda: (watch.listen(watcher), done.set()), daemon=True)
        thread.start()
        wait_for(lambda: migrated_db.scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND pid = %s", [watcher.info.backend_pid]) == 1, what="the watcher to wait for the lock")
        assert not done.is_set()
        writer.execute("COMMIT")
        thread.join(30)
        assert done.is_set()
        assert watch.read_row(watcher).total_stories == 1  # the change is in the row
        assert drain(watcher) == []  # and was never notified
        writer.execute(INCREMENT)
        assert drain(watcher) == [2]


def test_a_session_watching_and_writing_is_not_notified_of_its_own_change(migrated_db):
    """Documented: advisory locks never conflict within one session."""
    with migrated_db.connect() as conn:
        watch.listen(conn)
        conn.execute(INCREMENT)
        assert drain(conn) == []


def test_watches_started_amid_writers_miss_nothing(migrated_db, popen_genisss):
    """Two writers at full speed; three `watch --json` start at different
    moments. Each prints every total from its first change to the final one."""
    writers = [popen_genisss("bump", "story", "--count", "4000", "--json", dsn=migrated_db.dsn)
               for _ in range(2)]
    watches = []
    try:
        for at in (300, 2000, 5000):
            wait_for(lambda at=at: migrated_db.scalar("SELECT total_stories FROM global_stats") >= at,
                     what=f"{at} bumps")
            watches.append(WatchReader(popen_genisss("watch", "--json", dsn=migrated_db.dsn)))
            wait_for(lambda: watches[-1].err, what="watch to start")
        for p in writers:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        final = migrated_db.scalar("SELECT total_stories FROM global_stats")
        assert final == 8000
        for w in watches:
            wait_for(lambda w=w: w.totals and w.totals[-1][0] == final, what="the final total")
    finally:
        codes = [w.stop() for w in watches]
    assert codes == [0, 0, 0]
    for w in watches:
        totals = [t for t, _ in w.totals]
        assert not any(resync for _, resync in w.totals)
        assert totals == list(range(totals[0], final + 1)), (totals[:5], len(totals))
        summary = json.loads(w.err[-1])["summary"]
        assert summary["delta_stories"] == len(totals)  # nothing between the snapshot and the first


def test_check_reports_a_trigger_that_notifies_always_at_head(migrated_db, genisss):
    migrated_db.execute("DROP TRIGGER global_stats_notify ON global_stats")
    migrated_db.execute("CREATE TRIGGER global_stats_notify AFTER UPDATE ON global_stats "
                        "FOR EACH ROW EXECUTE FUNCTION global_stats_notify()")
    r = genisss("check", "--json", dsn=migrated_db.dsn)
    rows = {row["name"]: row for row in json.loads(r.out)["checks"]}
    assert rows["trigger"]["status"] == "warn" and "every update" in rows["trigger"]["detail"]
    r = genisss("migrate", "down", schema.REALTIME, "--yes", dsn=migrated_db.dsn)  # 034 -> 033 ...
    assert r.code == 0, r.err
    assert genisss("migrate", "up", dsn=migrated_db.dsn).code == 0  # ... and back: gated again
    r = genisss("check", "--json", dsn=migrated_db.dsn)
    rows = {row["name"]: row for row in json.loads(r.out)["checks"]}
    assert rows["trigger"]["status"] == "pass" and "only while watched" in rows["trigger"]["detail"]


@pytest.mark.parametrize("caller", ["service_role"])
def test_gating_in_the_supabase_shape(supabase_migrated_db, caller):
    """The worker's role calls the SECURITY DEFINER functions: the WHEN clause
    runs as their owner and takes the key like any writer."""
    db = supabase_migrated_db
    with db.connect() as writer, db.connect() as watcher:
        writer.execute(f"SET ROLE {caller}")
        writer.execute(INCREMENT)
        watch.listen(watcher)
        t0 = time.monotonic()
        writer.execute(INCREMENT)
        writer.execute("SELECT public.increment_audio_counter()")
        assert drain(watcher) == [2, 2] and time.monotonic() - t0 < 30


def test_the_backlog_is_split_by_transaction_not_by_value(migrated_db):
    """The row is read at (5, 0); then the counter is set to 4 and bumped back
    to 5. Matching values would take the last (5, 0) for the row itself and
    drop both later changes; 034's xid and the row's snapshot keep them."""
    migrated_db.execute("UPDATE global_stats SET total_stories = 4")
    with migrated_db.connect() as watcher, migrated_db.connect() as writer:
        watch.listen(watcher)
        writer.execute(INCREMENT)  # (5, 0): committed before the read
        row, snapshot = watch.read_row_and_snapshot(watcher)
        assert row.values == (5, 0)
        writer.execute("UPDATE global_stats SET total_stories = 4")
        writer.execute(INCREMENT)  # (5, 0) again, after the read
        now = time.time()
        backlog = [watch.parse_change(n.payload, now) for n in watcher.notifies(timeout=0.5)]
        assert [ch.total_stories for ch in backlog] == [5, 4, 5]
        assert all(ch.xid for ch in backlog)
        assert [ch.total_stories for ch in watch.unseen(backlog, row, snapshot)] == [4, 5]
        # 033's payload has no xid: the value match is all there is.
        old = [watch.Change(ch.total_stories, 0, row.updated_at, now, None) for ch in backlog]
        assert watch.unseen(old, row, snapshot) == []


def test_snapshot_visibility():
    assert watch.visible(99, "100:105:")
    assert watch.visible(101, "100:105:102,104")
    assert not watch.visible(102, "100:105:102,104")
    assert not watch.visible(105, "100:105:")


def test_registering_behind_an_open_transaction_times_out_naming_it(migrated_db):
    """A session changed the row unwatched and stays in its transaction: the
    watcher cannot know whether that change is in the row until it ends, so
    it waits, and after the timeout says which backend to look at."""
    from genisss_cli.errors import Exit, GenisssError

    with migrated_db.connect() as writer, migrated_db.connect() as watcher:
        writer.execute("BEGIN")
        writer.execute(INCREMENT)
        with pytest.raises(GenisssError) as caught:
            watch.listen(watcher, timeout=0.3)
        assert caught.value.code == Exit.TIMEOUT
        assert f"backend pid {writer.info.backend_pid} " in caught.value.message
        assert watcher.execute("SHOW lock_timeout").fetchone()[0] == "0"  # restored
        writer.execute("COMMIT")
        watch.listen(watcher, timeout=0.3)  # now at once
        assert watch.read_row(watcher).total_stories == 1
