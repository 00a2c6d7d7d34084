"""status, bump, drift and sync on real PostgreSQL: what an operator (or cron) sees."""

import json
import signal
import threading
import time

import psycopg
import pytest

from genisss_cli.core import counters, schema

COMMANDS = [("status",), ("bump", "story"), ("drift",), ("sync",)]


def set_runbook_state(db, counted: int = 1323, rows: int = 1325) -> None:
    """The runbook's example: the counter says 1323, user_stories has 1325 rows."""
    db.execute("INSERT INTO user_stories (title) SELECT 'story' FROM generate_series(1, %s)", [rows])
    db.execute("UPDATE global_stats SET total_stories = %s", [counted])


def counter(db) -> int:
    return db.scalar("SELECT total_stories FROM global_stats")


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1


def _every_command() -> list[str]:
    """Every command and group, "" for genisss itself, read from the app as it is now."""
    from reliability import commands

    return ["", "migrate", "db", *commands()]


def test_every_command_is_listed_here():
    from reliability import commands

    assert {c.split()[0] for c in commands() if " " in c} == {"migrate", "db"}


@pytest.mark.parametrize("command", _every_command(), ids=lambda c: c or "genisss")
def test_help_explains_with_an_example(tmp_path, command):
    """Every --help ends with an example of the command itself (docs promise it)."""
    from reliability import run_cli

    run = run_cli([*command.split(), "--help"], cwd=tmp_path)
    assert run.code == 0, run
    text = " ".join(run.out.split())  # Click rewraps the docstring to the terminal's width
    assert "Example: genisss " in text or "Examples: genisss " in text, text
    example = text.split("xample: " if "Example: " in text else "xamples: ", 1)[1]
    assert example.startswith(f"genisss {command}".rstrip()), example
    if command not in ("", "migrate", "db"):
        assert "--json" in text


# -- the runbook's example --------------------------------------------------------------


def test_runbook_drift_then_sync_then_no_drift(migrated_db, genisss):
    set_runbook_state(migrated_db)

    r = genisss("drift", dsn=migrated_db.dsn)
    assert r.code == 1, r.err  # a finding
    assert "1323" in r.out and "1325" in r.out and "-2" in r.out
    assert "run: genisss sync" in r.out

    r = genisss("drift", "--json", dsn=migrated_db.dsn)
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["counters"] == [{"name": "stories", "counter": 1323, "actual": 1325, "drift": -2,
                                "estimated": False, "table": "public.user_stories"}]
    assert doc["ok"] is False and doc["tolerance"] == 0 and doc["estimated"] is False

    r = genisss("sync", "--dry-run", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert (doc["old_count"], doc["new_count"], doc["difference"]) == (1323, 1325, 2)
    assert doc["dry_run"] is True and doc["changed"] is False
    assert counter(migrated_db) == 1323  # nothing changed

    r = genisss("sync", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    assert "old_count" in r.out and "1323" in r.out and "1325" in r.out and "+2" in r.out
    assert counter(migrated_db) == 1325

    r = genisss("drift", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    assert "no drift" in r.out
    doc = json.loads(genisss("drift", "--json", dsn=migrated_db.dsn).out)
    assert doc["counters"][0]["drift"] == 0 and doc["ok"] is True


def test_sync_json_reports_what_the_function_returned(migrated_db, genisss):
    set_runbook_state(migrated_db)
    r = genisss("sync", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc == {"old_count": 1323, "new_count": 1325, "difference": 2, "dry_run": False,
                   "synced": True, "skipped": False, "changed": True}


def test_sync_if_drift_does_nothing_without_drift(migrated_db, genisss):
    set_runbook_state(migrated_db, counted=1325, rows=1325)
    before = migrated_db.scalar("SELECT updated_at FROM global_stats")
    r = genisss("sync", "--if-drift", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    assert "no drift" in r.out and "nothing to do" in r.out
    r = genisss("sync", "--if-drift", "--json", dsn=migrated_db.dsn)
    assert r.code == 0
    assert json.loads(r.out)["skipped"] is True
    assert migrated_db.scalar("SELECT updated_at FROM global_stats") == before  # untouched

    migrated_db.execute("UPDATE global_stats SET total_stories = 1300")
    r = genisss("sync", "--if-drift", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["synced"] is True and doc["difference"] == 25
    assert counter(migrated_db) == 1325


# -- exit codes ----------------------------------------------------------------------------


def test_tolerance(migrated_db, genisss):
    set_runbook_state(migrated_db)  # drift -2
    assert genisss("drift", "--tolerance", "2", dsn=migrated_db.dsn).code == 0
    r = genisss("drift", "--tolerance", "2", "--json", dsn=migrated_db.dsn)
    assert r.code == 0 and json.loads(r.out)["ok"] is True
    assert genisss("drift", "--tolerance", "1", dsn=migrated_db.dsn).code == 1
    r = genisss("drift", "--tolerance", "-1", dsn=migrated_db.dsn)
    assert r.code == 2 and one_line(r.err)


@pytest.mark.parametrize("args", COMMANDS + [("sync", "--if-drift"), ("sync", "--dry-run")])
def test_without_the_migration_says_what_to_run(fresh_db, genisss, args):
    r = genisss(*args, dsn=fresh_db.dsn)
    assert r.code == 5, r.output
    assert one_line(r.err) and "run: genisss migrate up" in r.err
    assert r.out == ""


def test_status_without_the_migration(fresh_db, genisss):
    r = genisss("status", "--json", dsn=fresh_db.dsn)
    assert r.code == 5
    assert "migration 033 is not applied" in r.err and "public.global_stats does not exist" in r.err
    assert "run: genisss migrate up" in r.err


@pytest.mark.parametrize("args", COMMANDS)
def test_no_connection_is_one_line_without_the_password(genisss, args):
    r = genisss(*args, "--json", dsn="postgresql://u:secret@127.0.0.1:1/x")
    assert r.code == 4, r.output
    assert one_line(r.err) and r.out == ""
    assert "secret" not in r.output
    assert "127.0.0.1:1/x" in r.err


@pytest.mark.parametrize("args", COMMANDS)
def test_missing_singleton_row(migrated_db, genisss, args):
    migrated_db.execute("DELETE FROM global_stats")
    r = genisss(*args, dsn=migrated_db.dsn)
    assert r.code == 5, r.output
    assert one_line(r.err) and "singleton" in r.err


# -- status -------------------------------------------------------------------------------


def test_status_shows_the_counter_and_its_context(migrated_db, genisss):
    migrated_db.execute("SELECT increment_story_counter() FROM generate_series(1, 3)")
    migrated_db.execute("SELECT increment_audio_counter()")
    r = genisss("status", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    st = json.loads(r.out)
    assert st["total_stories"] == 3 and st["total_audio_generations"] == 1
    for key in ("last_story_at", "last_audio_at", "updated_at"):
        assert st[key] and st[key][:2] == "20"  # ISO timestamps
    assert st["updated_ago_seconds"] >= 0
    assert st["revision"] == st["head"] == schema.HEAD and st["up_to_date"] is True
    assert st["database"].endswith(migrated_db.name)
    assert st["server_version"][0].isdigit()
    assert st["publication"] == "supabase_realtime"
    # migrate up creates the publication where it may (the tests run as a superuser)
    assert st["publication_exists"] is True and st["in_publication"] is True

    r = genisss("status", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    for text in ("total_stories", "3", f"{schema.HEAD} (head)", "in supabase_realtime",
                 migrated_db.name):
        assert text in r.out
    assert "(just now)" in r.out or " ago)" in r.out


def test_status_reports_missing_publication_membership_and_hand_applied_033(migrated_db, genisss):
    migrated_db.execute("ALTER PUBLICATION supabase_realtime DROP TABLE public.global_stats")
    migrated_db.execute("DELETE FROM alembic_version")
    r = genisss("status", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    st = json.loads(r.out)
    assert st["in_publication"] is False and st["publication_exists"] is True
    assert st["revision"] is None and st["up_to_date"] is False
    r = genisss("status", dsn=migrated_db.dsn)
    assert "not in supabase_realtime" in r.out and "migrate up" in r.out
    st = json.loads(genisss("status", "--publication", "other", "--json", dsn=migrated_db.dsn).out)
    assert st["publication"] == "other" and st["publication_exists"] is False


# -- bump ---------------------------------------------------------------------------------


def test_bump_prints_the_new_value(migrated_db, genisss):
    r = genisss("bump", "story", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    assert r.out.strip() == "total_stories = 1"

    r = genisss("bump", "story", "--count", "250", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["bumped"] == doc["requested"] == 250 and doc["value"] == 251
    assert doc["total_stories"] == 251 and doc["total_audio_generations"] == 0
    assert doc["interrupted"] is False and doc["kind"] == "story"
    assert counter(migrated_db) == 251

    r = genisss("bump", "audio", "-n", "2", "--json", dsn=migrated_db.dsn)
    doc = json.loads(r.out)
    assert r.code == 0 and doc["total_audio_generations"] == doc["value"] == 2
    assert migrated_db.scalar("SELECT last_audio_at IS NOT NULL FROM global_stats")


@pytest.mark.parametrize("args", [("bump", "video"), ("bump", "story", "--count", "0"),
                                  ("bump", "story", "--count", "-5"),
                                  ("bump", "story", "--count", str(counters.MAX_BUMPS + 1))])
def test_bump_rejects_bad_arguments(migrated_db, genisss, args):
    r = genisss(*args, dsn=migrated_db.dsn)
    assert r.code == 2, r.output
    assert one_line(r.err) and r.out == ""
    assert counter(migrated_db) == 0


def test_bump_ctrl_c_stops_after_the_bump_in_flight(migrated_db, popen_genisss):
    proc = popen_genisss("bump", "story", "--count", str(counters.MAX_BUMPS), "--json",
                         dsn=migrated_db.dsn)
    deadline = time.monotonic() + 60
    while counter(migrated_db) < 50:  # the loop (and its Ctrl-C handler) is running
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert doc["interrupted"] is True and doc["in_flight_unknown"] is False
    assert 50 <= doc["bumped"] < counters.MAX_BUMPS
    # Every bump it reported was committed, and none beyond: the one in flight finished.
    assert counter(migrated_db) == doc["bumped"] == doc["total_stories"]
    assert f"interrupted after {doc['bumped']} of {counters.MAX_BUMPS} bumps" in err
    assert one_line(err)


# -- drift: more sources, estimates, the core API ------------------------------------------------


def test_audio_source_is_shown_only_when_given(migrated_db, genisss):
    migrated_db.execute('CREATE SCHEMA "Media"')
    migrated_db.execute('CREATE TABLE "Media"."audio files" (id int)')
    migrated_db.execute('INSERT INTO "Media"."audio files" SELECT generate_series(1, 3)')
    migrated_db.execute("SELECT increment_audio_counter() FROM generate_series(1, 5)")

    r = genisss("drift", "--json", dsn=migrated_db.dsn)
    assert r.code == 0 and [c["name"] for c in json.loads(r.out)["counters"]] == ["stories"]

    r = genisss("drift", "--audio-table", "Media.audio files", "--json", dsn=migrated_db.dsn)
    assert r.code == 1, r.err
    rows = {c["name"]: c for c in json.loads(r.out)["counters"]}
    assert rows["stories"]["drift"] == 0
    assert (rows["audio"]["counter"], rows["audio"]["actual"], rows["audio"]["drift"]) == (5, 3, 2)
    r = genisss("drift", "--audio-table", "Media.audio files", dsn=migrated_db.dsn)
    assert r.code == 1 and "drift in audio" in r.out and "genisss sync" not in r.out


@pytest.mark.parametrize("name", ["user_stories; DROP TABLE user_stories", "no_such_table", "a.b.c", "x."])
def test_bad_audio_table_is_a_usage_error(migrated_db, genisss, name):
    r = genisss("drift", "--audio-table", name, dsn=migrated_db.dsn)
    assert r.code == 2, r.output
    assert one_line(r.err) and ("--audio-table" in r.err or "table name" in r.err)
    assert migrated_db.scalar("SELECT to_regclass('public.user_stories') IS NOT NULL")


def test_estimate_says_it_is_an_estimate(migrated_db, genisss):
    set_runbook_state(migrated_db, counted=1325, rows=1325)
    if migrated_db.server.major >= 14:  # reltuples = -1: never analysed
        r = genisss("drift", "--estimate", "--json", dsn=migrated_db.dsn)
        assert r.code == 0, r.err
        doc = json.loads(r.out)
        assert doc["estimated"] is False and doc["counters"][0]["actual"] == 1325
        assert "never analysed" in doc["notes"][0]

    migrated_db.execute("ANALYZE user_stories")
    r = genisss("drift", "--estimate", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["estimated"] is True and doc["counters"][0]["estimated"] is True
    assert doc["counters"][0]["actual"] == 1325  # ANALYZE read every row of a small table
    r = genisss("drift", "--estimate", dsn=migrated_db.dsn)
    assert "~1325" in r.out and "estimate" in r.out


def test_core_drift_in_one_snapshot_on_either_kind_of_connection(migrated_db):
    set_runbook_state(migrated_db)
    with migrated_db.connect() as conn:  # autocommit, as genisss connects
        report = counters.drift(conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        row = counters.read_row(conn)
    assert [(r.name, r.counter, r.actual, r.drift) for r in report.rows] == [("stories", 1323, 1325, -2)]
    assert not report.ok and counters.DriftReport(report.rows, 2, False).ok
    assert row.total_stories == 1323 and row.last_story_at is None

    with migrated_db.connect(autocommit=False) as conn:  # idle, then inside a caller's transaction
        assert counters.drift(conn, tolerance=2).ok
        conn.execute("SELECT 1")
        assert counters.drift(conn).rows[0].drift == -2


# -- concurrency ---------------------------------------------------------------------------


def test_sync_while_workers_bump_loses_nothing(migrated_db, genisss, popen_genisss):
    workers, bumps = 4, 1500
    migrated_db.execute("INSERT INTO user_stories (title) SELECT 's' FROM generate_series(1, 1000)")
    migrated_db.execute("SELECT sync_story_counter()")
    initial = counter(migrated_db)
    procs = [popen_genisss("bump", "story", "--count", bumps, "--json", dsn=migrated_db.dsn)
             for _ in range(workers)]

    differences: list[int] = []
    cli_syncs: list[dict] = []

    def cli_sync_loop():  # `genisss sync` itself, as cron would run it
        while any(p.poll() is None for p in procs):
            r = genisss("sync", "--json", dsn=migrated_db.dsn)
            assert r.code == 0, r.err
            cli_syncs.append(json.loads(r.out))

    thread = threading.Thread(target=cli_sync_loop)
    thread.start()
    with migrated_db.connect() as conn:
        while any(p.poll() is None for p in procs):
            # stories keep arriving too, and the function syncs in between
            conn.execute("INSERT INTO user_stories (title) VALUES ('new')")
            differences.append(conn.execute("SELECT difference FROM sync_story_counter()").fetchone()[0])
            time.sleep(0.005)
    thread.join(120)
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert json.loads(out)["bumped"] == bumps
    differences += [s["difference"] for s in cli_syncs]
    assert len(differences) > 2 and any(d < 0 for d in differences)  # syncs met bumps

    final = counter(migrated_db)
    # Every increment is either still in the counter or was replaced by a sync's count.
    assert final == initial + workers * bumps + sum(differences)

    r = genisss("sync", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    rows = migrated_db.scalar("SELECT count(*) FROM user_stories")
    assert json.loads(r.out)["new_count"] == rows
    r = genisss("drift", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.output
    assert json.loads(r.out)["counters"][0]["drift"] == 0


def test_bump_leaves_no_guard_behind(migrated_db):
    """bump's fast path runs a guard thread and takes the signal wakeup fd
    (as the old prepared.py had): both are gone when it returns, on the main
    thread and on another one (where Ctrl-C is not bump's to handle)."""
    threads = threading.active_count()
    with migrated_db.connect() as conn:
        assert counters.bump(conn, "story", 300).bumped == 300
        assert threading.active_count() == threads
        assert signal.set_wakeup_fd(-1) == -1  # nothing was left set

        results = []
        worker = threading.Thread(target=lambda: results.append(counters.bump(conn, "story", 200)))
        worker.start()
        worker.join(60)
        assert results and results[0].bumped == 200 and results[0].value == 500
    assert threading.active_count() == threads
    assert counter(migrated_db) == 500


def test_second_ctrl_c_cancels_a_bump_stuck_on_a_lock(migrated_db, popen_genisss):
    proc = popen_genisss("bump", "story", "--count", str(counters.MAX_BUMPS), "--json",
                         dsn=migrated_db.dsn)
    with migrated_db.connect(autocommit=False) as locker:
        deadline = time.monotonic() + 60
        while counter(migrated_db) < 20:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.02)
        locker.execute("SELECT 1 FROM global_stats FOR UPDATE")  # the next bump waits
        held = counter(migrated_db)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # waits for the bump in flight, which waits for the lock
        time.sleep(0.3)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)  # cancels it
        out, err = proc.communicate(timeout=60)
        locker.rollback()
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert doc["interrupted"] is True and doc["in_flight_unknown"] is True
    assert counter(migrated_db) == held == doc["bumped"]  # the cancelled one did not count
    assert "may or may not have counted" in err and one_line(err)


def test_sync_gives_up_on_a_held_row_lock_and_changes_nothing(migrated_db, genisss):
    migrated_db.execute("INSERT INTO user_stories (title) VALUES ('a'), ('b')")
    with migrated_db.connect(autocommit=False) as holder:
        holder.execute("SELECT 1 FROM global_stats WHERE id = 'singleton' FOR UPDATE")
        r = genisss("sync", "--lock-timeout", "1", dsn=migrated_db.dsn)
        holder.rollback()
    assert r.code == 8, r.output
    assert len(r.err.strip().splitlines()) == 1 and "nothing was changed" in r.err
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == 0
    assert genisss("sync", dsn=migrated_db.dsn).code == 0
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == 2
