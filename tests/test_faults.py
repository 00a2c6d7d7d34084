"""Nothing hangs and nothing is half done: a server that never answers, a
frozen server, and a server stopped (pg_ctl stop -m immediate) in the middle
of migrate up, sync, bump and watch.

Every test that stops or freezes a server uses its own throwaway embedded
cluster (reliability.Cluster), never the shared ones.
"""

from __future__ import annotations

import json
import threading
import uuid

import psycopg
import pytest
from conftest import migrate_up
from reliability import (
    COMMAND_ARGS,
    Cluster,
    SilentServer,
    WatchReader,
    assert_consistent,
    wait_for,
    waiting_on_lock,
)

from genisss_cli.core import schema
from genisss_cli.core.watch import listen, read_row

SECRET = "Fault-Pa55word"
GUARD = 60  # seconds: a command still running after this is hung (a guard, not a timing)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("faults"))
    yield c
    c.close()


@pytest.fixture
def db(cluster):
    """A fresh, migrated database on the throwaway cluster: its DSN."""
    dsn = cluster.create_db(f"f_{uuid.uuid4().hex[:10]}")
    migrate_up(dsn)
    return dsn


def q(dsn: str, query: str, params=None):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchone() if cur.description else None


def finish(proc, timeout: float = GUARD):
    """(code, out, err) of a background genisss; fails the test if it hangs."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except Exception:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"genisss {proc.args[3:]} still running after {timeout} s: {err[-500:]}")
    return proc.returncode, out, err


def one_line(err: str) -> str:
    """The one error line; with --json it is a JSON object (error, exit, hint)."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err and SECRET not in err
    assert len(lines) == 1, err
    if lines[0].startswith("{"):
        error = json.loads(lines[0])
        assert set(error) == {"error", "exit", "hint"}, err
        return f"genisss: error: {error['error']}"
    assert lines[0].startswith("genisss: error: "), err
    return lines[0]


# -- servers that do not answer --------------------------------------------------------------------


def test_a_server_that_never_answers(popen_genisss):
    """Accepts the connection, then silence: every command gives up after the
    connect timeout (the option, or GENISSS_CONNECT_TIMEOUT) with exit 4."""
    with SilentServer() as silent:
        procs = {}
        for i, (name, args) in enumerate((n, a[0]) for n, a in COMMAND_ARGS.items()):
            if i % 2:
                procs[name] = popen_genisss("--connect-timeout", "1", *name.split(), *args,
                                            dsn=silent.dsn(SECRET))
            else:
                procs[name] = popen_genisss(*name.split(), *args, dsn=silent.dsn(SECRET),
                                            env={"GENISSS_CONNECT_TIMEOUT": "1"})
        results = {name: finish(p) for name, p in procs.items()}
        assert silent.accepted >= 9
    for name, (code, out, err) in results.items():
        if name in ("migrate sql", "db url"):  # they need no server
            assert code == 0 and SECRET not in out + err, (name, err)
        elif name == "db psql":  # psql words its own timeout, then genisss's line
            assert code == 4 and SECRET not in out + err, (name, code, err)
            assert err.strip().splitlines()[-1].startswith("genisss: error: psql could not connect")
        elif name == "db stop":  # the embedded server only, whatever the URL: not running here
            assert code == 0 and out == "was not running\n", (name, out, err)
        elif name.startswith("db ") or name == "demo":  # the other embedded-only ones refuse a URL
            assert code == 2, (name, err)
        else:
            assert code == 4, (name, code, err)
            assert "within the connect timeout" in one_line(err), (name, err)


def test_a_frozen_server_before_the_command(cluster, db, popen_genisss):
    """SIGSTOP on the postmaster and every backend: the kernel still accepts the
    connection on the socket, nobody answers; each command gives up (exit 4)."""
    commands = [n for n in COMMAND_ARGS if not n.startswith("db ") and n not in ("migrate sql", "demo")]
    with cluster.frozen():
        procs = {n: popen_genisss("--connect-timeout", "1", *n.split(), *COMMAND_ARGS[n][0], dsn=db)
                 for n in commands}
        results = {n: finish(p) for n, p in procs.items()}
    for name, (code, _out, err) in results.items():
        assert code == 4 and "within the connect timeout" in one_line(err), (name, code, err)
    assert q(db, "SELECT total_stories FROM global_stats") == (0,)  # and it answers again


def _hold_row_lock(dsn: str):
    """A worker transaction that incremented and has not committed: it holds
    the counter's row lock."""
    holder = psycopg.connect(dsn)
    holder.execute("SELECT increment_story_counter()")
    return holder


def test_a_server_that_freezes_in_the_middle_of_a_command(cluster, db, popen_genisss):
    """A command already waiting on the server when it freezes gives up after
    GENISSS_QUERY_TIMEOUT (exit 4), instead of waiting for ever."""
    holder = _hold_row_lock(db)
    lock = psycopg.connect(db, autocommit=True)
    lock.execute("SELECT pg_advisory_lock(%s)", [schema.MIGRATE_LOCK])
    try:
        env = {"GENISSS_QUERY_TIMEOUT": "2"}
        sync = popen_genisss("sync", dsn=db, env=env)  # waits for the row lock
        up = popen_genisss("migrate", "up", "--lock-timeout", "120", dsn=db, env=env)  # the advisory lock
        wait_for(lambda: q(db, "SELECT count(*) = 2 FROM pg_stat_activity WHERE application_name = "
                               "'genisss' AND wait_event_type = 'Lock'")[0], what="both waiting")
        with cluster.frozen():
            results = {"sync": finish(sync), "migrate up": finish(up)}
    finally:
        lock.close()
        holder.rollback()
        holder.close()
    for name, (code, _out, err) in results.items():
        assert code == 4, (name, err)
        assert "no answer from the server within 2 s" in one_line(err), (name, err)
    assert q(db, "SELECT total_stories FROM global_stats") == (0,)


def test_a_server_that_freezes_during_a_bump(cluster, db, popen_genisss):
    """bump's own fast path (libpq's prepared statement) is bounded the same way."""
    bump = popen_genisss("bump", "story", "--count", "1000000", dsn=db, env={"GENISSS_QUERY_TIMEOUT": "2"})
    wait_for(lambda: q(db, "SELECT total_stories >= 100 FROM global_stats")[0], what="bump to run")
    with cluster.frozen():
        code, _out, err = finish(bump)
    assert code == 4 and "no answer from the server within 2 s" in one_line(err), err


# -- a server stopped in the middle ----------------------------------------------------------------


def test_server_stops_in_the_middle_of_migrate_up(cluster, popen_genisss, genisss):
    """The migration has created global_stats (in its transaction) and waits
    for user_stories: the server stops. After the restart the database holds
    none of it, and a rerun applies all of it."""
    dsn = cluster.create_db(f"f_{uuid.uuid4().hex[:10]}")
    q(dsn, "CREATE TABLE public.user_stories (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
           "title text)")
    q(dsn, "INSERT INTO public.user_stories (title) SELECT 'story' FROM generate_series(1, 1323)")
    blocker = psycopg.connect(dsn)
    blocker.execute("LOCK TABLE public.user_stories IN ACCESS EXCLUSIVE MODE")
    up = popen_genisss("migrate", "up", "--lock-timeout", "120", dsn=dsn)
    wait_for(lambda: waiting_on_lock(dsn), what="migrate up to wait for user_stories")
    # It got that far: global_stats exists in its (uncommitted) transaction.
    cluster.crash()
    code, _out, err = finish(up)
    blocker.close()
    assert code == 4 and "connection" in one_line(err), err
    cluster.start()
    assert assert_consistent(dsn) is None
    assert q(dsn, "SELECT to_regclass('public.alembic_version')") == (None,)
    assert q(dsn, "SELECT count(*) FROM public.user_stories") == (1323,)
    r = genisss("migrate", "up", dsn=dsn)
    assert r.code == 0, r.err
    assert assert_consistent(dsn) == schema.HEAD
    assert q(dsn, "SELECT total_stories FROM global_stats") == (1323,)


def test_server_stops_in_the_middle_of_sync(cluster, db, popen_genisss, genisss):
    """sync_story_counter() holds the counter's row and counts user_stories
    (kept waiting by a lock): the server stops. After the restart the counter
    is as it was, and a rerun syncs it."""
    q(db, "INSERT INTO public.user_stories (title) SELECT 'story' FROM generate_series(1, 50)")
    q(db, "UPDATE global_stats SET total_stories = 7")
    blocker = psycopg.connect(db)
    blocker.execute("LOCK TABLE public.user_stories IN ACCESS EXCLUSIVE MODE")
    sync = popen_genisss("sync", "--json", dsn=db)
    wait_for(lambda: waiting_on_lock(db), what="sync to wait for user_stories")
    cluster.crash()
    code, _out, err = finish(sync)
    blocker.close()
    assert code == 4, err
    one_line(err)
    cluster.start()
    assert q(db, "SELECT total_stories FROM global_stats") == (7,)  # none of it
    r = genisss("sync", "--json", dsn=db)
    assert r.code == 0, r.err
    assert json.loads(r.out)["old_count"] == 7 and json.loads(r.out)["new_count"] == 50
    assert q(db, "SELECT total_stories FROM global_stats") == (50,)


def test_server_stops_in_the_middle_of_bump(cluster, db, popen_genisss, genisss):
    """bump --count is many transactions: the server stops after some of them.
    Every increment that was acknowledged survives the crash (none is lost),
    none is counted twice, and a rerun adds exactly its count."""
    listener = psycopg.connect(db, autocommit=True)
    listen(listener)
    bump = popen_genisss("bump", "story", "--count", "1000000", dsn=db)
    wait_for(lambda: q(db, "SELECT total_stories >= 1000 FROM global_stats")[0], what="1000 bumps")
    seen = []
    for _ in range(3):  # each hint, then the row it points at
        assert list(listener.notifies(timeout=1, stop_after=1))
        seen.append(read_row(listener).total_stories)
    cluster.crash()
    code, _out, err = finish(bump)
    assert code == 4 and "connection" in one_line(err), err
    listener.close()
    cluster.start()
    after = q(db, "SELECT total_stories FROM global_stats")[0]
    assert seen and after >= max(seen) >= 1000  # committed and notified: still there
    assert seen == sorted(seen)
    r = genisss("bump", "story", "--count", "1000", "--json", dsn=db)
    assert r.code == 0, r.err
    assert q(db, "SELECT total_stories FROM global_stats") == (after + 1000,)


def _acknowledged_survive(cluster, db: str, *, workers: int, crashes: int) -> tuple[int, int]:
    """Workers increment and count what they saw commit; the server crashes
    under them `crashes` times. Of the acknowledged increments none is lost;
    at most the one in flight per worker per crash may or may not count."""
    acked = [0] * workers
    stop = threading.Event()

    def work(i):
        while not stop.is_set():
            try:
                with psycopg.connect(db, autocommit=True, connect_timeout=2) as conn:
                    while not stop.is_set():
                        conn.execute("SELECT increment_story_counter()").fetchone()
                        acked[i] += 1
            except psycopg.OperationalError:
                stop.wait(0.1)  # the server is down: retry, as a worker's job queue would

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    for n in range(crashes):
        wait_for(lambda n=n: sum(acked) >= 300 * (n + 1), what="increments")
        cluster.restart()
    wait_for(lambda: sum(acked) >= 300 * (crashes + 1), what="increments after the last restart")
    stop.set()
    for t in threads:
        t.join(GUARD)
    after = q(db, "SELECT total_stories FROM global_stats")[0]
    assert sum(acked) <= after <= sum(acked) + workers * crashes
    return sum(acked), after


def test_acknowledged_increments_survive_a_crash(cluster, db):
    _acknowledged_survive(cluster, db, workers=2, crashes=1)


@pytest.mark.soak
def test_soak_acknowledged_increments_survive_ten_crashes(cluster, db):
    acked, after = _acknowledged_survive(cluster, db, workers=8, crashes=10)
    print(f"\nsoak: 10 crashes under 8 workers: {acked} increments acknowledged, {after} counted")


def test_watch_keeps_going_across_three_restarts(cluster, db, popen_genisss):
    """Three crashes in a row while `watch --json` follows the counter: it
    reconnects each time and ends on the right total."""
    _watch_across(cluster, db, popen_genisss, 3)


@pytest.mark.soak
def test_soak_watch_keeps_going_across_twenty_restarts(cluster, db, popen_genisss):
    _watch_across(cluster, db, popen_genisss, 20)


def _watch_across(cluster, db: str, popen_genisss, restarts: int) -> None:
    watch = WatchReader(popen_genisss("watch", "--json", dsn=db))
    wait_for(lambda: any("watching" in ln for ln in watch.err), what="watch to start")
    expected = 0
    for round_ in range(restarts):
        for _ in range(5):
            expected = q(db, "SELECT increment_story_counter()")[0]
        wait_for(lambda n=expected: watch.totals and watch.totals[-1][0] == n, what=f"round {round_}")
        cluster.restart()
        expected = q(db, "SELECT increment_story_counter()")[0]  # while watch is reconnecting, or after
        wait_for(lambda n=expected: watch.totals and watch.totals[-1][0] == n, what=f"catch up {round_}")
    assert expected == 6 * restarts
    code = watch.stop()
    assert code == 0, "".join(watch.err)
    assert sum("reconnected" in ln for ln in watch.err) >= restarts, watch.err
    assert "Traceback" not in "".join(watch.err)
    stories = [t for t, _ in watch.totals]
    assert stories == sorted(stories) and stories[-1] == expected  # never backwards, nothing lost
