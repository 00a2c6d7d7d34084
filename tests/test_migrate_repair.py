"""`migrate repair`, `migrate stamp` and adoption's report, through the CLI on real PostgreSQL."""

import json
import re

import pytest
from conftest import install_realtime
from test_migrate import HAND_APPLIED_033, catalog
from test_migrate_script import psql

from genisss_cli.core import schema

BROKEN = """
SELECT increment_story_counter() FROM generate_series(1, 4);
SELECT increment_audio_counter() FROM generate_series(1, 2);
ALTER TABLE global_stats DISABLE TRIGGER global_stats_notify;
DROP FUNCTION increment_audio_counter();
ALTER PUBLICATION supabase_realtime DROP TABLE global_stats;
REVOKE SELECT ON global_stats FROM anon;
"""


def _changes(out: str) -> dict:
    return {(c["kind"], c["name"]): c for c in json.loads(out)["changes"]}


def test_repair_dry_run_then_yes_recreates_and_keeps_the_counters(supabase_migrated_db, genisss):
    db = supabase_migrated_db
    healthy = catalog(db.dsn)
    r = genisss("migrate", "repair", dsn=db.dsn)
    assert r.code == 0 and "nothing to repair" in r.out
    db.execute(BROKEN)
    broken = catalog(db.dsn)

    r = genisss("migrate", "repair", "--json", dsn=db.dsn)  # the dry run
    assert r.code == 1, r.err
    changes = _changes(r.out)
    assert set(changes) == {("function", "increment_audio_counter()"),
                            ("publication", "supabase_realtime: public.global_stats"),
                            ("table", "global_stats"),
                            ("trigger", "global_stats_notify on global_stats")}
    assert changes[("table", "global_stats")]["aspects"] == ["grants"]
    assert changes[("trigger", "global_stats_notify on global_stats")]["aspects"] == ["enabled"]
    assert json.loads(r.out)["applied"] is False
    assert catalog(db.dsn) == broken  # changed nothing

    r = genisss("migrate", "repair", "--yes", dsn=db.dsn)
    assert r.code == 0, r.err
    assert "repaired at " + schema.HEAD in " ".join(r.out.split()) and "increment_audio_counter()" in r.out
    repaired = catalog(db.dsn)
    assert repaired["row"] == [("singleton", 4, 2)]  # every counter kept
    assert {k: v for k, v in repaired.items() if k != "row"} == \
        {k: v for k, v in healthy.items() if k != "row"}
    assert db.scalar("SELECT increment_audio_counter()") == 3
    r = genisss("migrate", "repair", "--json", dsn=db.dsn)
    assert r.code == 0 and json.loads(r.out)["changes"] == []


def test_repair_recreates_a_deleted_row_at_the_stories_count(migrated_db, genisss):
    migrated_db.execute("INSERT INTO user_stories (title) SELECT 's' FROM generate_series(1, 6)")
    migrated_db.execute("DELETE FROM global_stats")
    r = genisss("migrate", "repair", "--yes", "--json", dsn=migrated_db.dsn)
    assert r.code == 0, r.err
    row = _changes(r.out)[("row", "public.global_stats id=singleton")]
    assert row["change"] == "added"
    assert row["aspects"] == ["total_stories=6", "total_audio_generations=0"]
    assert migrated_db.scalar("SELECT total_stories FROM global_stats") == 6


def test_repair_installs_035s_broadcast_once_realtime_exists(supabase_migrated_db, genisss):
    db = supabase_migrated_db
    assert db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'global_stats_broadcast'") == 0
    install_realtime(db.dsn)
    r = genisss("migrate", "repair", "--json", dsn=db.dsn)
    assert r.code == 1
    assert ("trigger", "global_stats_broadcast on global_stats") in _changes(r.out)
    assert db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'global_stats_broadcast'") == 0
    assert genisss("migrate", "repair", "--yes", dsn=db.dsn).code == 0
    assert db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'global_stats_broadcast'") == 1


def test_repair_keeps_the_operators_own_grants(migrated_db, genisss):
    """033 replaces a right function in place (it drops only one of another
    type), so a grant to the operator's worker role outlives a rerun."""
    db = migrated_db
    role = f"worker_{db.name}"
    db.execute(f'CREATE ROLE "{role}" NOLOGIN')
    try:
        db.execute(f'GRANT EXECUTE ON FUNCTION increment_story_counter() TO "{role}"')
        oid = db.scalar("SELECT 'increment_story_counter()'::regprocedure::oid")
        r = genisss("migrate", "repair", "--json", dsn=db.dsn)
        assert r.code == 0 and json.loads(r.out)["changes"] == [], r.out
        assert genisss("migrate", "repair", "--yes", dsn=db.dsn).code == 0
        script = genisss("migrate", "sql", "up")
        assert psql(db.dsn, script.out).returncode == 0
        assert db.scalar("SELECT 'increment_story_counter()'::regprocedure::oid") == oid
        assert db.scalar(f"SELECT has_function_privilege('{role}', 'increment_story_counter()', "
                         "'EXECUTE')") is True
    finally:
        db.execute(f'DROP OWNED BY "{role}"')
        db.server.drop_db(db.name)
        with db.server.admin() as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_repair_and_stamp_refuse_a_second_row_and_delete_nothing(migrated_db, genisss):
    """033's singleton constraint, dropped, then a second row: rerunning 033
    cannot add it back. Both say so in one line, pointing at check's fix."""
    db = migrated_db
    db.execute("ALTER TABLE global_stats DROP CONSTRAINT global_stats_singleton; "
               "INSERT INTO global_stats (id, total_stories) VALUES ('other', 7)")
    before = catalog(db.dsn)
    for args, code in ((["repair"], 1), (["repair", "--yes"], 1), (["stamp", "head", "--yes"], 5)):
        r = genisss("migrate", *args, dsn=db.dsn)
        assert r.code == code, (args, r.output)
        assert len(r.err.strip().splitlines()) == 1 and "global_stats_singleton" in r.err
        assert "genisss check names the rows" in r.err, r.err
        doc = json.loads(genisss("migrate", *args, "--json", dsn=db.dsn).err)
        assert doc["exit"] == code and doc["hint"].startswith("nothing was changed")
    assert catalog(db.dsn) == before
    assert db.scalar("SELECT count(*) FROM global_stats") == 2
    r = genisss("check", "--json", dsn=db.dsn)
    fixes = " ".join(row["fix"] or "" for row in json.loads(r.out)["checks"])
    assert "DELETE FROM public.global_stats WHERE id IS DISTINCT FROM 'singleton'" in fixes


def test_repair_needs_a_recorded_revision(fresh_db, genisss):
    r = genisss("migrate", "repair", dsn=fresh_db.dsn)
    assert r.code == 5 and "no recorded revision" in r.err and "migrate up" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_stamp_records_a_matching_revision_and_refuses_a_mismatch(migrated_db, genisss):
    db = migrated_db
    db.execute("DELETE FROM alembic_version")  # as if the schema was applied by hand
    # 034's statements would rewrite 036's function: the schema is not at 034.
    r = genisss("migrate", "stamp", schema.WATCHED, "--yes", dsn=db.dsn)
    assert r.code == 5, r.err
    assert "global_stats_notify()" in r.out and "replaced (definition)" in r.out
    assert r.err.startswith(f"genisss: error: the schema does not match {schema.WATCHED}")
    assert db.scalar("SELECT count(*) FROM alembic_version") == 0
    r = genisss("migrate", "stamp", schema.WATCHED, "--yes", "--json", dsn=db.dsn)
    assert r.code == 5 and json.loads(r.out)["matches"] is False
    assert json.loads(r.err)["exit"] == 5

    r = genisss("migrate", "stamp", schema.HEAD, dsn=db.dsn)  # no terminal, no --yes
    assert r.code == 2 and "--yes" in r.err
    assert db.scalar("SELECT count(*) FROM alembic_version") == 0

    before = catalog(db.dsn)
    r = genisss("migrate", "stamp", "head", "--yes", "--json", dsn=db.dsn)
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["stamped"] is True and out["matches"] is True and out["target"] == schema.HEAD
    assert db.scalar("SELECT version_num FROM alembic_version") == schema.HEAD
    assert {k: v for k, v in catalog(db.dsn).items() if k != "version"} == \
        {k: v for k, v in before.items() if k != "version"}  # it ran nothing

    r = genisss("migrate", "stamp", schema.WATCHED, "--yes", "--force", dsn=db.dsn)
    assert r.code == 0, r.err
    assert "forced" in r.out and db.scalar("SELECT version_num FROM alembic_version") == schema.WATCHED


def test_stamp_names_the_later_revisions_the_schema_has_too(migrated_db, genisss):
    """Without realtime.send(), 035 installs nothing: a schema at 035 has all of
    034 and of 035, and stamp 034 says so (and records what it was asked)."""
    db = migrated_db
    assert genisss("migrate", "down", schema.BROADCAST, "--yes", dsn=db.dsn).code == 0
    r = genisss("migrate", "stamp", schema.WATCHED, "--yes", "--json", dsn=db.dsn)
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["matches"] is True and out["later"] == [schema.BROADCAST]
    assert db.scalar("SELECT version_num FROM alembic_version") == schema.WATCHED
    r = genisss("migrate", "stamp", schema.WATCHED, "--yes", dsn=db.dsn)
    assert f"genisss migrate stamp {schema.BROADCAST} records the latest" in " ".join(r.out.split())
    # at head nothing comes later; where 036's function differs, 035 is no match
    r = genisss("migrate", "stamp", schema.BROADCAST, "--yes", "--json", dsn=db.dsn)
    assert json.loads(r.out)["later"] == []
    assert genisss("migrate", "up", dsn=db.dsn).code == 0
    r = genisss("migrate", "stamp", "head", "--yes", "--json", dsn=db.dsn)
    assert json.loads(r.out)["later"] == [] and json.loads(r.out)["stamped"] is True


def test_stamp_secures_the_version_table_it_creates(supabase_db, genisss):
    db = supabase_db
    db.execute(HAND_APPLIED_033.replace("CREATE TABLE user_stories",
                                        "CREATE TABLE IF NOT EXISTS user_stories"))
    assert genisss("migrate", "stamp", schema.REALTIME, "--yes", dsn=db.dsn).code == 5
    r = genisss("migrate", "stamp", schema.REALTIME, "--yes", "--force", dsn=db.dsn)
    assert r.code == 0, r.err
    assert db.scalar("SELECT relrowsecurity FROM pg_class WHERE relname = 'alembic_version'")
    assert db.scalar("SELECT has_table_privilege('anon', 'public.alembic_version', 'SELECT')") is False


def test_stamp_rejects_what_is_no_revision(migrated_db, genisss):
    for rev in ("nosuch", "base"):
        r = genisss("migrate", "stamp", rev, "--yes", dsn=migrated_db.dsn)
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err


def test_stamp_completes_revisions(genisss):
    words = "genisss migrate stamp 03"
    r = genisss(env={"_GENISSS_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": "3"})
    assert r.out.split() == [rev for rev in schema.REVISIONS if rev.startswith("03")]


def test_adoption_reports_what_it_found_added_and_replaced(fresh_db, genisss):
    fresh_db.execute(HAND_APPLIED_033)
    r = genisss("migrate", "up", "--json", dsn=fresh_db.dsn)
    assert r.code == 0, r.err
    adopted = json.loads(r.out)["adopted"]
    assert "table global_stats" in adopted["found"]
    assert "function increment_story_counter()" in adopted["found"]
    added = {(c["kind"], c["name"]) for c in adopted["added"]}
    assert {("column", "global_stats.last_audio_at"), ("function", "increment_audio_counter()"),
            ("trigger", "global_stats_notify on global_stats"),
            ("constraint", "global_stats global_stats_singleton")} <= added
    replaced = {c["name"]: c["aspects"] for c in adopted["replaced"]}
    assert "definition" in replaced["increment_story_counter()"]  # it returned void
    assert "row level security" in replaced["global_stats"]
    assert adopted["removed"] == []
    kept = {(c["kind"], c["name"]): c["aspects"] for c in adopted["kept"]}
    assert kept[("row", "public.global_stats id=singleton")] == ["total_stories=1323",
                                                                 "total_audio_generations=0"]
    assert ("column", "global_stats.total_stories") in kept
    # what it found is what it kept and what it replaced, nothing else
    assert sorted(adopted["found"]) == sorted(f"{kind} {name}" for kind, name in
                                              [*kept, *((c["kind"], c["name"]) for c in adopted["replaced"])])
    assert fresh_db.scalar("SELECT total_stories FROM global_stats") == 1323  # kept


def test_adoption_and_repair_of_a_table_without_a_counter_column(fresh_db, genisss):
    """033 adds a missing column (ADD COLUMN IF NOT EXISTS); reading the row
    before it does must not need that column."""
    fresh_db.execute(HAND_APPLIED_033.replace("  total_audio_generations BIGINT NOT NULL DEFAULT 0,\n", ""))
    r = genisss("migrate", "up", "--json", dsn=fresh_db.dsn)
    assert r.code == 0, r.err
    adopted = json.loads(r.out)["adopted"]
    assert ("column", "global_stats.total_audio_generations") in {
        (c["kind"], c["name"]) for c in adopted["added"]}
    row = next(c for c in adopted["replaced"] if c["kind"] == "row")
    assert row["aspects"] == ["total_audio_generations"]  # the row kept its 1323 stories
    assert fresh_db.scalar("SELECT total_stories FROM global_stats") == 1323

    fresh_db.execute("ALTER TABLE global_stats DROP COLUMN total_audio_generations")
    r = genisss("migrate", "repair", "--yes", "--json", dsn=fresh_db.dsn)
    assert r.code == 0, r.err
    assert ("column", "global_stats.total_audio_generations") in _changes(r.out)
    assert fresh_db.scalar("SELECT increment_audio_counter()") == 1


def test_adoption_table_fits_80_columns(fresh_db, genisss):
    fresh_db.execute(HAND_APPLIED_033)
    r = genisss("migrate", "up", dsn=fresh_db.dsn, env={"COLUMNS": "80"})
    assert r.code == 0, r.err
    assert "Adopted a hand-applied schema" in r.out
    # the same on every server (PostgreSQL 18's NOT NULL constraints are the columns')
    assert re.search(r"found 14 objects: kept 11, replaced 3; added \d+", r.out)  # 037 adds more
    assert "increment_audio_counter()" in r.out and "global_stats.last_audio_at" in r.out
    # identifiers stay whole on their line, the longest one too
    assert re.search(r"^│ column +│ global_stats\.total_audio_generations +│ kept", r.out, re.MULTILINE)
    assert max(len(line) for line in r.out.splitlines() if "│" in line) <= 80
    # a database migrated by genisss is not "adopted" again
    r = genisss("migrate", "up", "--json", dsn=fresh_db.dsn)
    assert json.loads(r.out)["adopted"] is None


# -- genisss's own schema (037, merged from the bcast branch) ----------------------------

SETTINGS = getattr(schema, "SETTINGS", None)  # 037_broadcast_settings where this genisss has it
needs_037 = pytest.mark.skipif(SETTINGS is None, reason="needs migration 037 (genisss's own schema)")


@needs_037
def test_repair_recreates_037s_flush_and_settings_row(broadcast_db, genisss):
    """Objects in genisss's schema are in repair's reading by where they live."""
    db = broadcast_db
    r = genisss("migrate", "repair", "--json", dsn=db.dsn)
    assert r.code == 0 and json.loads(r.out)["changes"] == [], r.out
    db.execute(f"DROP FUNCTION {schema.BROADCAST_FLUSH}(boolean); DELETE FROM {schema.BROADCAST_SETTINGS}")
    r = genisss("migrate", "repair", "--json", dsn=db.dsn)
    assert r.code == 1, r.output
    changes = _changes(r.out)
    assert ("function", f"{schema.BROADCAST_FLUSH}(boolean)") in changes
    row = changes[("row", f"{schema.BROADCAST_SETTINGS} id=true")]
    assert row["change"] == "added" and "private=false" in row["aspects"]
    assert genisss("migrate", "repair", "--yes", dsn=db.dsn).code == 0
    assert db.scalar(f"SELECT to_regprocedure('{schema.BROADCAST_FLUSH}(boolean)') IS NOT NULL")
    assert db.scalar(f"SELECT count(*) FROM {schema.BROADCAST_SETTINGS}") == 1


@needs_037
def test_stamp_037_over_a_036_schema_is_refused(migrated_db, genisss):
    db = migrated_db
    assert genisss("migrate", "down", schema.HINT, "--yes", dsn=db.dsn).code == 0
    r = genisss("migrate", "stamp", SETTINGS, "--yes", "--json", dsn=db.dsn)
    assert r.code == 5, r.output
    added = {(c["kind"], c["name"]) for c in json.loads(r.out)["differences"] if c["change"] == "added"}
    assert ("schema", schema.OWN_SCHEMA) in added
    assert ("table", schema.BROADCAST_SETTINGS) in added
    assert db.scalar("SELECT version_num FROM alembic_version") == schema.HINT
