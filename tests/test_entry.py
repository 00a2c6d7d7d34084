"""The console script's quick exit (genisss_cli.entry: skip_teardown, then
exit_now): it skips Python's teardown, and must lose nothing by it: not the
output, not an atexit handler, not a running thread, not a clean goodbye to
the server."""

import subprocess
import sys
import time

from tests.conftest import clean_env


def python(tmp_path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=clean_env(tmp_path), cwd=tmp_path)


def test_buffered_output_and_atexit_handlers_survive(tmp_path):
    # stdout is a pipe here, so block-buffered: nothing is written until a flush.
    r = python(tmp_path, """if True:
        import atexit, sys
        from genisss_cli.entry import exit_now, skip_teardown
        skip_teardown()
        atexit.register(lambda: print("atexit ran"))
        print("x" * 100_000, end="")
        print("the last line")
        sys.stderr.write("on stderr")
        exit_now(5)
    """)
    assert r.returncode == 5
    assert r.stdout.startswith("x" * 100_000)
    assert r.stdout.endswith("the last line\natexit ran\n")
    assert r.stderr == "on stderr"


def test_a_running_thread_is_waited_for(tmp_path):
    r = python(tmp_path, """if True:
        import threading, time
        from genisss_cli.entry import exit_now, skip_teardown
        skip_teardown()
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread done"))).start()
        exit_now(0)
    """)
    assert r.returncode == 0
    assert r.stdout == "thread done\n"


def test_large_output_arrives_whole_through_a_pipe(genisss):
    r = genisss("migrate", "sql")
    assert r.code == 0, r.err
    assert len(r.out) > 5_000
    assert r.out.rstrip().endswith("COMMIT;")


class Sessions:
    """sessions and sessions_abandoned (the client went without saying goodbye)
    of a database, read on one open connection (so that reading adds none)."""

    QUERY = ("SELECT sessions, sessions_abandoned FROM pg_stat_database "
             "WHERE datname = current_database()")

    def __init__(self, db):
        self.conn = db.connect()

    def read(self) -> tuple[int, int]:
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        return self.conn.execute(self.QUERY).fetchone()

    def after(self, before: tuple[int, int], ended: int) -> tuple[int, int]:
        """Once `ended` more sessions are counted (backends report as they exit)."""
        deadline = time.monotonic() + 10
        while (now := self.read())[0] - before[0] < ended and time.monotonic() < deadline:
            time.sleep(0.1)
        return now


def test_commands_end_their_sessions_cleanly(migrated_db, genisss, tmp_path):
    stats = Sessions(migrated_db)
    before = stats.read()
    commands = (("status",), ("drift", "--json"), ("bump", "story", "--count", "3"), ("check",))
    for args in commands:
        r = genisss(*args, dsn=migrated_db.dsn)
        assert r.code in (0, 1), (args, r.err)
    after = stats.after(before, len(commands))
    assert after[0] - before[0] >= len(commands)  # the commands' sessions were counted ...
    assert after[1] == before[1]  # ... and none was abandoned

    # The measure can fail: a client that exits without closing is counted.
    r = python(tmp_path, f"""if True:
        import os, psycopg
        conn = psycopg.connect({migrated_db.dsn!r})
        os._exit(0)
    """)
    assert r.returncode == 0, r.stderr
    assert stats.after(after, 1)[1] == before[1] + 1
    stats.conn.close()
