"""genisss demo: on the embedded server (a data folder of this module's own,
never the user's), in a database of its own, dropped at the end however the
demo ends; the user's default database is never written."""

import json
import signal
import subprocess
import sys

import psycopg
import pytest
from conftest import clean_env
from test_watch import Watch

from genisss_cli.conn import embedded
from genisss_cli.core import schema

LIMIT = 60  # seconds: a safety net, never an expectation


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A data folder for the embedded server, with the default database
    migrated and its counter at 5; the server is stopped at the end."""
    data = tmp_path_factory.mktemp("demo") / "genisss-data"
    env = {"GENISSS_DATA_DIR": str(data)}
    cli = [sys.executable, "-m", "genisss_cli"]
    for args in (["migrate", "up"], ["bump", "story", "-n", "5"]):
        done = subprocess.run(cli + args, env=clean_env(data.parent, **env), cwd=data.parent,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    yield env
    embedded.stop(data)


def demo_databases(home) -> list[str]:
    with psycopg.connect(embedded.status(_data(home)).dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [schema.DEMO_PREFIX])]


def _data(home):
    from pathlib import Path

    return Path(home["GENISSS_DATA_DIR"])


def user_counter(genisss, home) -> int:
    r = genisss("status", "--json", env=home)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["database"] == "embedded/postgres"
    return doc["total_stories"]


class Demo(Watch):
    """A background `genisss demo --json`, its stdout and stderr read line by line."""

    def result(self) -> dict:
        return json.loads(self.err[-1])["demo"]


def test_seconds_runs_the_loop_and_leaves_the_user_data_alone(genisss, home):
    before = user_counter(genisss, home)
    r = genisss("demo", "--seconds", "3", "--json", env=home, timeout=LIMIT)
    assert r.code == 0, r.err
    changes = [json.loads(line) for line in r.out.splitlines()]
    stories = [c["total_stories"] for c in changes]
    assert len(stories) >= 3 and stories == sorted(stories) and stories[0] == 1  # each bump arrived
    assert any(c["total_audio_generations"] for c in changes)  # an audio every 4 stories
    result = json.loads(r.err.splitlines()[-1])["demo"]
    assert result["database"].startswith(schema.DEMO_PREFIX) and result["dropped"] is True
    assert result["stopped"] == "--seconds 3" and result["summary"]["reason"] == "--seconds 3"
    assert result["stories"] >= stories[-1] == result["summary"]["total_stories"]
    assert 2.5 <= result["summary"]["watched_s"] < 10
    assert demo_databases(home) == []
    assert user_counter(genisss, home) == before == 5

    r = genisss("demo", "--seconds", "1", "--rate", "10", env=home, timeout=LIMIT)  # the text view
    assert r.code == 0, r.err
    assert "--seconds 1, after" in r.out and "dropped the database genisss_demo_" in r.out
    assert "Your own databases were not touched." in r.out
    assert demo_databases(home) == [] and user_counter(genisss, home) == 5


@pytest.mark.parametrize("sig, reason", [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")])
def test_ctrl_c_and_sigterm_drop_the_demo_database(genisss, popen_genisss, home, sig, reason):
    d = Demo(popen_genisss("demo", "--json", env=home))
    d.wait(lambda: len(d.out) >= 2, "two changes")
    name = next(line for line in d.err if "made the database" in line).split()[4]
    assert name in demo_databases(home)
    d.proc.send_signal(sig)
    assert d.finish() == 0, d.err
    result = d.result()
    assert result["database"] == name and result["stopped"] == reason and result["dropped"] is True
    assert result["stories"] >= 2
    assert demo_databases(home) == []
    assert user_counter(genisss, home) == 5


def test_ctrl_c_while_it_sets_up_drops_the_database_too(genisss, popen_genisss, home):
    d = Demo(popen_genisss("demo", "--json", env=home))
    d.wait(lambda: any("migrating it" in line for line in d.err), "the migration starting")
    d.proc.send_signal(signal.SIGINT)  # the migration runs to its end, then the drop
    assert d.finish() == 130, d.err
    result = d.result()
    assert result["stopped"] == "Ctrl-C, before it started" and result["stories"] == 0
    assert d.out == [] and demo_databases(home) == []
    assert user_counter(genisss, home) == 5


def test_a_killed_demo_is_cleaned_up_by_the_next(genisss, popen_genisss, home):
    d = Demo(popen_genisss("demo", "--json", env=home))
    d.wait(lambda: len(d.out) >= 1, "a change")
    name = f"{schema.DEMO_PREFIX}{d.proc.pid}"
    d.proc.kill()  # nothing can drop it now
    d.finish()
    assert demo_databases(home) == [name]
    r = genisss("demo", "--seconds", "0.5", "--json", env=home, timeout=LIMIT)
    assert r.code == 0, r.err
    assert json.loads(r.err.splitlines()[-1])["demo"]["leftovers"] == [name]
    assert demo_databases(home) == [] and user_counter(genisss, home) == 5


@pytest.mark.parametrize("how", ["option", "environment", "dotenv"])
def test_refuses_a_database_url(genisss, tmp_path, how):
    url = "postgresql://someone@127.0.0.1:1/their_data"
    source, undo = {"option": ("--database-url", "leave out --database-url"),
                    "environment": ("DATABASE_URL", "unset DATABASE_URL"),
                    "dotenv": (".env DATABASE_URL",
                               "remove DATABASE_URL from ./.env (or run from another folder)")}[how]
    env, args = {}, []
    if how == "option":
        args = ["-d", url]
    elif how == "environment":
        env = {"DATABASE_URL": url}
    else:
        (tmp_path / ".env").write_text(f"DATABASE_URL={url}\n")
    r = genisss(*args, "demo", "--seconds", "1", env=env)
    assert r.code == 2 and r.out == ""
    assert r.err.strip() == (f"genisss: error: genisss demo runs only on the embedded server, but the "
                             f"database in use comes from {source} ({undo} to use the embedded server)")
    r = genisss(*args, "demo", "--json", env=env)
    assert r.code == 2 and json.loads(r.err)["exit"] == 2 and "only on the embedded server" in r.err
    assert not (tmp_path / "genisss-data").exists()  # no embedded server was started either


def test_the_live_view_shows_the_worker_beside_the_watch(home, tmp_path):
    from test_watch import Terminal

    env = clean_env(tmp_path, TERM="xterm-256color", **home)
    env.pop("COLUMNS", None)
    term = Terminal([sys.executable, "-m", "genisss_cli", "demo"], env)
    try:
        at = term.wait_for("embedded/genisss_demo_")  # the panel's database row
        at = term.wait_for("demo worker: ", at)
        term.wait_for("● connected")
        term.wait_for("demo worker: 3 stories", at)  # the worker's line moves with the panel
        term.press(b"\x03")  # Ctrl-C, through the terminal
        end = term.wait_for("dropped the database")
    finally:
        code = term.close()
    assert code == 0
    assert "Ctrl-C, after" in term.text[end - 1000:] and "Traceback" not in term.text
    assert demo_databases(home) == []
