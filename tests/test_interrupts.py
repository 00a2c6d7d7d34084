"""The interrupt policy (genisss_cli/interrupts.py) where the other tests do
not reach it: Ctrl-C before the command line is even loaded, Ctrl-C while a
one-shot command waits for the server, and the handlers left as they were.
bump's and watch's own handling is in test_counters.py and test_watch.py."""

import signal
import subprocess
import sys
import threading
import time

from genisss_cli.core import counters
from tests.conftest import clean_env


def test_ctrl_c_while_genisss_is_still_importing_ends_quietly(tmp_path):
    """The signal arrives while the console script imports Typer: one line, exit 130."""
    code = """if True:
        import os, signal, sys

        class CtrlCOnTyper:  # Ctrl-C at the moment `import typer` starts
            def find_spec(self, name, path=None, target=None):
                if name == "typer":
                    os.kill(os.getpid(), signal.SIGINT)
                return None

        sys.meta_path.insert(0, CtrlCOnTyper())
        sys.argv = ["genisss", "--help"]
        from genisss_cli.entry import main
        main()
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=clean_env(tmp_path), cwd=tmp_path)
    assert r.returncode == 130, r.stderr
    assert r.stderr == "genisss: interrupted\n"
    assert r.stdout == ""


def test_ctrl_c_while_a_command_waits_for_the_server_changes_nothing(migrated_db, popen_genisss):
    """sync waits for the counter's row lock; Ctrl-C cancels it: exit 130, one
    line, the counter as it was, and genisss's session gone from the server."""
    migrated_db.execute("INSERT INTO user_stories (title) VALUES ('a'), ('b'), ('c')")
    waiting = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'genisss' "
               "AND datname = current_database()")
    with migrated_db.connect(autocommit=False) as holder:
        holder.execute("SELECT 1 FROM global_stats WHERE id = 'singleton' FOR UPDATE")
        proc = popen_genisss("sync", "--lock-timeout", "60", dsn=migrated_db.dsn)
        deadline = time.monotonic() + 60
        while migrated_db.scalar(waiting + " AND wait_event_type = 'Lock'") == 0:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        holder.rollback()
    assert proc.returncode == 130, err
    assert err == "genisss: interrupted\n" and out == ""
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == 0
    deadline = time.monotonic() + 10
    while migrated_db.scalar(waiting) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert migrated_db.scalar(waiting) == 0


def test_bump_leaves_the_signal_handlers_as_it_found_them(migrated_db):
    """On the main thread bump handles Ctrl-C while it runs, and gives the
    handler back; on another thread it installs nothing."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with migrated_db.connect() as conn:
        assert counters.bump(conn, "story", 50).bumped == 50
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
        seen = []

        def on_a_thread():
            seen.append(counters.bump(conn, "story", 50).bumped)

        worker = threading.Thread(target=on_a_thread)
        worker.start()
        worker.join(60)
    assert seen == [50]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == 100
