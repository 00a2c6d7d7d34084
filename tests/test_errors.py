"""Every error path: one line on stderr, its documented exit code, no password."""

import psycopg

SECRET = "s3cr3t-Pa55"


def one_line_without_secret(r, code):
    assert r.code == code, (r.code, r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("genisss: error: ")
    assert "Traceback" not in r.output
    assert SECRET not in r.output
    return lines[0]


def test_refused_connection(genisss):
    line = one_line_without_secret(
        genisss("migrate", "status", dsn=f"postgresql://u:{SECRET}@127.0.0.1:1/x"), 4)
    assert "refused" in line


def test_unknown_host(genisss):
    line = one_line_without_secret(
        genisss("migrate", "up", dsn=f"postgresql://u:{SECRET}@no-such-host.invalid/x"), 4)
    assert "unknown host" in line


def test_malformed_dsn(genisss):
    line = one_line_without_secret(genisss("migrate", "up", dsn=f"postgresql://u:{SECRET}@h:port/x"), 3)
    assert "malformed" in line
    one_line_without_secret(genisss("db", "url", dsn=f"user=u password={SECRET} nonsense"), 3)


def test_missing_database(server, genisss):
    dsn = psycopg.conninfo.make_conninfo(server.admin_dsn, dbname="no_such_db_here", password=SECRET)
    line = one_line_without_secret(genisss("migrate", "status", dsn=dsn), 4)
    assert '"no_such_db_here" does not exist' in line


def test_junk_dotenv(tmp_path, genisss):
    # (a word alone is a key without a value to python-dotenv, so two of them)
    (tmp_path / ".env").write_text(f"DATABASE_URL=postgresql://u:{SECRET}@h/db\n}}junk{{ more\n")
    line = one_line_without_secret(genisss("db", "url", cwd=tmp_path), 3)
    assert ".env line 2" in line


def test_dotenv_is_read_and_masked(tmp_path, genisss):
    (tmp_path / ".env").write_text(f"GENISSS_DATABASE_URL=postgresql://u:{SECRET}@db.example:6543/app\n")
    r = genisss("db", "url", "--json", cwd=tmp_path)
    assert r.code == 0 and SECRET not in r.output
    assert '"url": "postgresql://u:***@db.example:6543/app"' in r.out
    assert '"source": ".env GENISSS_DATABASE_URL"' in r.out
    assert '"transaction_pooler": true' in r.out


def test_missing_privilege(fresh_db, genisss):
    role = f"low_{fresh_db.name}"
    fresh_db.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        dsn = psycopg.conninfo.make_conninfo(fresh_db.dsn, user=role, password=SECRET)
        line = one_line_without_secret(genisss("migrate", "up", dsn=dsn), 6)
        assert "permission denied" in line
        assert fresh_db.scalar("SELECT to_regclass('public.global_stats')") is None
    finally:
        fresh_db.server.drop_db(fresh_db.name)
        with fresh_db.server.admin() as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_unknown_revision_is_a_usage_error(migrated_db, genisss):
    line = one_line_without_secret(genisss("migrate", "up", "no_such_rev", dsn=migrated_db.dsn), 2)
    assert "no_such_rev" in line


def test_typer_usage_error_is_one_line(genisss):
    r = genisss("migrate", "up", "--lock-timeout", "-5")
    assert r.code == 2 and "Traceback" not in r.output
    assert len(r.err.strip().splitlines()) == 1


def test_db_commands_refuse_a_non_embedded_database(genisss):
    # (db stop is not one: it stops the embedded server whatever the URL, test_embedded.py)
    for verb in ("start", "status"):
        line = one_line_without_secret(
            genisss("db", verb, dsn=f"postgresql://u:{SECRET}@127.0.0.1:1/x"), 2)
        assert "embedded" in line and "--database-url" in line


def test_debug_shows_the_traceback_but_not_the_password(genisss):
    r = genisss("--debug", "migrate", "status", dsn=f"postgresql://u:{SECRET}@127.0.0.1:1/x")
    assert r.code == 4
    assert "Traceback" in r.err and SECRET not in r.output


def test_bad_password(password_login, genisss):
    dsn = psycopg.conninfo.make_conninfo(password_login, password=SECRET)
    line = one_line_without_secret(genisss("migrate", "status", dsn=dsn), 4)
    assert "authentication failed for user pw_login" in line
    assert genisss("migrate", "status", dsn=password_login).code == 4  # no password given


def test_a_server_error_filed_as_operational_is_not_a_lost_connection(migrated_db, genisss):
    """Without its primary key, global_stats in a publication that publishes
    updates cannot be updated (SQLSTATE 55000), which psycopg files under
    OperationalError: the server answered, so it is its error, exit 10."""
    db = migrated_db
    db.execute("CREATE PUBLICATION genisss_test_pk FOR TABLE public.global_stats")
    try:
        db.execute("ALTER TABLE public.global_stats DROP CONSTRAINT global_stats_pkey")
        r = genisss("bump", "story", dsn=db.dsn)
        line = one_line_without_secret(r, 10)
        assert "does not have a replica identity" in line and "lost the connection" not in line, line
    finally:
        db.execute("DROP PUBLICATION genisss_test_pk")
