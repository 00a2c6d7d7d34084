"""migrate's output: history on the default database, and tables at 80 columns."""

import json

from test_migrate import HAND_APPLIED_033

from genisss_cli.core import schema


def _current(out: str) -> list[str]:
    return [r["revision"] for r in json.loads(out) if r["current"]]


def test_history_shows_the_current_revision_of_the_default_database(migrated_db, genisss):
    for var in ("GENISSS_DATABASE_URL", "DATABASE_URL"):
        r = genisss("migrate", "history", "--json", env={var: migrated_db.dsn})
        assert r.code == 0, r.err
        assert _current(r.out) == [schema.HEAD]
    r = genisss("migrate", "history", env={"DATABASE_URL": migrated_db.dsn})
    row = next(line for line in r.out.splitlines() if schema.HEAD in line)
    assert "*" in row


def test_history_on_the_embedded_default(genisss):
    try:
        assert genisss("migrate", "up", schema.WATCHED).code == 0
        r = genisss("migrate", "history", "--json")
        assert r.code == 0, r.err
        assert _current(r.out) == [schema.WATCHED]
    finally:
        genisss("db", "stop")


def test_history_lists_the_revisions_when_the_database_is_unreachable(genisss):
    r = genisss("migrate", "history", "--json", env={"DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/x"})
    assert r.code == 0
    assert [row["revision"] for row in json.loads(r.out)] == list(schema.REVISIONS)
    assert _current(r.out) == []
    assert r.err.startswith("genisss: current revision unknown: ") and "secret" not in r.err
    # named with -d, the database is what was asked for: exit 4, as every command
    r = genisss("migrate", "history", dsn="postgresql://u:secret@127.0.0.1:1/x")
    assert r.code == 4 and r.out == "" and "secret" not in r.err


def _fits(out: str, width: int = 80) -> None:
    assert out.strip(), "no output"
    too_wide = [line for line in out.splitlines() if len(line) > width]
    assert not too_wide, too_wide
    assert "…" not in out  # nothing cut short


def test_migrate_tables_fit_80_columns_and_keep_every_identifier(migrated_db, fresh_db, genisss):
    narrow = {"COLUMNS": "80"}
    r = genisss("migrate", "history", dsn=migrated_db.dsn, env=narrow)
    _fits(r.out)
    for rev in schema.REVISIONS:
        assert any(line.startswith(f"│ {rev} ") for line in r.out.splitlines()), rev
    for args in (["migrate", "status"], ["migrate", "down", "--dry-run"],
                 ["migrate", "down", "base", "--dry-run"]):
        r = genisss(*args, dsn=migrated_db.dsn, env=narrow)
        assert r.code == 0, (args, r.err)
        _fits(r.out)
    migrated_db.execute("DROP POLICY global_stats_read ON global_stats; DELETE FROM global_stats")
    r = genisss("migrate", "repair", dsn=migrated_db.dsn, env=narrow)
    assert r.code == 1
    # the "skipped:" notice is prose on one line (soft wrap: the terminal wraps it)
    _fits("\n".join(line for line in r.out.splitlines() if not line.startswith("skipped:")))
    assert "public.global_stats id=singleton" in " ".join(r.out.split())
    r = genisss("migrate", "stamp", schema.REALTIME, "--yes", dsn=migrated_db.dsn, env=narrow)
    assert r.code == 5
    _fits(r.out)
    fresh_db.execute(HAND_APPLIED_033)
    r = genisss("migrate", "up", dsn=fresh_db.dsn, env=narrow)
    assert r.code == 0
    _fits("\n".join(line for line in r.out.splitlines() if "│" in line or "┃" in line))


def test_the_help_of_up_down_and_stamp_names_the_real_head(genisss):
    """The head is written once (core/schema.py); the help reads it there."""
    for cmd in ("up", "down", "stamp"):
        r = genisss("migrate", cmd, "--help", env={"COLUMNS": "200"})
        assert r.code == 0, r.err
        assert schema.HEAD in r.out and "{head}" not in r.out, (cmd, r.out)
