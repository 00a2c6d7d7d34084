"""Each broken state of the counter gets its own fix, the same from `watch` and
`check` (core/checks/fixes.py), and the fix works: break the database, see the
exact hint through the CLI (text and --json), apply it, see it healthy.

While watching, a counter that breaks is shown as gone with its fix, and
watch resumes when it is back (or exits 5 with --exit-on-gone).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import clean_env
from test_watch import Watch, bump

from genisss_cli.core.checks import fixes

VENV_BIN = Path(sys.executable).parent


def one_line(text: str) -> str:
    return " ".join(text.split())


def apply_fix(db, fix: str, genisss, tmp_path) -> None:
    """As the operator would: SQL through the database, a genisss command in a shell."""
    if not fix.startswith("genisss "):
        db.execute(fix)
        return
    if fix.startswith(fixes.REPAIR) and genisss("migrate", "repair", "--help").code != 0:
        pytest.skip("`genisss migrate repair` is not in this build (another branch builds it)")
    env = clean_env(tmp_path, DATABASE_URL=db.dsn, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(["bash", "-o", "pipefail", "-c", fix], env=env, cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)


def check_rows(genisss, db) -> tuple[int, dict]:
    r = genisss("check", "--json", dsn=db.dsn)
    assert r.err == "", r.err
    return r.code, {row["name"]: row for row in json.loads(r.out)["checks"]}


def failing(rows) -> set[str]:
    return {n for n, row in rows.items() if row["status"] == "fail"} - {"wal_level"}  # the server's


# state -> (how to break it, the check row that fails, its fix, whether watch refuses to start)
STATES = {
    "the row deleted": ("DELETE FROM global_stats", "table", fixes.missing_row(True), True),
    "the trigger disabled": ("ALTER TABLE global_stats DISABLE TRIGGER global_stats_notify", "trigger",
                             fixes.disabled_trigger("global_stats_notify"), True),
    "the NOTIFY function dropped": ("DROP FUNCTION global_stats_notify() CASCADE", "trigger",
                                    fixes.REPAIR, True),
    "the trigger dropped": ("DROP TRIGGER global_stats_notify ON global_stats", "trigger",
                            fixes.missing_notify_trigger(), True),
    "two rows 'singleton'": ("ALTER TABLE global_stats DROP CONSTRAINT global_stats_pkey; "
                             "INSERT INTO global_stats (id) VALUES ('singleton')", "table",
                             fixes.duplicate_singletons(), True),
    "a second row": ("ALTER TABLE global_stats DROP CONSTRAINT global_stats_singleton; "
                     "INSERT INTO global_stats (id) VALUES ('second')", "table", fixes.extra_rows(), False),
    "the table out of the publication": ("ALTER PUBLICATION supabase_realtime DROP TABLE global_stats",
                                         "publication", fixes.not_published("supabase_realtime"), False),
}


@pytest.mark.parametrize("state", list(STATES))
def test_each_state_has_its_fix_in_watch_and_check(state, migrated_db, genisss, tmp_path):
    db = migrated_db
    sql, row, fix, refuses = STATES[state]
    db.execute(sql)

    code, rows = check_rows(genisss, db)
    assert code == 1 and row in failing(rows), rows
    assert fix.rstrip(";") in rows[row]["fix"], rows[row]
    assert "migrate up" not in rows[row]["fix"]
    text = genisss("check", dsn=db.dsn, env={"COLUMNS": "80"})
    assert one_line(fix) in one_line(text.out), text.out

    js = genisss("watch", "--json", "--timeout", "0.3", dsn=db.dsn)
    tx = genisss("watch", "--timeout", "0.3", dsn=db.dsn)
    if refuses:
        assert (js.code, tx.code) == (5, 5), (js, tx)
        assert js.out == "" and tx.out == ""
        err = json.loads(js.err)
        assert err["exit"] == 5 and err["hint"] == f"fix: {fix}", err
        assert one_line(tx.err) == one_line(f"genisss: error: {err['error']} (fix: {fix})")
    else:  # the feed works; watch says what is wrong once, on stderr
        assert (js.code, tx.code) == (0, 0), (js, tx)
        assert "genisss: note: " in js.err and f"(fix: {fix})" in js.err, js.err
        assert f"note: {one_line(js.err.splitlines()[0].removeprefix('genisss: note: '))}" in one_line(
            tx.out), tx.out

    apply_fix(db, fix, genisss, tmp_path)
    if row == "table" and state == "a second row":  # the CHECK constraint, the row's second finding
        db.execute(rows[row]["fix"].split(";\n")[-1])
    _, rows = check_rows(genisss, db)
    assert failing(rows) - {"realtime visibility"} == set(), rows
    assert rows[row]["status"] == "pass"
    r = genisss("watch", "--json", "--timeout", "0.3", dsn=db.dsn)
    assert r.code == 0 and "note:" not in r.err, r.err
    with db.connect() as conn:  # and a change arrives again
        assert conn.execute("SELECT count(*) FROM global_stats").fetchone()[0] == 1


def test_check_names_repair_for_a_dropped_function(migrated_db, genisss):
    migrated_db.execute("DROP FUNCTION increment_audio_counter()")
    _, rows = check_rows(genisss, migrated_db)
    assert rows["functions"]["fix"] == fixes.REPAIR


# -- while watching -----------------------------------------------------------------------


@pytest.fixture
def start_watch(popen_genisss):
    def start(*args, dsn: str) -> Watch:
        return Watch(popen_genisss("watch", *args, dsn=dsn))

    return start


GONE = {  # how the counter goes away under a running watch, and what brings it back
    "the row deleted": ("DELETE FROM global_stats", "no 'singleton' row", fixes.missing_row(True)),
    "the trigger disabled": ("ALTER TABLE global_stats DISABLE TRIGGER global_stats_notify",
                             "is disabled", fixes.disabled_trigger("global_stats_notify")),
    "the migration reverted": (None, "migration 033 is not applied (at revision baseline)",
                               fixes.MIGRATE_UP),
}


@pytest.mark.parametrize("how", list(GONE))
def test_watch_says_gone_and_resumes(how, migrated_db, genisss, start_watch, tmp_path):
    db = migrated_db
    sql, what, fix = GONE[how]
    w = start_watch("--json", dsn=db.dsn)
    w.wait_ready()
    with db.connect() as conn:
        bump(conn)
    w.wait_out(lambda c: c["total_stories"] == 1, "the first bump")
    if sql:
        db.execute(sql)
    else:
        assert genisss("migrate", "down", "baseline", "--yes", dsn=db.dsn).code == 0
    w.wait_err("waiting for it to come back")
    line = next(x for x in w.err if "waiting for it to come back" in x)
    assert what in line and f"(fix: {fix})" in line, line
    apply_fix(db, fix, genisss, tmp_path)
    w.wait_err("global_stats is back")
    with db.connect() as conn:
        value = bump(conn)
    w.wait_out(lambda c: c["total_stories"] == value and not c["resync"], "the bump after it came back")
    assert w.proc.poll() is None
    w.proc.send_signal(signal.SIGINT)
    assert w.finish() == 0, w.err
    assert w.summary()["reason"] == "interrupted"


def test_exit_on_gone_exits_5_with_the_fix(migrated_db, start_watch):
    db = migrated_db
    w = start_watch("--json", "--exit-on-gone", dsn=db.dsn)
    w.wait_ready()
    db.execute("ALTER TABLE global_stats DISABLE TRIGGER global_stats_notify")
    assert w.finish() == 5
    err = json.loads(w.err[-1])
    assert err == {"error": "the NOTIFY trigger global_stats_notify is disabled: no change would arrive",
                   "exit": 5, "hint": f"fix: {fixes.disabled_trigger('global_stats_notify')}"}
    assert json.loads(w.err[-2])["summary"]["reason"] == "gone"
    assert not any("waiting for it" in x for x in w.err)


@pytest.mark.parametrize("row, breaks", [
    ("functions", "DROP FUNCTION increment_story_counter()"),
    ("table", "DROP TABLE global_stats CASCADE"),
])
def test_below_head_a_lost_object_is_repaired_not_migrated(migrated_db, genisss, tmp_path, row, breaks):
    """migrate up runs only what is not applied yet: at 035 it would not make
    033's objects again, so the fix there is repair, and it works."""
    from genisss_cli.core import schema

    assert genisss("migrate", "down", schema.BROADCAST, "--yes", dsn=migrated_db.dsn).code == 0
    migrated_db.execute(breaks)
    r = genisss("check", "--json", "--no-realtime", dsn=migrated_db.dsn)
    found = {c["name"]: c for c in json.loads(r.out)["checks"]}[row]
    assert found["status"] == "fail" and found["fix"] == fixes.REPAIR, found
    apply_fix(migrated_db, found["fix"], genisss, tmp_path)
    r = genisss("check", "--json", "--no-realtime", dsn=migrated_db.dsn)
    assert {c["name"]: c for c in json.loads(r.out)["checks"]}[row]["status"] == "pass", r.out
    assert migrated_db.scalar("SELECT version_num FROM alembic_version") == schema.BROADCAST
