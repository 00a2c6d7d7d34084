"""Migrations 034 and 036: the trigger notifies only while a watcher is
registered, and its NOTIFY is an empty hint to read the row.

A watcher is a session that ran watch.listen() (LISTEN global_stats, then the
shared advisory lock WATCH_LOCK). These tests pin down the promise that makes
this safe: a watcher misses no change, not even one committed by a writer that
checked for watchers just before the watcher registered; and nothing but the
table's own values is ever shown.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from reliability import WatchReader, wait_for

from genisss_cli.core import schema, watch
from genisss_cli.errors import Exit, GenisssError

INCREMENT = "SELECT public.increment_story_counter()"


def drain(conn, timeout: float = 0.3) -> list[int]:
    """The total_stories that each notification here points at (the row, read once per hint)."""
    seen = []
    for n in conn.notifies(timeout=timeout):
        assert n.channel == "global_stats" and n.payload == ""  # a hint, nothing to believe
        seen.append(n.pid)
    return [watch.read_row(conn).total_stories] * len(seen) if seen else []


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
    moments. Each prints only values the table had, rising, and ends on the
    final one (a burst between two reads shows as its last value)."""
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
            # (a watch that started after the last write shows it as its start)
            wait_for(lambda w=w: w.last() == final, what="the final total")
    finally:
        codes = [w.stop() for w in watches]
    assert codes == [0, 0, 0]
    for w in watches:
        totals = [t for t, _ in w.totals]
        assert not any(resync for _, resync in w.totals)
        assert totals == sorted(set(totals)) and w.last() == final, (totals[:5], len(totals))
        summary = json.loads(w.err[-1])["summary"]
        assert summary["total_stories"] == final and summary["changes"] == len(totals)


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


def test_a_forged_notification_never_shows_as_the_counter(migrated_db, popen_genisss):
    """Any login may NOTIFY global_stats with anything. A running watch reads
    the row on it: it prints nothing for a forgery and the real value after
    a real change, and its feed never goes backwards."""
    w = WatchReader(popen_genisss("watch", "--json", dsn=migrated_db.dsn))
    wait_for(lambda: w.err, what="watch to start")
    with migrated_db.connect() as writer, migrated_db.connect() as forger:
        writer.execute(INCREMENT)
        wait_for(lambda: w.totals, what="the first change")
        for payload in ('{"s": 999999999, "a": 0, "x": 1, "t": 1}',
                        '{"total_stories": 999999999, "total_audio_generations": 0}', "999999999"):
            forger.execute("SELECT pg_notify('global_stats', %s)", [payload])
        time.sleep(0.5)
        writer.execute(INCREMENT)
        wait_for(lambda: w.totals[-1][0] == 2, what="the second change")
    assert w.stop() == 0
    assert [t for t, _ in w.totals] == [1, 2]
    assert all(999999999 not in pair for pair in w.pairs)


def test_a_burst_is_one_read_and_ends_on_the_final_value(migrated_db):
    with migrated_db.connect() as watcher, migrated_db.connect() as writer:
        watch.listen(watcher)
        for _ in range(50):
            writer.execute(INCREMENT)
        notes = list(watcher.notifies(timeout=0.5))
        assert len(notes) == 50 and {n.payload for n in notes} == {""}
        assert watch.read_row(watcher).total_stories == 50


def test_registering_behind_an_open_transaction_times_out_naming_it(migrated_db):
    """A session changed the row unwatched and stays in its transaction: the
    watcher cannot know whether that change is in the row until it ends, so
    it waits, and after the timeout says which backend to look at."""
    with migrated_db.connect() as writer, migrated_db.connect() as watcher:
        writer.execute("BEGIN")
        writer.execute(INCREMENT)
        with pytest.raises(GenisssError) as caught:
            watch.listen(watcher, timeout=0.3)
        assert caught.value.code == Exit.TIMEOUT
        assert f"backend pid {writer.info.backend_pid} (" in caught.value.message
        assert "changed global_stats" in caught.value.message
        assert watcher.execute("SHOW lock_timeout").fetchone()[0] == "0"  # restored
        writer.execute("COMMIT")
        watch.listen(watcher, timeout=0.3)  # now at once
        assert watch.read_row(watcher).total_stories == 1


def test_a_session_holding_the_key_itself_is_named_as_such(migrated_db, genisss):
    """Anyone who can connect may take the advisory key exclusively; watch
    then says exactly that (not that a transaction changed the row) and who."""
    with migrated_db.connect() as holder:
        holder.execute("SET application_name = 'key-squatter'")
        holder.execute(f"SELECT pg_advisory_lock({watch.feed.WATCH_LOCK})")
        with migrated_db.connect() as watcher, pytest.raises(GenisssError) as caught:
            watch.listen(watcher, timeout=0.3)
        message = caught.value.message
        assert caught.value.code == Exit.TIMEOUT
        assert f"backend pid {holder.info.backend_pid} (" in message and "key-squatter" in message
        assert "advisory lock of its own" in message and "changed global_stats" not in message
        assert f"pg_terminate_backend({holder.info.backend_pid})" in caught.value.hint
        # check --live cannot register either: its live rows fail, and it exits 1.
        r = genisss("check", "--live", "--live-timeout", "1", "--json", dsn=migrated_db.dsn,
                    env={"GENISSS_TEST_LIVE_PAUSE": "0"})
        rows = {row["name"]: row for row in json.loads(r.out)["checks"]}
        assert r.code == 1 and rows["live: LISTEN"]["status"] == "fail", rows["live: LISTEN"]
