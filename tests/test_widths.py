"""Tables fit 80 columns, and nothing in them is cut: at COLUMNS=80 every line
of check, status, drift and watch's summary is at most 80 wide, and every
identifier and value of their --json (each word of it) appears whole in the
text, on one line (wrapping happens between words; only a word wider than its column folds)."""

from __future__ import annotations

import json
import re

_BOX = re.compile(r"[│┃┆┊║─━┄┈═┌┐└┘├┤┬┴┼┏┓┗┛┣┫┳┻╋╭╮╯╰╇╈╉╊╡╢╞╟]")


def words(text: str) -> set[str]:
    """Each word, and the word without the punctuation around it ("(PostgreSQL 15.20)")."""
    raw = _BOX.sub(" ", text).split()
    return set(raw) | {w.strip("()[],;:") for w in raw}


def assert_fits(out: str, values) -> None:
    """No line wider than 80, no ellipsis; each word of the values whole on a
    line, or (a word wider than its column) folded: then whole once the
    output's spacing and borders are taken out."""
    lines = out.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, out
    assert "…" not in out, out
    seen = words(out)
    joined = "".join(_BOX.sub("", out).split())
    missing = [w for v in values for w in str(v).split()
               if w not in seen and (len(w) < 30 or w not in joined)]
    assert not missing, f"cut or missing: {missing}\n{out}"


def run(genisss, db, *args):
    text = genisss(*args, dsn=db.dsn, env={"COLUMNS": "80"})
    js = genisss(*args, "--json", dsn=db.dsn)
    return text, json.loads(js.out or js.err.splitlines()[-1])


def test_check_fits_80_columns(supabase_migrated_db, genisss):
    db = supabase_migrated_db
    db.execute("ALTER TABLE global_stats DISABLE TRIGGER global_stats_notify")  # a long fix, and a fail
    db.execute("GRANT EXECUTE ON FUNCTION increment_story_counter() TO anon")
    text, data = run(genisss, db, "check")
    assert text.code == 1
    assert_fits(text.out, [v for row in data["checks"]
                           for v in (row["name"], row["detail"], row["fix"] or "")])


def test_status_and_drift_fit_80_columns(supabase_migrated_db, genisss):
    db = supabase_migrated_db
    db.execute("UPDATE global_stats SET total_stories = 123456789012, total_audio_generations = 98765")
    text, data = run(genisss, db, "status")
    assert text.code == 0
    assert_fits(text.out, [data[k] for k in ("total_stories", "total_audio_generations", "database",
                                             "server_version", "revision", "publication")])
    text, data = run(genisss, db, "drift")
    assert_fits(text.out, [v for row in data["counters"] for v in (row["name"], row["table"], row["counter"],
                                                                   row["actual"], f"{row['drift']:+d}")])


def test_watch_summary_fits_80_columns(migrated_db, genisss):
    db = migrated_db
    db.execute("UPDATE global_stats SET total_stories = 123456789012")
    text = genisss("watch", "--timeout", "0.3", dsn=db.dsn, env={"COLUMNS": "80"})
    js = genisss("watch", "--json", "--timeout", "0.3", dsn=db.dsn)
    s = json.loads(js.err.splitlines()[-1])["summary"]
    assert text.code == 0
    assert_fits(text.out, [f"{s['total_stories']:,}", f"{s['total_audio_generations']:,}", s["changes"]])
