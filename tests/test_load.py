"""Load and races: workers that insert and increment the way the Genisss worker
does while sync, drift and watch run beside them; a hypothesis state machine
against a model of the counter; two operators at once.

Bounded in count and time, loopback only. The long variants are marked soak
and run with GENISSS_SOAK=1 (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from reliability import WatchReader, run_cli, wait_for

from genisss_cli.core import counters, schema
from genisss_cli.core.watch import listen as register_watcher

# The Genisss worker (storyWorker.js), as far as the counter sees it: the story
# is saved in one transaction, the increment runs in the next, and sometimes
# it fails and is skipped (that is why the counter can drift). Audio now and then.
WORKER = r"""
import json, random, sys
import psycopg
dsn, n, seed, skip = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rnd = random.Random(seed)
done = {"stories": 0, "increments": 0, "audio": 0}
with psycopg.connect(dsn, application_name="load-worker") as conn:
    for i in range(n):
        with conn.transaction():
            conn.execute("INSERT INTO public.user_stories (title) VALUES (%s)", [f"w{seed}-{i}"])
        done["stories"] += 1
        if rnd.random() >= skip:
            with conn.transaction():
                conn.execute("SELECT public.increment_story_counter()")
            done["increments"] += 1
        if rnd.random() < 0.3:
            with conn.transaction():
                conn.execute("SELECT public.increment_audio_counter()")
            done["audio"] += 1
print(json.dumps(done))
"""


@dataclass
class LoadReport:
    workers: int
    stories: int = 0
    increments: int = 0
    audio: int = 0
    syncs: list[tuple[int, int]] = field(default_factory=list)  # (old, new) that changed the counter
    sync_runs: int = 0
    drift_runs: int = 0
    drift_codes: set[int] = field(default_factory=set)
    notifications: int = 0  # hints the registered listener received
    watched: list[tuple[int, int]] = field(default_factory=list)


def _cli(dsn: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genisss_cli", "-d", dsn, *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})


def run_load(db, popen_genisss, *, workers: int, per_worker: int, skip: float = 0.15) -> LoadReport:
    report = LoadReport(workers)
    listener = db.connect()
    register_watcher(listener)
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            for n in listener.notifies(timeout=0.2):
                assert n.payload == ""  # a hint: watch reads the row
                report.notifications += 1

    def sync_once():
        r = _cli(db.dsn, "sync", "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        report.sync_runs += 1
        if out["old_count"] != out["new_count"]:
            report.syncs.append((out["old_count"], out["new_count"]))

    def sync_loop():
        while not stop.is_set():
            sync_once()

    def drift_loop():
        while not stop.is_set():
            r = _cli(db.dsn, "drift", "--json")
            report.drift_codes.add(r.returncode)
            report.drift_runs += 1

    watch = WatchReader(popen_genisss("watch", "--json", dsn=db.dsn))
    wait_for(lambda: watch.err, what="watch to connect")
    threads = [threading.Thread(target=f, daemon=True) for f in (listen, sync_loop, drift_loop)]
    for t in threads:
        t.start()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, db.dsn, str(per_worker), str(i), str(skip)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(workers)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        done = json.loads(out)
        report.stories += done["stories"]
        report.increments += done["increments"]
        report.audio += done["audio"]
    # The load is over: the loops finish their round, and one last sync settles it.
    stop.set()
    for t in threads:
        t.join(180)
    sync_once()
    # A marker: when the listener and watch have seen it, they have seen everything before it.
    marker = db.scalar("SELECT increment_audio_counter()")
    stop.clear()
    listening = threading.Thread(target=listen, daemon=True)
    listening.start()
    wait_for(lambda: watch.pairs and watch.pairs[-1][1] == marker, what="watch to see the marker")
    stop.set()
    listening.join(10)
    listener.close()
    assert watch.stop() == 0
    report.watched = watch.pairs
    return report


def check_load(db, report: LoadReport) -> None:
    final = db.connect().execute(
        "SELECT total_stories, total_audio_generations, (SELECT count(*) FROM user_stories) "
        "FROM global_stats").fetchone()
    # No lost update: the audio counter, which sync never touches, is exact.
    assert final[1] == report.audio + 1  # + the marker
    # After the last sync the counter is the real count, and drift says 0.
    assert final[0] == final[2] == report.stories
    r = _cli(db.dsn, "drift", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["counters"][0]["drift"] == 0, r.stdout
    assert report.drift_codes <= {0, 1}  # a finding or none, never a failure
    # Every increment's transaction announced itself (syncs that changed the
    # counter did too).
    assert report.notifications >= report.increments + report.audio
    # What watch showed are values the table had, in commit order: the audio
    # counter (which sync never touches) never goes back, the story counter
    # goes back only across a sync, and the last line is the final row.
    audio = [a for _, a in report.watched]
    assert audio == sorted(audio), "watch showed an audio total out of order"
    stories = [s for s, _ in report.watched]
    drops = sum(1 for s0, s1 in zip(stories, stories[1:], strict=False) if s1 < s0)
    assert drops <= len(report.syncs), "watch showed a story total out of order"
    assert report.watched[-1] == (final[0], final[1])


def summary(report: LoadReport) -> str:
    return (f"{report.workers} workers: {report.stories} stories, {report.increments} story and "
            f"{report.audio} audio increments; {report.sync_runs} syncs ({len(report.syncs)} changed the "
            f"counter), {report.drift_runs} drift checks (exit codes {sorted(report.drift_codes)}); "
            f"{report.notifications} notifications, {len(report.watched)} watch lines")


def test_workers_sync_drift_and_watch_at_once(migrated_db, popen_genisss):
    report = run_load(migrated_db, popen_genisss, workers=8, per_worker=150)
    check_load(migrated_db, report)
    print("\nload:", summary(report))
    assert report.sync_runs >= 2 and report.drift_runs >= 2


@pytest.mark.soak
def test_soak_workers_sync_drift_and_watch_at_once(migrated_db, popen_genisss):
    report = run_load(migrated_db, popen_genisss, workers=16, per_worker=int(os.environ.get(
        "GENISSS_SOAK_STORIES", "1500")))
    check_load(migrated_db, report)
    print("\nsoak:", summary(report))


# -- a model of the counter ------------------------------------------------------------------------


class CounterMachine(RuleBasedStateMachine):
    """bump, insert and delete stories, sync and drift, against the model:
    counter += 1 per bump, count follows the rows, sync sets counter = count,
    drift = counter - count."""

    dsn: str = ""
    cwd = None

    @initialize()
    def reset(self):
        self.conn = psycopg.connect(self.dsn, autocommit=True)
        self.conn.execute("TRUNCATE public.user_stories")
        self.conn.execute("UPDATE public.global_stats SET total_stories = 0, total_audio_generations = 0")
        self.counter = self.audio = self.count = 0

    def teardown(self):
        if hasattr(self, "conn"):
            self.conn.close()

    @rule(kind=st.sampled_from(["story", "audio"]), n=st.integers(1, 5))
    def bump(self, kind, n):
        result = counters.bump(self.conn, kind, n)
        if kind == "story":
            self.counter += n
            assert result.value == self.counter
        else:
            self.audio += n
            assert result.value == self.audio

    @rule(n=st.integers(1, 5))
    def insert_stories(self, n):
        self.conn.execute("INSERT INTO public.user_stories (title) "
                          "SELECT 'm' FROM generate_series(1, %s)", [n])
        self.count += n

    @precondition(lambda self: self.count > 0)
    @rule(n=st.integers(1, 5))
    def delete_stories(self, n):
        deleted = self.conn.execute("DELETE FROM public.user_stories WHERE id IN "
                                    "(SELECT id FROM public.user_stories LIMIT %s)", [n]).rowcount
        self.count -= deleted

    @rule(dry_run=st.booleans(), if_drift=st.booleans())
    def sync(self, dry_run, if_drift):
        result = counters.sync(self.conn, dry_run=dry_run, if_drift=if_drift)
        assert (result.old_count, result.new_count) == (self.counter, self.count)
        assert result.difference == self.count - self.counter
        if not dry_run:
            self.counter = self.count

    @rule(tolerance=st.integers(0, 3))
    def drift(self, tolerance):
        report = counters.drift(self.conn, tolerance=tolerance)
        assert report.rows[0].drift == self.counter - self.count
        assert report.ok == (abs(self.counter - self.count) <= tolerance)

    @rule()
    def drift_from_the_command_line(self):
        run = run_cli(["drift", "--json"], env={"GENISSS_DATABASE_URL": self.dsn}, cwd=self.cwd)
        assert run.code == (0 if self.counter == self.count else 1), run
        assert json.loads(run.out)["counters"][0]["drift"] == self.counter - self.count

    @invariant()
    def the_row_is_the_model(self):
        if hasattr(self, "conn"):
            row = counters.read_row(self.conn)
            assert (row.total_stories, row.total_audio_generations) == (self.counter, self.audio)


def test_counter_against_a_model(migrated_db, tmp_path):
    from hypothesis.stateful import run_state_machine_as_test

    CounterMachine.dsn, CounterMachine.cwd = migrated_db.dsn, tmp_path
    run_state_machine_as_test(CounterMachine, settings=settings(
        max_examples=25, stateful_step_count=15, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow]))


# -- two operators at once ----------------------------------------------------------------------------


def test_two_syncs_at_once_apply_the_difference_once(migrated_db, popen_genisss):
    migrated_db.execute("INSERT INTO public.user_stories (title) SELECT 's' FROM generate_series(1, 40)")
    migrated_db.execute("UPDATE global_stats SET total_stories = 3")
    procs = [popen_genisss("sync", "--json", dsn=migrated_db.dsn) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    results = sorted((json.loads(o)["old_count"], json.loads(o)["difference"]) for o, _ in outs)
    assert results == [(3, 37), (40, 0)]  # the second waited for the first, and found nothing to do
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == 40


def test_migrate_down_while_a_watch_is_connected(migrated_db, popen_genisss, genisss):
    """watch holds no lock while it listens: migrate down goes through at once;
    watch is not disturbed, and follows the counter again after migrate up."""
    watch = WatchReader(popen_genisss("watch", "--json", dsn=migrated_db.dsn))
    wait_for(lambda: watch.err, what="watch to connect")
    migrated_db.execute("SELECT increment_story_counter()")
    wait_for(lambda: watch.pairs, what="the first change")
    r = genisss("migrate", "down", "baseline", "--yes", "--lock-timeout", "5", dsn=migrated_db.dsn)
    assert r.code == 0 and "downgraded" in r.out, r.err
    assert migrated_db.scalar("SELECT to_regclass('public.global_stats')") is None
    r = genisss("migrate", "up", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    migrated_db.execute("INSERT INTO public.user_stories (title) VALUES ('x'), ('y')")
    migrated_db.execute("SELECT increment_story_counter()")  # the row restarted at count(*) = 0
    wait_for(lambda: watch.pairs[-1] == (1, 0), what="watch to follow the new row")
    assert watch.proc.poll() is None  # still running
    assert watch.stop() == 0
    assert "Traceback" not in "".join(watch.err)


def test_migrate_down_while_a_worker_transaction_holds_the_row(migrated_db, genisss):
    """A worker's increment not yet committed: a migrate down that must lock
    the table (down to 033: 034's trigger goes) waits for its lock timeout,
    not longer, and changes nothing (exit 8). Reverting 036 alone replaces a
    function and needs no table lock."""
    with migrated_db.connect(autocommit=False) as worker:
        worker.execute("SELECT increment_story_counter()")
        r = genisss("migrate", "down", "033_global_stats_realtime", "--yes", "--lock-timeout", "1",
                    dsn=migrated_db.dsn)
        worker.commit()
    assert r.code == 8 and "nothing was changed" in r.err, r.err
    assert migrated_db.scalar("SELECT version_num FROM alembic_version") == schema.HEAD
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == 1


def test_migrate_up_twice_while_a_worker_increments(migrated_db, popen_genisss):
    """Two operators re-apply 033 (recorded at baseline, as after a hand
    rollback of the revision) while the worker increments: both finish, one
    applies and one finds it done; every increment that succeeded is counted."""
    migrated_db.execute("UPDATE alembic_version SET version_num = 'baseline'")
    stop = threading.Event()
    ok, failed = [0], [0]

    def work():
        with psycopg.connect(migrated_db.dsn, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    conn.execute("SELECT increment_story_counter()")
                    ok[0] += 1
                except psycopg.Error:
                    failed[0] += 1  # the worker skips a failed increment

    t = threading.Thread(target=work, daemon=True)
    t.start()
    wait_for(lambda: ok[0] > 50, what="the worker")
    procs = [popen_genisss("migrate", "up", "--json", dsn=migrated_db.dsn) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    wait_for(lambda: ok[0] > 100, what="the worker, after")
    stop.set()
    t.join(30)
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted('"changed": true' in o for o, _ in outs) == [False, True]
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == ok[0]
    print(f"\nincrements during the re-migration: {ok[0]} ok, {failed[0]} failed")
