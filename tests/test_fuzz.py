"""Bad input: hostile names, counts, revisions and .env files, then the whole
command line fuzzed with hypothesis. Whatever comes in: one clear line, a
documented exit code, no traceback, and nothing run that was not asked for.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability import EXIT_CODES, assert_consistent, run_cli

from genisss_cli.core import schema

CLOSED = "postgresql://fuzz:fuzz-pw@127.0.0.1:1/nowhere"
# Whatever a fuzzed -d says, libpq's defaults point at the closed port too:
# no fuzzed input can reach a server the test did not give it.
SAFE_ENV = {"PGHOST": "127.0.0.1", "PGPORT": "1", "PGUSER": "fuzz", "PGDATABASE": "nowhere",
            "PGCONNECT_TIMEOUT": "2"}

HOSTILE_NAMES = [
    "x; DROP TABLE user_stories; --",
    "supabase_realtime'; DROP TABLE public.user_stories; --",
    'supabase_realtime"; DROP TABLE public.user_stories; --',
    "public.user_stories; DELETE FROM public.user_stories",
    'user_stories"; TRUNCATE public.user_stories; --',
    "$$; DROP TABLE public.user_stories; $$",
    "Robert'); DROP TABLE user_stories;--",
    "%s", "%(pub)s", "{}", "{0}", "\\", "'", '"', "''", '""', "a.b.c", ".", "..", " ", "",
    "x" * 64, "é" * 40, "PUBLIC.USER_STORIES", "public.global_stats", "pg_catalog.pg_authid",
]


def snapshot(db) -> dict:
    """What no read-only command may change."""
    with db.connect() as conn:
        q = conn.execute
        return {
            "stories": q("SELECT count(*), coalesce(sum(hashtext(coalesce(title, ''))), 0) "
                         "FROM public.user_stories").fetchone(),
            "counter": q("SELECT total_stories, total_audio_generations FROM public.global_stats").fetchall(),
            "relations": q("""SELECT n.nspname, c.relname, c.relkind FROM pg_class c
                              JOIN pg_namespace n ON n.oid = c.relnamespace
                              WHERE n.nspname !~ '^(pg_|information_schema)' ORDER BY 1, 2""").fetchall(),
            "functions": q("SELECT proname, md5(prosrc) FROM pg_proc "
                           "WHERE pronamespace = 'public'::regnamespace ORDER BY 1").fetchall(),
            "publications": q("SELECT pubname, tablename FROM pg_publication_tables ORDER BY 1, 2"
                              ).fetchall(),
            "slots": q("SELECT slot_name FROM pg_replication_slots").fetchall(),
            "version": q("SELECT version_num FROM alembic_version").fetchall(),
        }


# -- hostile names ---------------------------------------------------------------------------------


def test_hostile_names_are_only_ever_names(migrated_db, tmp_path):
    """--publication and --audio-table with quotes, semicolons and SQL: each is
    a name that does not exist (or one the user asked to count), never SQL."""
    db = migrated_db
    db.execute("INSERT INTO public.user_stories (title) VALUES ('kept'), ('safe')")
    before = snapshot(db)
    env = {"GENISSS_DATABASE_URL": db.dsn}
    for i, name in enumerate(HOSTILE_NAMES):
        for argv in (["status", "--json", "--publication", name],
                     ["check", "--json", "--publication", name] if i < 8 else ["status"],
                     ["drift", "--json", "--audio-table", name],
                     ["drift", "--estimate", "--audio-table", name] if i < 8 else ["drift"]):
            run = run_cli(argv, env=env, cwd=tmp_path)
            assert run.code in (0, 1, 2), (argv, run)
            assert "Traceback" not in run.output
            if run.code == 2:
                assert len(run.err.strip().splitlines()) == 1, run
    # One through the live check, which hands the name to pgoutput.
    run = run_cli(["check", "--live", "--live-timeout", "1", "--json", "--publication", HOSTILE_NAMES[1]],
                  env=env, cwd=tmp_path)
    assert run.code == 1 and "Traceback" not in run.output
    assert snapshot(db) == before


def test_hostile_name_reaches_the_server_quoted(migrated_db, tmp_path):
    """A table whose name really is SQL is counted, as the name it is."""
    db = migrated_db
    name = 'audio; DROP TABLE user_stories; --'
    db.execute(f'CREATE TABLE public."{name}" (id int)')
    db.execute(f'INSERT INTO public."{name}" VALUES (1), (2), (3)')
    run = run_cli(["drift", "--json", "--audio-table", f"public.{name}"],
                  env={"GENISSS_DATABASE_URL": db.dsn}, cwd=tmp_path)
    assert run.code == 1, run  # audio counter 0 against 3 rows: drift
    assert '"actual": 3' in run.out
    assert db.scalar("SELECT to_regclass('public.user_stories') IS NOT NULL")


# -- counts and durations --------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["bump", "story", "--count", "-1"],
    ["bump", "story", "--count", "0"],
    ["bump", "story", "--count", "1000001"],
    ["bump", "story", "--count", str(10**30)],
    ["bump", "story", "--count", "1e3"],
    ["bump", "story", "--count", "ten"],
    ["bump", "story", "-n", ""],
    ["bump", "stories"],
    ["bump", "story; DROP TABLE user_stories"],
    ["watch", "--count", "0"],
    ["watch", "--count", "-5"],
    ["watch", "--timeout", "-1"],
    ["watch", "--timeout", "nan"],
    ["drift", "--tolerance", "-1"],
    ["migrate", "up", "--lock-timeout", "0"],
    ["migrate", "up", "--lock-timeout", "nan"],
    ["migrate", "up", "--lock-timeout", "inf"],
    ["migrate", "down", "--yes", "--lock-timeout", "601"],
    ["--connect-timeout", "0", "status"],
    ["--connect-timeout", "nan", "status"],
    ["--connect-timeout", "-inf", "status"],
    ["check", "--live-timeout", "1e9"],
    ["migrate", "sql", "sideways"],
    ["status", "--no-such-option"],
    ["no-such-command"],
])
def test_bad_numbers_and_words_are_usage_errors_that_change_nothing(migrated_db, tmp_path, argv):
    before = snapshot(migrated_db)
    run = run_cli(argv, env={"GENISSS_DATABASE_URL": migrated_db.dsn}, cwd=tmp_path)
    assert run.code == 2, run
    assert run.out == "" and len(run.err.strip().splitlines()) == 1 and run.err.startswith("genisss: error:")
    assert snapshot(migrated_db) == before


def test_bad_connect_timeout_in_the_environment(tmp_path):
    for value in ("soon", "0", "-3", "nan", "inf", "1e9"):
        run = run_cli(["status"], env={"GENISSS_DATABASE_URL": CLOSED, "GENISSS_CONNECT_TIMEOUT": value},
                      cwd=tmp_path)
        assert run.code == 3 and "GENISSS_CONNECT_TIMEOUT" in run.err, (value, run)


REVISIONS = ["nosuch", "x; DROP TABLE user_stories; --", "", " ", "@", "head+1", "+1", "heads:base",
             "-999", "033_global_stats_realtimeX", "base@nowhere", "%s", "'", schema.HEAD + "'"]


def test_unknown_revisions_are_usage_errors_that_change_nothing(migrated_db, tmp_path):
    before = snapshot(migrated_db)
    env = {"GENISSS_DATABASE_URL": migrated_db.dsn}
    for rev in REVISIONS:
        for argv in (["migrate", "up", "--", rev], ["migrate", "down", "--yes", "--", rev],
                     ["migrate", "down", "--dry-run", "--", rev], ["migrate", "up", "--dry-run", "--", rev],
                     ["migrate", "sql", "up", "--to", rev], ["migrate", "sql", "down", "--from", rev]):
            run = run_cli(argv, env=env, cwd=tmp_path)
            if rev in ("", " ", "+1", "heads:base") and "sql" in argv and run.code == 0:
                continue  # Alembic's range syntax: empty is the default, +1 from base is baseline
            assert run.code == 2, (argv, run)
            assert len(run.err.strip().splitlines()) == 1 and "Traceback" not in run.output, run
    assert snapshot(migrated_db) == before


# -- .env files ------------------------------------------------------------------------------------


DOTENV_JUNK = [
    b"DATABASE_URL\n",  # no =
    b"=postgresql://h/db\n",  # no key
    b"DATABASE_URL=postgresql://u:pw@h:port/x\n",  # malformed URL
    b'DATABASE_URL="postgresql://h/db\n',  # unbalanced quote
    b"DATABASE_URL=postgresql://h/db\n-- DROP TABLE user_stories;\n",
    b"\xff\xfe\x00D\x00A\x00",  # UTF-16, not UTF-8
    b"DATABASE_URL=postgresql://h/\xff\n",  # not UTF-8
    b"DATABASE URL=postgresql://h/db\n",
    b"<<<<<<< HEAD\nDATABASE_URL=postgresql://a/b\n=======\n",  # a merge conflict
]


def test_dotenv_junk_is_a_config_error(tmp_path):
    for junk in DOTENV_JUNK:
        (tmp_path / ".env").write_bytes(junk)
        for argv in (["status"], ["migrate", "up"], ["db", "url", "--json"]):
            run = run_cli(argv, cwd=tmp_path, env=SAFE_ENV)
            assert run.code == 3, (junk, argv, run)
            assert len(run.err.strip().splitlines()) == 1 and ".env" in run.err, run


def test_dotenv_that_is_empty_or_only_comments_falls_through(tmp_path):
    # `export` alone and 1KEY are keys to python-dotenv (no value; a name), not junk.
    for content in (b"", b"\n\n", b"# nothing\n", b"OTHER=1\nOTHER_URL=\n", b"\xef\xbb\xbf# BOM\n",
                    b"export\n", b"1KEY=x\n"):
        (tmp_path / ".env").write_bytes(content)
        run = run_cli(["db", "status", "--json"], cwd=tmp_path)
        assert run.code == 0 and '"running": false' in run.out, (content, run)


def test_dotenv_with_a_bom_and_crlf_is_read(tmp_path):
    (tmp_path / ".env").write_bytes(b"\xef\xbb\xbfGENISSS_DATABASE_URL=postgresql://u:pw@db.example:5432/app\r\n")
    run = run_cli(["db", "url", "--json"], cwd=tmp_path)
    assert run.code == 0 and '"url": "postgresql://u:***@db.example:5432/app"' in run.out, run


# -- fuzzing the whole command line --------------------------------------------------------------


def _tree():
    """(command words, its options) for every command, and the global options."""
    import typer

    from genisss_cli.cli import app

    group = typer.main.get_command(app)
    skip = {"--install-completion", "--show-completion", "--help", "-h", "--version"}
    glob = [o for p in group.params for o in p.opts if o not in skip]
    cmds = []
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None) or {None: cmd}
        for sub, leaf in subs.items():
            opts = [o for p in leaf.params for o in p.opts if o.startswith("-") and o not in skip]
            cmds.append(([name] + ([sub] if sub else []), opts))
    return glob, cmds


GLOBAL_OPTS, COMMANDS = _tree()
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24)
values = st.one_of(
    text,
    st.sampled_from(HOSTILE_NAMES + REVISIONS + ["story", "audio", "up", "down", "head", "base", "-1",
                                                 "--", "-", "--json", "\udcff", "a\udc80b", CLOSED,
                                                 "postgresql://u:pw@h:port/x", "host=h password=pw x"]),
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@st.composite
def command_lines(draw):
    argv = []
    for opt in draw(st.lists(st.sampled_from(GLOBAL_OPTS), max_size=2)):
        argv += [opt] + ([] if opt == "--debug" else [draw(values)])
    if draw(st.integers(0, 9)) == 0:  # now and then, no structure at all
        return argv + draw(st.lists(values, max_size=6))
    words, opts = draw(st.sampled_from(COMMANDS))
    argv += words
    for _ in range(draw(st.integers(0, 4))):
        if opts and draw(st.booleans()):
            argv.append(draw(st.sampled_from(opts)))
        argv.append(draw(values))
    return argv


FUZZ = settings(max_examples=150, deadline=None, derandomize=False, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def is_json_line(line: str) -> bool:
    """With --json, an error (and watch's summary) is one JSON object on stderr."""
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def check_run(argv: list[str], run, may_run_on: bool = False) -> None:
    assert run.code in EXIT_CODES, (argv, run)
    if not may_run_on:  # against a closed port nothing may take long enough to be interrupted
        assert run.code != 130, (argv, run)
    assert run.trace == "", (argv, run)  # nothing escaped run(), even with --debug
    if "--debug" not in argv:
        assert "Traceback" not in run.output, (argv, run)
        for line in run.err.splitlines() if "psql" not in argv else []:  # psql's stderr is psql's
            assert line.startswith("genisss: ") or not line.strip() or is_json_line(line), (argv, run)
    if run.code >= 2 and run.code != 130 and "Usage:" not in run.out:  # (no_args_is_help)
        assert run.err.strip(), (argv, run)


@FUZZ
@given(argv=command_lines())
def test_fuzzed_command_lines_never_crash(tmp_path, argv):
    """Against a closed port: usage and connection errors, never a traceback."""
    run = run_cli(argv, env={"GENISSS_DATABASE_URL": CLOSED, "HOME": str(tmp_path), **SAFE_ENV},
                  cwd=tmp_path, guard=20)
    check_run(argv, run)


@settings(FUZZ, max_examples=60)
@given(argv=command_lines())
def test_fuzzed_command_lines_against_a_real_database(migrated_db, tmp_path, argv):
    """Against a real database: any command may run (migrate down --yes
    included), but user_stories never changes, no slot is left behind, and
    the revision always matches the objects (never half-applied)."""
    db = migrated_db
    if db.scalar("SELECT count(*) FROM public.user_stories") == 0:
        db.execute("INSERT INTO public.user_stories (title) "
                   "SELECT 'story ' || i FROM generate_series(1, 5) i")
    stories = snapshot(db)["stories"]
    # Ctrl-C after 3 s: a fuzzed `watch` without --timeout, or a bump of a
    # million, ends the way an operator would end it.
    run = run_cli(argv, env={"GENISSS_DATABASE_URL": db.dsn, "HOME": str(tmp_path), **SAFE_ENV},
                  cwd=tmp_path, guard=3)
    check_run(argv, run, may_run_on=True)
    after = snapshot(db)
    assert after["stories"] == stories and after["slots"] == [], (argv, run)
    assert_consistent(db.dsn)


@pytest.mark.soak
@settings(FUZZ, max_examples=3000)
@given(argv=command_lines())
def test_soak_fuzzed_command_lines_never_crash(tmp_path, argv):
    test_fuzzed_command_lines_never_crash.hypothesis.inner_test(tmp_path, argv)


@pytest.mark.soak
@settings(FUZZ, max_examples=500)
@given(argv=command_lines())
def test_soak_fuzzed_command_lines_against_a_real_database(migrated_db, tmp_path, argv):
    test_fuzzed_command_lines_against_a_real_database.hypothesis.inner_test(migrated_db, tmp_path, argv)


# -- junk on the channel ---------------------------------------------------------------------------

JUNK = ["", "{", "[]", "null", '"text"', '{"total_stories": "x"}',
        '{"total_stories": 1e400, "total_audio_generations": 0}',
        '{"total_stories": 5, "total_audio_generations": 0, "sent_at": 1e400}',
        '{"total_stories": NaN, "total_audio_generations": 0}', "x" * 7999]


def test_watch_outlives_junk_notifications(migrated_db, popen_genisss):
    """Any login may NOTIFY global_stats with anything: each is one harmless
    read of the row, and only the table's values are ever printed."""
    from reliability import WatchReader, wait_for

    watch = WatchReader(popen_genisss("watch", "--json", dsn=migrated_db.dsn))
    wait_for(lambda: watch.err, what="watch to connect")
    with migrated_db.connect() as conn:
        for payload in JUNK:
            conn.execute("SELECT pg_notify('global_stats', %s)", [payload])
        conn.execute("SELECT increment_story_counter()")
    wait_for(lambda: watch.totals and watch.totals[-1][0] == 1, what="the real change")
    assert watch.proc.poll() is None
    assert watch.pairs == [(1, 0)]
    assert watch.stop() == 0 and "Traceback" not in "".join(watch.err)
