"""genisss capacity through the CLI: the arithmetic against each plan, the exit
code, and the write rate measured on a real database while the test bumps it."""

import json
import threading
import time

import pytest

from genisss_cli.core import capacity

NOWHERE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"  # never reached with W given


def run(genisss, *args, dsn=NOWHERE):
    r = genisss("capacity", "--json", *args, dsn=dsn)
    assert r.err == "", r.err
    return r.code, json.loads(r.out)


def paths(data) -> dict:
    return {p["path"]: p for p in data["paths"]}


def test_broadcast_fits_and_the_arithmetic_is_writes_times_viewers(genisss):
    code, data = run(genisss, "--viewers", "150", "--writes-per-second", "0.5")
    assert code == 0
    assert data["plan"] == {"name": "free", "connections": 200, "messages_per_second": 100}
    assert data["chosen"] == "broadcast" and data["fits"] is True and data["measured"] is None
    assert list(paths(data)) == ["postgres_changes", "broadcast"]
    for p in data["paths"]:
        assert p["messages_per_second"] == 75 and p["sends_per_second"] == 0.5
        assert p["messages_fit"] and p["connections_fit"] and p["fits"]
    assert data["largest_rate"] == 0  # floor(100 / 150): one message a second to each is too many


def test_over_the_quota_is_a_finding_and_coalescing_fits(genisss):
    code, data = run(genisss, "--viewers", "300", "--plan", "pro", "--writes-per-second", "4")
    assert code == 1 and data["fits"] is False
    assert paths(data)["broadcast"]["messages_per_second"] == 1200
    assert not paths(data)["broadcast"]["messages_fit"] and paths(data)["broadcast"]["connections_fit"]
    assert data["largest_rate"] == 1  # floor(500 / 300)

    code, data = run(genisss, "--viewers", "300", "--plan", "pro", "--writes-per-second", "4", "--rate", "1")
    assert code == 0 and data["chosen"] == "broadcast_coalesced" and data["fits"] is True
    coalesced = paths(data)["broadcast_coalesced"]
    assert coalesced["sends_per_second"] == 1 and coalesced["messages_per_second"] == 300
    code, data = run(genisss, "--viewers", "300", "--plan", "pro", "--writes-per-second", "0.5",
                     "--rate", "2")
    assert paths(data)["broadcast_coalesced"]["messages_per_second"] == 150  # min(W, R) x viewers


def test_more_viewers_than_connections_never_fits(genisss):
    code, data = run(genisss, "--viewers", "501", "--plan", "pro", "--writes-per-second", "0.1",
                     "--rate", "0.1")
    assert code == 1
    for p in data["paths"]:
        assert p["messages_fit"] and not p["connections_fit"] and not p["fits"]


@pytest.mark.parametrize("plan", list(capacity.PLANS))
def test_each_plan_limits(plan, genisss):
    expected = {"free": (200, 100), "pro": (500, 500), "pro-nocap": (10_000, 2_500),
                "team": (10_000, 2_500)}[plan]
    _, data = run(genisss, "--viewers", "100", "--plan", plan, "--writes-per-second", "1")
    assert (data["plan"]["connections"], data["plan"]["messages_per_second"]) == expected
    assert data["largest_rate"] == expected[1] // 100


def test_text_output_for_people(genisss):
    r = genisss("capacity", "--viewers", "300", "--plan", "pro", "--writes-per-second", "4", "--rate", "1",
                dsn=NOWHERE)
    assert r.code == 0 and r.err == ""
    out = " ".join(r.out.split())
    for text in ("pro: 500 connections, 500 messages/s", "Postgres Changes", "1,200 of 500",
                 "Broadcast coalesced at 1/s", "300 of 500", "floor(500 / 300) = 1",
                 "to coalesce: genisss broadcast --max-per-second", "Broadcast coalesced: fits"):
        assert text in out, (text, r.out)


def test_usage_errors(genisss):
    assert genisss("capacity", "--writes-per-second", "1").code == 2  # --viewers is required
    r = genisss("capacity", "--viewers", "10", "--plan", "gold", "--writes-per-second", "1")
    assert r.code == 2 and "free, pro, pro-nocap, team" in r.err
    assert genisss("capacity", "--viewers", "0", "--writes-per-second", "1").code == 2
    assert genisss("capacity", "--viewers", "10", "--writes-per-second", "nan").code == 2


def test_measures_the_write_rate_while_the_counter_is_bumped(migrated_db, popen_genisss):
    """The test bumps the counter steadily (bounded: it stops when genisss exits,
    at most 60 s) while genisss measures over a 3 s window."""
    proc = popen_genisss("capacity", "--json", "--viewers", "10", "--window", "3", dsn=migrated_db.dsn)
    bumps = 0
    stop = threading.Event()

    def bump():
        nonlocal bumps
        with migrated_db.connect() as conn:
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                conn.execute("SELECT increment_story_counter()")
                bumps += 1
                time.sleep(0.01)

    writer = threading.Thread(target=bump)
    started = time.monotonic()
    writer.start()
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        elapsed = time.monotonic() - started
        stop.set()
        writer.join(60)
    assert proc.returncode in (0, 1), err
    data = json.loads(out)
    m = data["measured"]
    assert m["database"].endswith(migrated_db.name)
    assert 3 <= m["window_seconds"] < 10
    offered = bumps / elapsed
    assert 0 < m["updates"] <= bumps, (m, bumps, elapsed)
    assert 0 < m["increments"] <= bumps
    assert data["writes_per_second"] == pytest.approx(m["updates"] / m["window_seconds"], rel=0.01)
    assert data["writes_per_second"] <= offered * 2, (data["writes_per_second"], offered)
    assert paths(data)["broadcast"]["messages_per_second"] == pytest.approx(data["writes_per_second"] * 10)


def test_measuring_needs_the_migration(fresh_db, genisss):
    r = genisss("capacity", "--viewers", "10", "--window", "0.5", dsn=fresh_db.dsn)
    assert r.code == 5 and "genisss migrate up" in r.err
