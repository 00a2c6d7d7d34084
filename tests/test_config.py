"""Where the DSN comes from, and how it is shown (no database needed)."""

import json

import pytest
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
