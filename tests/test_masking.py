"""Passwords are masked by the URL's own field, never by searching the output
for their value: a password like `13`, `postgres` or `1` cannot corrupt a
number, the scheme or a name, and every --json output still parses and
carries its real numbers."""

from urllib.parse import quote

import psycopg
import pytest
from reliability import run_cli, with_password

from genisss_cli.render.redact import mask_text, show_url

PASSWORDS = ["13", "postgres", "1", "p@ss:w/rd?&#% x"]
STORIES = 1325  # holds "13" and "1"


def masked(dsn_with_password: str, password: str) -> str:
    """The URL as genisss must show it: the encoded password, and nothing else, as ***."""
    scheme, rest = dsn_with_password.split("://", 1)
    user, after = rest.split(":", 1)
    encoded = quote(password, safe="")
    assert after.startswith(encoded + "@")
    return f"{scheme}://{user}:***{after[len(encoded):]}"


@pytest.fixture
def counted_db(migrated_db):
    migrated_db.execute("INSERT INTO public.user_stories (title) "
                        f"SELECT 's' FROM generate_series(1, {STORIES})")
    migrated_db.execute("UPDATE public.global_stats SET total_stories = 13, total_audio_generations = 1")
    return migrated_db


@pytest.mark.parametrize("password", PASSWORDS, ids=["13", "postgres", "1", "url-special"])
def test_json_outputs_parse_and_carry_their_numbers(counted_db, tmp_path, password):
    import json

    dsn = with_password(counted_db.dsn, password)

    def run(*argv):
        r = run_cli(["-d", dsn, *argv], cwd=tmp_path)
        assert r.code in (0, 1), r
        return json.loads(r.out)

    url = run("db", "url", "--json")["url"]
    assert url == masked(dsn, password)
    status = run("status", "--json")
    assert (status["total_stories"], status["total_audio_generations"]) == (13, 1)
    assert status["url"] == masked(dsn, password)
    drift = run("drift", "--json")["counters"][0]
    assert (drift["counter"], drift["actual"], drift["drift"]) == (13, STORIES, 13 - STORIES)
    assert run("sync", "--dry-run", "--json")["new_count"] == STORIES
    sync = run("sync", "--json")
    assert (sync["old_count"], sync["new_count"], sync["difference"]) == (13, STORIES, STORIES - 13)
    bump = run("bump", "story", "-n", "3", "--json")
    assert (bump["bumped"], bump["total_stories"]) == (3, STORIES + 3)
    assert run("migrate", "status", "--json")["up_to_date"] is True
    check = run("check", "--json")
    assert check["summary"]["pass"] > 0 and check["database"]
    history = run("migrate", "history", "--json")
    assert [r["current"] for r in history][-1] is True


@pytest.mark.parametrize("password", PASSWORDS, ids=["13", "postgres", "1", "url-special"])
def test_text_output_keeps_every_other_character(counted_db, tmp_path, password):
    dsn = with_password(counted_db.dsn, password)
    r = run_cli(["-d", dsn, "db", "url"], cwd=tmp_path)
    assert r.code == 0 and r.out == masked(dsn, password) + "\n", r
    r = run_cli(["-d", dsn, "sync"], cwd=tmp_path)
    assert r.code == 0 and str(STORIES) in r.out and "***" not in r.out, r
    r = run_cli(["-d", dsn, "status"], cwd=tmp_path)
    assert r.code == 0 and str(STORIES) in r.out and "PostgreSQL" in r.out and "***" not in r.out, r


def test_an_odd_password_never_appears(counted_db, tmp_path):
    password = PASSWORDS[-1]
    dsn = with_password(counted_db.dsn, password)
    for argv in (["status"], ["status", "--json"], ["check"], ["db", "url"],
                 ["--debug", "-d", dsn, "drift", "--audio-table", "x.y"]):
        r = run_cli(["-d", dsn, *argv], cwd=tmp_path)
        assert password not in r.output and quote(password, safe="") not in r.output, r


@pytest.mark.parametrize("dsn, shown", [
    ("postgresql://u:13@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://postgres:postgres@postgres:5432/postgres", "postgresql://postgres:***@postgres:5432/postgres"),
    ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
    ("postgresql://u@h/db?password=xx&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
    ("host=h password=13 dbname=d13", "host=h password=*** dbname=d13"),
    ("host=h password='a b\\' c' dbname=d", "host=h password=*** dbname=d"),
    ("postgresql://h:5432/db?options=a@b", "postgresql://h:5432/db?options=a@b"),
    ("postgresql://user:password@host/db", "postgresql://user:password@host/db"),  # our hints' placeholder
])
def test_show_url_masks_only_the_password(dsn, shown):
    assert show_url(dsn) == shown


def test_mask_text_masks_connection_strings_inside_text():
    text = 'new_count 1325 at postgresql://u:13@h/db and "password=13 host=x"; total 13'
    assert mask_text(text) == 'new_count 1325 at postgresql://u:***@h/db and "password=*** host=x"; total 13'


def test_libpq_reads_what_with_password_writes(counted_db):
    # The fixture's URLs are real: the server (trusting local logins) accepts them.
    for password in PASSWORDS:
        with psycopg.connect(with_password(counted_db.dsn, password)) as conn:
            assert conn.info.password == password
