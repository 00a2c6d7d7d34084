"""`genisss db url --reveal` and `genisss db psql`, on real PostgreSQL and the real psql."""

import json
import os
import shutil
import stat

import pytest
from reliability import run_cli, with_password

SECRET = "Pa55-w0rd-S3cret"
PSQL = shutil.which("psql")
needs_psql = pytest.mark.skipif(PSQL is None, reason="psql (the PostgreSQL client) is not installed")


def test_reveal_prints_the_password_and_only_when_asked(genisss):
    dsn = f"postgresql://u:{SECRET}@db.example:5432/app?sslmode=require"
    r = genisss("db", "url", "--reveal", dsn=dsn)
    assert r.code == 0 and r.out == dsn + "\n" and r.err == ""
    r = genisss("db", "url", "--reveal", "--json", dsn=dsn)
    assert r.code == 0
    assert json.loads(r.out) == {"url": dsn, "source": "--database-url", "embedded": False,
                                 "transaction_pooler": False}
    for args in (["db", "url"], ["db", "url", "--json"]):
        r = genisss(*args, dsn=dsn)
        assert r.code == 0 and SECRET not in r.output and ":***@db.example" in r.out


@needs_psql
def test_psql_runs_on_the_database_in_use(migrated_db, genisss, tmp_path):
    migrated_db.execute("SELECT increment_story_counter() FROM generate_series(1, 3)")
    r = genisss("db", "psql", "--", "-At", "-c", "select total_stories from global_stats",
                dsn=migrated_db.dsn)
    assert r.code == 0, r.output
    assert r.out == "3\n"
    # in process, with streams that are not files: psql's output comes back through render
    run = run_cli(["db", "psql", "--", "-c", "select 1"], env={"DATABASE_URL": migrated_db.dsn},
                  cwd=tmp_path)
    assert run.code == 0 and "(1 row)" in run.out, run


@needs_psql
def test_the_password_goes_through_pgpassword_never_the_command_line(migrated_db, genisss, tmp_path):
    """A psql that writes down how it was started, then is the real one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    probe = bin_dir / "psql"
    probe.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0" "$@" > "{tmp_path}/argv"\n'
                     f'printf "%s" "$PGPASSWORD" > "{tmp_path}/pgpassword"\nexec {PSQL} "$@"\n')
    probe.chmod(probe.stat().st_mode | stat.S_IXUSR)
    for form in ("url", "keywords"):
        dsn = with_password(migrated_db.dsn, SECRET, form)
        r = genisss("db", "psql", "--", "-At", "-c", "select current_database()", dsn=dsn,
                    env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
        assert r.code == 0, r.output
        assert r.out == f"{migrated_db.name}\n" and SECRET not in r.output
        argv = (tmp_path / "argv").read_text()
        assert SECRET not in argv and migrated_db.name in argv, argv
        assert (tmp_path / "pgpassword").read_text() == SECRET


@needs_psql
def test_psql_logs_in_with_the_password_of_the_url(password_login, genisss):
    r = genisss("db", "psql", "--", "-At", "-c", "select current_user",
                dsn=with_password(password_login, "the-right-one"))
    assert r.code == 0 and r.out == "pw_login\n", r.output
    r = genisss("db", "psql", "--", "-c", "select 1", dsn=with_password(password_login, "wrong"))
    assert r.code == 4, r.output
    assert r.err.strip().splitlines()[-1].startswith("genisss: error: psql could not connect")
    assert "wrong" not in r.output


@needs_psql
def test_psql_failures_keep_genisss_exit_codes(migrated_db, genisss):
    r = genisss("db", "psql", "--", "-c", "select * from no_such_table", dsn=migrated_db.dsn)
    assert r.code == 10, r.output
    assert r.err.strip().splitlines()[-1] == (
        "genisss: error: psql exited with status 1 (see psql's message above)")
    r = genisss("db", "psql", "--json", "--", "-c", "select 1", dsn=migrated_db.dsn)
    assert r.code == 2 and json.loads(r.err)["error"] == "db psql has no JSON output"


def test_psql_not_installed_is_a_configuration_error(migrated_db, genisss, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    r = genisss("db", "psql", "--", "-c", "select 1", dsn=migrated_db.dsn, env={"PATH": str(empty)})
    assert r.code == 3, r.output
    assert r.err.strip().splitlines() == [
        "genisss: error: psql is not installed (not found on PATH) "
        "(install the PostgreSQL client, e.g. apt install postgresql-client)"]


@needs_psql
def test_ctrl_c_is_psqls_while_it_runs(migrated_db, popen_genisss):
    """Ctrl-C at a terminal reaches the whole foreground group: psql cancels
    its query (and, interactive, would carry on); genisss neither dies of it
    nor kills psql."""
    import signal
    import time

    proc = popen_genisss("db", "psql", "--", "-c", "select pg_sleep(30)", dsn=migrated_db.dsn,
                         start_new_session=True)
    deadline = time.monotonic() + 30
    while not migrated_db.scalar("SELECT count(*) FROM pg_stat_activity WHERE query = "
                                 "'select pg_sleep(30)' AND state = 'active'"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - started < 10
    assert "canceling statement due to user request" in err, err
    assert proc.returncode == 10, err  # psql's status 1, not genisss's 130
    assert err.strip().splitlines()[-1] == (
        "genisss: error: psql exited with status 1 (see psql's message above)")


@pytest.mark.parametrize("verb", ["start", "status"])
@pytest.mark.parametrize("how, undo", [
    ("option", "leave out --database-url"),
    ("environment", "unset GENISSS_DATABASE_URL"),
    ("dotenv", "remove DATABASE_URL from ./.env (or run from another folder)"),
])
def test_the_embedded_verbs_say_how_to_leave_a_url_behind(genisss, tmp_path, verb, how, undo):
    url = "postgresql://someone:hunter2@127.0.0.1:1/their_data"
    args, env = (["-d", url] if how == "option" else []), {}
    if how == "environment":
        env = {"GENISSS_DATABASE_URL": url}
    elif how == "dotenv":
        (tmp_path / ".env").write_text(f"DATABASE_URL={url}\n")
    r = genisss(*args, "db", verb, env=env)
    assert r.code == 2 and r.out == "" and "hunter2" not in r.err
    assert r.err.strip().endswith(f"({undo} to use the embedded server)"), r.err
    assert not (tmp_path / "genisss-data").exists()  # nothing was started
