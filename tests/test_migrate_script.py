"""`migrate sql up`: a script psql may run twice, quiet, refusing a foreign revision."""


from conftest import install_realtime
from test_migrate import NEWER, catalog
from tools import psql

from genisss_cli.core import schema


def test_up_script_runs_twice_and_the_second_run_changes_nothing(fresh_db, genisss):
    r = genisss("migrate", "sql", "up")
    assert r.code == 0 and r.err == ""  # quiet: no log lines without -v
    first = psql(fresh_db.dsn, r.out)
    assert first.returncode == 0, first.stderr
    after_first = catalog(fresh_db.dsn)
    assert after_first["version"] == [(schema.HEAD,)]
    fresh_db.execute("SELECT increment_story_counter() FROM generate_series(1, 3)")
    counted = catalog(fresh_db.dsn)
    second = psql(fresh_db.dsn, r.out)
    assert second.returncode == 0, second.stderr
    assert "ERROR:" not in second.stderr
    assert catalog(fresh_db.dsn) == counted  # the counter kept its 3 too
    assert counted["row"] == [("singleton", 3, 0)]


def test_up_script_from_034_reinstalls_035_once_realtime_exists(supabase_migrated_db, genisss):
    """035's notice says to rerun from 034 once Realtime exists: that script works on a
    database already at head, installs the broadcast trigger, and runs twice."""
    db = supabase_migrated_db
    assert db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'global_stats_broadcast'") == 0
    install_realtime(db.dsn)
    r = genisss("migrate", "sql", "up", "--from", schema.WATCHED)
    assert r.code == 0 and r.err == ""
    for _ in range(2):
        done = psql(db.dsn, r.out)
        assert done.returncode == 0, done.stderr
        assert db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'global_stats_broadcast'") == 1
        assert db.scalar("SELECT version_num FROM alembic_version") == schema.HEAD


def test_up_script_refuses_a_revision_outside_its_range(migrated_db, genisss):
    migrated_db.execute(f"UPDATE alembic_version SET version_num = '{NEWER}'")
    before = catalog(migrated_db.dsn)
    r = genisss("migrate", "sql", "up")
    done = psql(migrated_db.dsn, r.out)
    assert done.returncode != 0
    assert f"the database is at {NEWER}, outside this script's range (base to {schema.HEAD})" in done.stderr
    assert catalog(migrated_db.dsn) == before
    # a script that starts at 034 refuses a database that never reached it
    migrated_db.execute(f"UPDATE alembic_version SET version_num = '{schema.REALTIME}'")
    r = genisss("migrate", "sql", "up", "--from", schema.WATCHED)
    done = psql(migrated_db.dsn, r.out)
    assert done.returncode != 0 and f"at {schema.REALTIME}, outside" in done.stderr


def test_verbose_says_what_the_script_holds_on_stderr(genisss):
    quiet = genisss("migrate", "sql", "up")
    r = genisss("migrate", "sql", "up", "-v")
    assert r.code == 0 and r.out == quiet.out
    lines = r.err.strip().splitlines()
    assert lines[0] == "genisss: baseline: 2 statements"
    assert [line.split(":")[1].strip() for line in lines[:-1]] == list(schema.REVISIONS)
    assert lines[-1] == f"genisss: then public.alembic_version is set to {schema.HEAD}"


def test_bad_ranges_are_usage_errors(genisss):
    for args in (["--to", "nope"], ["--to", "base"], ["--from", schema.HINT, "--to", schema.REALTIME]):
        r = genisss("migrate", "sql", "up", *args)
        assert r.code == 2 and r.out == "", (args, r.err)
        assert len(r.err.strip().splitlines()) == 1 and "migrate history" in r.err
