"""genisss metrics: the counter's state as Prometheus text, read back with
prometheus_client's own parser, on real PostgreSQL."""

import json
import os
import stat

import pytest
from prometheus_client.parser import text_string_to_metric_families

from genisss_cli.core import schema


def parse(text: str) -> dict:
    """name -> {frozenset(labels): value}, each family's TYPE and HELP checked."""
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("genisss_"), family.name
        assert family.type == "gauge" and family.documentation, family
        for s in family.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def value(parsed: dict, name: str, **labels) -> float:
    return parsed[name][frozenset(labels.items())]


def test_metrics_of_a_migrated_database(migrated_db, genisss):
    migrated_db.execute("INSERT INTO user_stories (title) SELECT 'story' FROM generate_series(1, 5)")
    with migrated_db.connect() as conn:
        for _ in range(7):
            conn.execute("SELECT increment_story_counter()")
        conn.execute("SELECT increment_audio_counter()")
    r = genisss("metrics", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    assert r.err == ""
    assert "# EOF" not in r.out and r.out.endswith("\n")
    m = parse(r.out)
    assert value(m, "genisss_up") == 1 and value(m, "genisss_exit_code") == 0
    assert value(m, "genisss_stories") == 7 and value(m, "genisss_audio_generations") == 1
    assert value(m, "genisss_drift") == 2  # 7 counted, 5 rows
    assert 0 <= value(m, "genisss_seconds_since_update") < 60
    assert 0 <= value(m, "genisss_seconds_since_last_story") < 60
    assert 0 <= value(m, "genisss_notify_queue_usage_ratio") < 0.01
    assert value(m, "genisss_schema_info", revision=schema.HEAD, head=schema.HEAD) == 1
    checks = {dict(k)["check"]: v for k, v in m["genisss_check_ok"].items()}
    assert checks["table"] == 1 and checks["functions"] == 1 and checks["migration"] == 1
    warnings = {dict(k)["check"]: v for k, v in m["genisss_check_warning"].items()}
    assert warnings["drift"] == 1 and checks["drift"] == 1  # drift warns in `check` too
    assert set(checks) == set(warnings)

    # --json: the same values
    r = genisss("metrics", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["up"] is True and doc["exit_code"] == 0 and doc["error"] is None
    assert (doc["stories"], doc["audio_generations"], doc["drift"]) == (7, 1, 2)
    assert doc["revision"] == doc["head"] == schema.HEAD
    assert {n: int(c["ok"]) for n, c in doc["checks"].items()} == checks
    assert {n: int(c["warning"]) for n, c in doc["checks"].items()} == warnings


def test_a_failed_check_is_a_zero_and_does_not_fail_the_command(migrated_db, genisss):
    migrated_db.execute("ALTER TABLE global_stats DISABLE TRIGGER global_stats_notify")
    r = genisss("metrics", dsn=migrated_db.dsn)
    assert r.code == 0, r.err  # a finding is in the values; alerting reads them
    m = parse(r.out)
    assert value(m, "genisss_check_ok", check="trigger") == 0
    assert value(m, "genisss_up") == 1
    r = genisss("metrics", "--json", dsn=migrated_db.dsn)
    assert json.loads(r.out)["checks"]["trigger"] == {"ok": False, "warning": False, "status": "fail"}


def test_no_realtime_leaves_out_the_realtime_rows(migrated_db, genisss):
    r = genisss("metrics", "--no-realtime", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    names = {dict(k)["check"] for k in parse(r.out)["genisss_check_ok"]}
    assert "wal_level" not in names and "publication" not in names and "table" in names
    r = genisss("metrics", dsn=migrated_db.dsn, env={"GENISSS_REALTIME": "off"})
    assert "wal_level" not in {dict(k)["check"] for k in parse(r.out)["genisss_check_ok"]}


def test_output_file_is_written_whole_with_the_mode_bits(migrated_db, genisss, tmp_path):
    out = tmp_path / "textfile" / "genisss.prom"
    out.parent.mkdir()
    r = genisss("metrics", "--output", out, dsn=migrated_db.dsn, env={})
    assert r.code == 0, r.err
    assert r.out == "" and r.err == ""  # quiet for cron
    m = parse(out.read_text())
    assert value(m, "genisss_up") == 1 and value(m, "genisss_stories") == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()  # as any new file
    assert os.listdir(out.parent) == ["genisss.prom"]  # no temporary file left

    out.chmod(0o640)  # an operator's choice stays
    with migrated_db.connect() as conn:
        conn.execute("SELECT increment_story_counter()")
    r = genisss("metrics", "-o", out, "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    assert json.loads(r.out)["stories"] == 1  # --json: the same values on stdout
    assert value(parse(out.read_text()), "genisss_stories") == 1
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert os.listdir(out.parent) == ["genisss.prom"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_unreachable_database_is_up_zero_and_exit_4(genisss, tmp_path):
    dsn = "postgresql://nobody@127.0.0.1:1/x"
    r = genisss("metrics", dsn=dsn)
    assert r.code == 4
    assert r.err.startswith("genisss: error: 127.0.0.1:1/x refused") and len(r.err.splitlines()) == 1
    m = parse(r.out)
    assert value(m, "genisss_up") == 0 and value(m, "genisss_exit_code") == 4
    assert "genisss_stories" not in m and "genisss_check_ok" not in m

    r = genisss("metrics", "--json", dsn=dsn)
    assert r.code == 4
    doc = json.loads(r.out)
    assert doc["up"] is False and doc["exit_code"] == 4 and doc["stories"] is None
    assert "refused" in doc["error"]
    assert json.loads(r.err)["exit"] == 4

    # --output: the old file is replaced, never left saying the database was up
    out = tmp_path / "genisss.prom"
    out.write_text("# TYPE genisss_up gauge\ngenisss_up 1\n")
    r = genisss("metrics", "--output", out, dsn=dsn)
    assert r.code == 4 and r.out == ""
    assert value(parse(out.read_text()), "genisss_up") == 0


def test_a_malformed_url_is_up_zero_and_exit_3(genisss, tmp_path):
    out = tmp_path / "genisss.prom"
    r = genisss("metrics", "-o", out, env={"DATABASE_URL": "postgresql://u:secret@h:port/x"})
    assert r.code == 3 and "malformed database URL" in r.err and "secret" not in r.err
    m = parse(out.read_text())
    assert value(m, "genisss_up") == 0 and value(m, "genisss_exit_code") == 3


def test_unmigrated_database_is_up_zero_exit_5_with_the_checks(fresh_db, genisss, tmp_path):
    out = tmp_path / "genisss.prom"
    r = genisss("metrics", "-o", out, dsn=fresh_db.dsn)
    assert r.code == 5, r.err
    assert "run: genisss migrate up" in r.err and len(r.err.splitlines()) == 1
    m = parse(out.read_text())
    assert value(m, "genisss_up") == 0 and value(m, "genisss_exit_code") == 5
    assert value(m, "genisss_check_ok", check="table") == 0  # the checks say what is missing
    assert value(m, "genisss_check_ok", check="connection") == 1
    assert 0 <= value(m, "genisss_notify_queue_usage_ratio") < 1
    assert "genisss_stories" not in m and "genisss_schema_info" not in m

    r = genisss("metrics", "--json", dsn=fresh_db.dsn)
    assert r.code == 5
    doc = json.loads(r.out)
    assert doc["up"] is False and doc["exit_code"] == 5 and doc["checks"]["table"]["ok"] is False


def test_missing_row_is_up_zero_exit_5(migrated_db, genisss):
    migrated_db.execute("DELETE FROM global_stats")
    r = genisss("metrics", dsn=migrated_db.dsn)
    assert r.code == 5 and "singleton" in r.err
    m = parse(r.out)
    assert value(m, "genisss_up") == 0
    assert value(m, "genisss_schema_info", revision=schema.HEAD, head=schema.HEAD) == 1


@pytest.mark.parametrize("where, code, says", [
    ("missing-folder/genisss.prom", 3, "cannot write --output"),
    ("a-folder.prom", 3, "it is a folder"),
    ("genisss.txt", 2, "does not end in .prom"),  # the collector would never read it
])
def test_a_bad_output_is_refused_before_connecting(genisss, tmp_path, where, code, says):
    (tmp_path / "a-folder.prom").mkdir()
    dsn = "postgresql://nobody@127.0.0.1:1/x"
    r = genisss("metrics", "--output", tmp_path / where, dsn=dsn)
    assert r.code == code and says in r.err, r.err
    assert len(r.err.splitlines()) == 1 and "127.0.0.1:1" not in r.err and r.out == ""
    r = genisss("metrics", "--output", tmp_path / where, "--json", dsn=dsn)
    assert r.code == code and json.loads(r.err)["exit"] == code and r.out == ""
    assert sorted(os.listdir(tmp_path)) == ["a-folder.prom"]  # nothing written
