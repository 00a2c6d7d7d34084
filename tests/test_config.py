"""Where the DSN comes from, and how it is shown (no database needed)."""

import pytest

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


def test_empty_dotenv_and_empty_values_fall_through(tmp_path):
    (tmp_path / ".env").write_text("")
    assert config.resolve(None, {"DATABASE_URL": "  "}, tmp_path).embedded


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
