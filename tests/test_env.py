"""One Env per run: two invocations in one process keep their own database,
timeouts and output format (nothing of a run lives in a module)."""

import io
import json
import time

import pytest
from conftest import clone_db, migrate_up
from reliability import SilentServer

from genisss_cli import cli
from genisss_cli.env import Env


@pytest.fixture
def other_migrated_db(server):
    yield from clone_db(server, "migrated", migrate_up)


def invoke(argv, tmp_path, **environ):
    out, err = io.StringIO(), io.StringIO()
    env = Env(environ={"GENISSS_DATA_DIR": str(tmp_path / "data"), "NO_COLOR": "1", "COLUMNS": "200",
                       **environ},
              cwd=tmp_path, stdin=io.StringIO(""), stdout=out, stderr=err)
    code = cli.run(argv, env)
    return code, out.getvalue(), err.getvalue()


def test_two_runs_in_one_process_keep_their_own_url_and_format(migrated_db, other_migrated_db, tmp_path):
    migrated_db.execute("UPDATE global_stats SET total_stories = 11")
    other_migrated_db.execute("UPDATE global_stats SET total_stories = 22")

    code, out, err = invoke(["status", "--json"], tmp_path, GENISSS_DATABASE_URL=migrated_db.dsn)
    assert code == 0, err
    assert json.loads(out)["total_stories"] == 11

    code, out, err = invoke(["-d", other_migrated_db.dsn, "status"], tmp_path)
    assert code == 0, err
    assert "total_stories" in out and "22" in out
    with pytest.raises(ValueError):
        json.loads(out)  # a table: the first run's --json did not stay

    code, out, err = invoke(["status", "--json"], tmp_path, GENISSS_DATABASE_URL=migrated_db.dsn)
    assert code == 0, err
    assert json.loads(out)["total_stories"] == 11  # the second run's -d did not stay


def test_a_connect_timeout_option_does_not_outlive_its_run(tmp_path):
    with SilentServer() as silent:
        started = time.monotonic()
        code, _, err = invoke(["--connect-timeout", "1", "-d", silent.dsn("pw"), "status"], tmp_path)
        first = time.monotonic() - started
        assert code == 4 and "within the connect timeout" in err, err

        started = time.monotonic()
        code, _, err = invoke(["status", "--json"], tmp_path, GENISSS_DATABASE_URL=silent.dsn("pw"),
                              GENISSS_CONNECT_TIMEOUT="3")
        second = time.monotonic() - started
    assert code == 4 and json.loads(err)["exit"] == 4, err
    # The second run waited its own 3 s, not the first run's 1 s.
    assert first < 2.9 <= second + 0.1, (first, second)
