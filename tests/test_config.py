"""Where the DSN comes from, and how it is shown (no database needed)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability import run_cli

from genisss_cli.conn import config
from genisss_cli.errors import Exit, GenisssError
from genisss_cli.render.redact import show_url


def test_order_option_then_env_then_dotenv_then_embedded(tmp_path):
    (tmp_path / ".env").write_text("GENISSS_DATABASE_URL=postgresql://dotenv@h/db\n")
    env = {"GENISSS_DATABASE_URL": "postgresql://genisss@h/db", "DATABASE_URL": "postgresql://plain@h/db"}
    assert config.resolve("postgresql://opt@h/db", env, tmp_path).source == "--database-url"
    assert config.resolve(None, env, tmp_path).dsn == "postgresql://genisss@h/db"
    del env["GENISSS_DATABASE_URL"]
    assert config.resolve(None, env, tmp_path).source == "DATABASE_URL"
    assert config.resolve(None, {}, tmp_path).source == ".env GENISSS_DATABASE_URL"
    (tmp_path / ".env").write_text("# nothing here\n\nOTHER=1\n")
    target = config.resolve(None, {}, tmp_path)
    assert target.embedded and target.source == "embedded"


def test_dotenv_forms(tmp_path):
    (tmp_path / ".env").write_text(
        "export DATABASE_URL='postgresql://u:p w@h/db'  \nOTHER=x # comment\n"
    )
    assert config.read_dotenv(tmp_path / ".env") == {
        "DATABASE_URL": "postgresql://u:p w@h/db", "OTHER": "x"}


def test_an_empty_dotenv_falls_through(tmp_path):
    (tmp_path / ".env").write_text("")
    assert config.resolve(None, {}, tmp_path).embedded


@pytest.mark.parametrize("blank", ["", "  ", "\t"])
def test_a_source_set_to_nothing_is_a_usage_error(tmp_path, blank):
    env = {"GENISSS_DATABASE_URL": blank, "DATABASE_URL": "postgresql://plain@h/db"}
    with pytest.raises(GenisssError) as err:
        config.resolve(None, env, tmp_path)  # not DATABASE_URL: that would be another server
    assert err.value.code == Exit.USAGE
    assert err.value.message == "the database URL from GENISSS_DATABASE_URL is empty"
    assert err.value.hint == "set it, or unset it to use the next source"


# Through the command line: exit 2, one line naming the source, and nothing
# started (the embedded server's data folder is never made).
EMPTY_CASES = [
    (["-d", "", "status"], {}, "--database-url"),
    (["status", "-d", " "], {}, "--database-url"),
    (["status"], {"GENISSS_DATABASE_URL": ""}, "GENISSS_DATABASE_URL"),
    (["status"], {"DATABASE_URL": "", "GENISSS_DATABASE_URL": "   "}, "GENISSS_DATABASE_URL"),
    (["migrate", "up"], {"DATABASE_URL": ""}, "DATABASE_URL"),
    (["db", "url"], {"DATABASE_URL": " "}, "DATABASE_URL"),
]


@pytest.mark.parametrize("argv, environ, source", EMPTY_CASES)
def test_an_empty_url_on_the_command_line_names_its_source(tmp_path, argv, environ, source):
    run = run_cli(argv, env=environ, cwd=tmp_path)
    assert run.code == 2, run
    assert run.err.strip().splitlines() == [f"genisss: error: the database URL from {source} is empty ("
                                            + ("give a URL, or leave the option out)"
                                               if source == "--database-url"
                                               else "set it, or unset it to use the next source)")]
    assert run.out == "" and not (tmp_path / "genisss-data").exists()


def test_an_empty_url_json_and_in_dotenv(tmp_path):
    (tmp_path / ".env").write_text("OTHER=1\nDATABASE_URL=\n")
    run = run_cli(["db", "url", "--json"], cwd=tmp_path)
    assert run.code == 2, run
    assert json.loads(run.err) == {"error": "the database URL from .env DATABASE_URL is empty",
                                   "exit": 2,
                                   "hint": "set it, or remove the line to use the next source"}
    assert not (tmp_path / "genisss-data").exists()


def test_dotenv_with_junk_is_a_config_error(tmp_path):
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://h/db\nthis is junk\n")
    with pytest.raises(GenisssError) as err:
        config.resolve(None, {}, tmp_path)
    assert err.value.code == Exit.CONFIG and "line 2" in err.value.message


@pytest.mark.parametrize("text, why", [
    ('A=1\nDATABASE_URL="postgresql://h/db\n', 'line 2 is not KEY=VALUE: the " it opens is never closed'),
    ("DATABASE_URL='postgresql://h/db\nB=2\n", "line 1 is not KEY=VALUE: the ' it opens is never closed"),
    ('DATABASE_URL="postgresql://h/db" prod\n',
     'line 1 is not KEY=VALUE: text follows the closing " (a comment starts with #)'),
    ("DATABASE URL=postgresql://h/db\n", "line 1 is not KEY=VALUE"),
])
def test_a_dotenv_line_says_what_is_wrong_with_it(tmp_path, text, why):
    import dotenv

    (tmp_path / ".env").write_text(text)
    assert "DATABASE_URL" not in dotenv.dotenv_values(tmp_path / ".env")  # python-dotenv skips it too
    with pytest.raises(GenisssError) as err:
        config.resolve(None, {}, tmp_path)
    assert err.value.code == Exit.CONFIG and err.value.message == f".env {why}"


def test_malformed_dsn_is_a_config_error_without_the_password():
    with pytest.raises(GenisssError) as err:
        config.normalize("postgresql://u:s3cr3t@host:notaport/db", "--database-url")
    assert err.value.code == Exit.CONFIG
    assert "s3cr3t" not in str(err.value)


@pytest.mark.parametrize(
    "dsn, shown",
    [
        ("postgresql://u:s3cr3t@db.example.com:6543/postgres",
         "postgresql://u:***@db.example.com:6543/postgres"),
        ("postgresql+psycopg://u:s3cr3t@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("host=h port=5432 user=u password=s3cr3t dbname=d", "host=h port=5432 user=u password=*** dbname=d"),
        ("postgresql://postgres@/postgres?host=/tmp/x&port=5432",
         "postgresql://postgres@/postgres?host=/tmp/x&port=5432"),
    ],
)
def test_display_masks_the_password(dsn, shown):
    assert show_url(config.normalize(dsn, "test")) == shown


# -- .env as python-dotenv reads it ------------------------------------------------------------


def test_dotenv_forms_python_dotenv_knows(tmp_path):
    (tmp_path / ".env").write_text(
        'A="postgresql://u:pw@h/db" # the production one\n'
        "export B = 'single # not a comment'   # but this is\n"
        'C="tab\\there \\"quoted\\" \\\\ back"\n'
        "D=bare value # comment\n"
        "E=bare#kept\n"
        "F= # only a comment\n"
        'G="two\nlines"\n'
        "H\n"
        "I=${A}?sslmode=require\n"
        "J=${NOT_SET:-fallback}/${ALSO_NOT_SET}\n"
        "K='${A}'\n"
    )
    assert config.read_dotenv(tmp_path / ".env", {}) == {
        "A": "postgresql://u:pw@h/db", "B": "single # not a comment",
        "C": 'tab\there "quoted" \\ back', "D": "bare value", "E": "bare#kept", "F": "",
        "G": "two\nlines", "H": None, "I": "postgresql://u:pw@h/db?sslmode=require",
        "J": "fallback/", "K": "postgresql://u:pw@h/db"}
    # the environment wins over the file's own keys, as with load_dotenv()
    assert config.read_dotenv(tmp_path / ".env", {"A": "x"})["I"] == "x?sslmode=require"


# Pieces that make up .env text: each rule of python-dotenv's grammar, and its edges.
PIECES = ["export ", "GZ_A", "GZ_B", "=", " ", "\t", "'", '"', "#", "\\", "n", "x", "y z", "\n", "\r\n",
          "${GZ_A}", "${GZ_C:-d}", "$", "{", "}", ":", "@", "=#", "''", '""']


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(PIECES), max_size=24).map("".join))
def test_dotenv_reads_as_python_dotenv_does(tmp_path, text):
    """python-dotenv itself is the oracle, reading the same file: the same
    values, and a file it cannot fully read (it would skip a line) is an
    error here."""
    import dotenv
    from dotenv.parser import parse_stream

    path = tmp_path / ".env"
    path.write_bytes(text.encode())
    with path.open(encoding="utf-8") as stream:
        unread = any(b.error for b in parse_stream(stream))
    if unread:
        with pytest.raises(GenisssError) as err:
            config.read_dotenv(path, {})
        assert err.value.code == Exit.CONFIG
    else:
        # No GZ_ name is in this environment: both look only at the file.
        assert config.read_dotenv(path, {}) == dotenv.dotenv_values(path)


def test_a_quoted_dotenv_url_with_a_comment_reaches_the_server(migrated_db, tmp_path):
    (tmp_path / ".env").write_text(f'export DATABASE_URL="{migrated_db.dsn}"  # the test database\n')
    for argv in (["status"], ["status", "--json"]):
        run = run_cli(argv, cwd=tmp_path)
        assert run.code == 0, run
    assert json.loads(run.out)["total_stories"] == 0
    run = run_cli(["db", "url", "--json"], cwd=tmp_path)
    assert json.loads(run.out)["source"] == ".env DATABASE_URL"


def test_a_dotenv_url_key_without_a_value_is_a_config_error(tmp_path):
    (tmp_path / ".env").write_text("DATABASE_URL\n")
    for argv in (["status"], ["db", "url", "--json"]):
        run = run_cli(argv, cwd=tmp_path)
        assert run.code == 3, run
    assert json.loads(run.err) == {"error": ".env has DATABASE_URL without '='", "exit": 3,
                                   "hint": "write KEY=VALUE, or remove the line to use the next source"}
    assert not (tmp_path / "genisss-data").exists()


# -- a URL libpq cannot read: its reason, the password masked, and the fix ----------------------

PW = "s3cr3t-Pw"
PGBOUNCER = ("drop ?pgbouncer=true: that is Prisma's setting, not PostgreSQL's; "
             "genisss detects a pooler itself")
SCHEME = "did you mean postgresql://?"
URL_ERRORS = [  # (where the URL comes from, the URL, libpq's reason as shown, the hint)
    ("-d", f"postgresql://u:{PW}@db.example:6543/postgres?pgbouncer=true",
     'invalid URI query parameter: "pgbouncer"', PGBOUNCER),
    ("DATABASE_URL", f"postgress://u:{PW}@db.example:5432/app",
     'missing "=" after "postgress://u:***@db.example:5432/app" in connection info string', SCHEME),
    ("GENISSS_DATABASE_URL", f"postgresql:/u:{PW}@h/app",
     'missing "=" after "postgresql:/u:***@h/app" in connection info string', SCHEME),
    ("-d", f"mysql://u:{PW}@h/app",
     'missing "=" after "mysql://u:***@h/app" in connection info string',
     "a PostgreSQL URL starts with postgresql://"),
    ("DATABASE_URL", f'"postgresql://u:{PW}@h/app" # production',
     'missing "=" after ""postgresql://u:***@h/app"" in connection info string',
     "remove the quotes around the URL"),
    (".env", f'DATABASE_URL="postgresql://u:{PW}@h/app?pgbouncer=true" # production\n',
     'invalid URI query parameter: "pgbouncer"', PGBOUNCER),
    (".env", f"DATABASE_URL=postgresql://u:{PW}@h/app?schema=public\n",
     'invalid URI query parameter: "schema"', "drop ?schema=...: that is Prisma's setting, not PostgreSQL's"),
    # libpq quotes a piece cut inside the password, or the password alone
    ("-d", "postgress://u:p w@h/app", 'missing "=" after "postgress://u:***" in connection info string',
     SCHEME),
    ("-d", "postgresql://u:p w@h/app",
     'unexpected spaces found in "***", use percent-encoded spaces (%20) instead',
     "a URL holds no spaces: remove them, or write one that belongs to a password as %20"),
    (".env", f"DATABASE_URL='postgresql://u:{PW}@h/app # production'\n",
     'unexpected spaces found in "app # production", use percent-encoded spaces (%20) instead',
     "a comment inside the quotes is part of the value: end the quotes before the #"),
    ("-d", f"postgresql://u:{PW}%zz@h/app", 'invalid percent-encoded token: "***"', "write a '%' as %25"),
    ("-d", f"postgresql://u:{PW}@[::1/app",
     'end of string reached when looking for matching "]" in IPv6 host address in URI: '
     '"postgresql://u:***@[::1/app"', "expected postgresql://user:password@host:5432/dbname"),
]


@pytest.mark.parametrize("source, url, reason, hint", URL_ERRORS)
def test_a_url_error_keeps_libpqs_reason_and_gives_the_fix(tmp_path, source, url, reason, hint):
    env, argv = {}, []
    if source == "-d":
        argv, shown_source = ["-d", url], "--database-url"
    elif source == ".env":
        (tmp_path / ".env").write_text(url)
        shown_source = ".env DATABASE_URL"
    else:
        env[source], shown_source = url, source
    message = f"malformed database URL (from {shown_source}): {reason}"
    run = run_cli([*argv, "status"], env=env, cwd=tmp_path)
    assert run.code == 3, run
    assert run.err == f"genisss: error: {message} ({hint})\n" and run.out == ""
    run = run_cli([*argv, "migrate", "up", "--json"], env=env, cwd=tmp_path)
    assert run.code == 3, run
    assert json.loads(run.err) == {"error": message, "exit": 3, "hint": hint} and run.out == ""
    for secret in (PW, "p w", "p%20w"):
        assert secret not in run.err
    assert not (tmp_path / "genisss-data").exists()  # nothing started


MALFORMED_SHAPES = ["postgress://u:{}@h/db", "postgresql://u:{}@h/db?pgbouncer=true", "postgresql//u:{}@h/db",
                    '"postgresql://u:{}@h/db" # c', "postgresql://u:{}@[h/db", "postgresql:u:{}@h/db",
                    "user=u password={} junk", "host=h password={}", "postgresql://u:{}%zz@h/db",
                    "pgsql://u:{}@h/db", "postgresql://u@h/db?password={}&x", "mysql://u:{}@h/db"]


@settings(max_examples=400, deadline=None)
@given(shape=st.sampled_from(MALFORMED_SHAPES),
       middle=st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=12))
def test_no_malformed_url_shows_its_password(shape, middle):
    """Whatever the password holds (spaces, '@', '/', quotes, '%'), libpq's
    reason as genisss shows it (passed through mask_text, as render does)
    carries neither end of it: Zq... and ...Qz are in no other text."""
    from genisss_cli.render.redact import mask_text

    dsn = shape.format(f"Zq{middle}Qz")
    try:
        config.normalize(dsn, "-d")
    except GenisssError as err:
        shown = mask_text(str(err))
        assert "Zq" not in shown and "Qz" not in shown, (dsn, shown)
