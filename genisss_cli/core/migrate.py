"""Migration 033 through Alembic: the core of `genisss migrate`.

Alembic is configured in code so that an installed genisss finds its scripts
from any folder; alembic/env.py calls run_online/run_offline from here so that
plain `alembic` in the repository behaves the same.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from pathlib import Path

from genisss_cli.conn import db as dbmod
from genisss_cli.core import catalog, schema
from genisss_cli.errors import Exit, GenisssError
from genisss_cli.errors import lock_timeout as lock_timed_out

# A transaction-level lock (schema.MIGRATE_LOCK), so it also works through a
# transaction pooler and is released on any failure.
DEFAULT_LOCK_TIMEOUT = 5.0


def script_location() -> Path:
    here = Path(__file__).resolve().parents[1]  # the genisss_cli package
    packaged = here / "_alembic"  # inside an installed wheel
    return packaged if packaged.is_dir() else here.parent / "alembic"


def alembic_config(buffer: io.StringIO | None = None):
    from alembic.config import Config

    cfg = Config(output_buffer=buffer, stdout=buffer or io.StringIO())
    cfg.set_main_option("script_location", str(script_location()))
    return cfg


# -- called from alembic/env.py ---------------------------------------------------


def run_online(context, config) -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(context, connection, config.attributes.get("lock_timeout", DEFAULT_LOCK_TIMEOUT),
                 config.attributes.get("steps"), config.attributes.get("adoption"))
        return
    # Plain `alembic` from the repository: the same database genisss would use.
    from genisss_cli.env import Env

    url = context.get_x_argument(as_dictionary=True).get("database_url")
    database = dbmod.resolve(Env(database_url=url))
    with engine(database) as (eng, _notices), eng.connect() as connection:
        _migrate(context, connection, DEFAULT_LOCK_TIMEOUT, None)


def _migrate(context, connection, lock_timeout: float, steps: list | None,
             adoption: dict | None = None) -> None:
    def record(ctx, step, heads, run_args):
        if steps is not None:  # what this process ran, after it held the lock
            steps.append((step.source_revision_ids, step.destination_revision_ids, step.up_revision_id))

    context.configure(connection=connection, transaction_per_migration=False,
                      on_version_apply=record)
    with context.begin_transaction():
        _guard(context, lock_timeout)
        # Under the lock, before Alembic looks the revision up in its scripts.
        raw = connection.connection.driver_connection
        current = schema.known_revision(raw)
        adopting = adoption is not None and current is None and raw.execute(
            "SELECT to_regclass(%s) IS NOT NULL", [schema.TABLE]).fetchone()[0]
        if adopting:  # a hand-applied schema: what it had, to say what changed
            adoption["before"] = catalog.snapshot(raw)
        context.run_migrations()
        if adopting:
            adoption["after"] = catalog.snapshot(raw)


def _guard(context, lock_timeout: float) -> None:
    # A migration waits for locks at most lock_timeout, instead of queueing in
    # front of a busy table; the advisory lock makes two `migrate up` apply once.
    context.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
    context.execute(f"SELECT pg_advisory_xact_lock({schema.MIGRATE_LOCK})")


def run_offline(context, config) -> None:
    context.configure(
        dialect_name="postgresql",
        literal_binds=True,
        transaction_per_migration=False,
        output_buffer=config.output_buffer,
    )
    with context.begin_transaction():
        _guard(context, config.attributes.get("lock_timeout", DEFAULT_LOCK_TIMEOUT))
        if reverts := config.attributes.get("reverts"):
            context.execute(down_guard(*reverts))
        context.run_migrations()


def down_guard(start: str, end: str) -> str:
    """The down script's first statement: Alembic's offline downgrade moves
    the version one step at a time and runs each step's DDL whatever the
    version is, so a second run failed half-way on a dropped table. This
    refuses, in one line and before any change, a database that is not at
    the script's start (already at its end: nothing to revert). No `%` and no
    `:name`: Alembic's offline mode would read them as parameters."""
    def shown(rev: str) -> str:
        return rev or "base"

    return f"""DO $$
DECLARE v text;
BEGIN
  IF to_regclass('{schema.VERSION_TABLE}') IS NOT NULL THEN
    SELECT version_num INTO v FROM {schema.VERSION_TABLE} LIMIT 1;
  END IF;
  v = coalesce(v, '');
  IF v = '{end}' THEN
    RAISE EXCEPTION USING MESSAGE = 'genisss: the database is already at {shown(end)}: '
      || 'this script has nothing to revert; nothing was changed';
  ELSIF v <> '{start}' THEN
    RAISE EXCEPTION USING MESSAGE = 'genisss: the database is at ' || coalesce(nullif(v, ''), 'base')
      || ', but this script reverts from {start}: nothing was changed';
  END IF;
END
$$"""


# -- used by the CLI -----------------------------------------------------------------


class engine:
    """A NullPool SQLAlchemy engine over genisss's own psycopg connection, with
    the server's NOTICEs (what the migration skipped) collected."""

    def __init__(self, database: dbmod.Database):
        self.database = database
        self.notices: list[str] = []

    def __enter__(self):
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        def creator():
            conn = dbmod.connect(self.database, autocommit=False)
            dbmod.keep_notices(conn, self.notices)
            return conn

        self.eng = create_engine("postgresql+psycopg://", creator=creator, poolclass=NullPool)
        return self.eng, self.notices

    def __exit__(self, *exc):
        self.eng.dispose()


@dataclass
class Adoption:
    """What `migrate up` found of a hand-applied schema (no alembic_version),
    and what it added and replaced there."""

    found: list[str]
    kept: list[catalog.Change]  # found and left as it was (the row: with its values)
    added: list[catalog.Change]
    replaced: list[catalog.Change]
    removed: list[catalog.Change]

    @classmethod
    def of(cls, before: catalog.Snapshot, after: catalog.Snapshot) -> Adoption:
        changes = catalog.diff(before, after)
        return cls(catalog.names(before), catalog.unchanged(before, changes),
                   *([c for c in changes if c.change == kind] for kind in ("added", "replaced", "removed")))


@dataclass
class MigrateResult:
    database: str
    before: str | None
    after: str | None
    applied: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    adopted: Adoption | None = None  # where up adopted a hand-applied schema

    @property
    def changed(self) -> bool:
        return self.before != self.after


class Upgraded(MigrateResult):
    """What `migrate up` did."""


class Downgraded(MigrateResult):
    """What `migrate down` did."""


@dataclass
class SqlPlan:
    """`migrate up --dry-run`: the SQL it would run; empty when nothing is pending."""

    database: str
    current: str | None
    pending: list[str]
    sql: str


@dataclass
class Script:
    """`migrate sql`: SQL for Supabase's SQL editor or psql; log, with -v, says
    on stderr what it holds."""

    sql: str
    log: list[str] = field(default_factory=list)


def _run(database: dbmod.Database, verb: str, target: str, lock_timeout: float) -> MigrateResult:
    result = Upgraded if verb == "upgrade" else Downgraded
    from alembic.util import CommandError

    from alembic import command

    cfg = alembic_config()
    steps: list = []
    adoption: dict = {}
    from genisss_cli.conn import blockers

    with engine(database) as (eng, notices), eng.connect() as conn, \
            blockers.watch(database, conn.connection.driver_connection, lock_timeout):
        cfg.attributes.update(connection=conn, lock_timeout=lock_timeout, steps=steps,
                              adoption=adoption if verb == "upgrade" else None)
        try:
            getattr(command, verb)(cfg, target)
        except (CommandError, AssertionError) as exc:  # Alembic asserts on "", "@", "head+1"
            raise _unknown(target, exc) from None
        except Exception as exc:
            raise migration_error(exc, lock_timeout) from None
        after = _current(conn)
    before = (steps[0][0] or (None,))[0] if steps else after
    adopted = Adoption.of(adoption["before"], adoption["after"]) if "after" in adoption else None
    return result(database.where, before, after, [s[2] for s in steps], list(notices), adopted)


def _unknown(target: str, exc: Exception) -> GenisssError:
    return GenisssError(Exit.USAGE, f"alembic: {str(exc) or f'cannot resolve revision {target!r}'}",
                        "see: genisss migrate history")


@functools.cache
def scripts():
    """The migration scripts, read once a process: they are this package's own
    files, and each read imports every revision's module again."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def check_target(target: str) -> None:
    """Raise the usage error `migrate up` would, for a target that names no revision."""
    from alembic.util import CommandError

    try:
        if target.strip().startswith("-"):
            raise CommandError(f"{target} is a step down (see: genisss migrate down)")
        scripts().get_revisions(target)
    except (CommandError, AssertionError, ValueError) as exc:
        raise _unknown(target, exc) from None


def _current(conn) -> str | None:
    raw = conn.connection.driver_connection  # read outside Alembic's transaction
    try:
        return schema.current_revision(raw)
    finally:
        raw.rollback()


def migration_error(exc: Exception, lock_timeout: float, what: str = "the migration") -> GenisssError:
    from psycopg import errors
    from sqlalchemy.exc import DBAPIError

    original = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(original, errors.LockNotAvailable):
        return lock_timed_out(what, lock_timeout)
    err = dbmod.translate(original)
    if err is None:
        raise exc
    if err.code == Exit.TIMEOUT:
        err.hint = "nothing was changed; retry"
    elif err.code == Exit.NOT_MIGRATED:
        err.code, err.hint = Exit.DATABASE, "nothing was changed"
    return err


def upgrade(database, target: str = "head", lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> MigrateResult:
    return _run(database, "upgrade", target, lock_timeout)


def downgrade(database, target: str = "-1", lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> MigrateResult:
    return _run(database, "downgrade", target, lock_timeout)


def _between(before: str | None, after: str | None) -> list[str]:
    """Revisions passed going from before to after, in the order they ran."""
    order = [None, *ordered_revisions()]
    i, j = order.index(before), order.index(after)
    return order[i + 1 : j + 1] if j > i else list(reversed(order[j + 1 : i + 1]))


@dataclass
class Revision:
    revision: str
    down_revision: str | None
    doc: str


@dataclass
class History:
    """The migrations genisss knows, oldest first, and the database's current one."""

    revisions: list[Revision]
    current: str | None = None
    unread: str | None = None  # why the current revision could not be read


def revisions_known() -> list[Revision]:
    revs = [Revision(r.revision, r.down_revision, r.doc) for r in scripts().walk_revisions()]
    return list(reversed(revs))


def history(env) -> History:
    """What `migrate history` shows, and the current revision of the database
    in use (the default one too). Where the default database (no -d) cannot
    be reached the list is still shown; one named with -d fails as in every
    command, and a revision newer than this genisss is refused."""
    revs = revisions_known()
    try:
        return History(revs, status(dbmod.resolve(env)).current)
    except GenisssError as exc:
        if env.database_url is not None or exc.code not in (Exit.CONNECT, Exit.EMBEDDED, Exit.TIMEOUT):
            raise
        return History(revs, None, str(exc))


def ordered_revisions() -> list[str]:
    return [r.revision for r in revisions_known()]


def dry_run_up(database, target: str, lock_timeout: float) -> SqlPlan:
    """The SQL `migrate up TARGET` would run, changing nothing."""
    st = status(database)
    if not st.pending:
        check_target(target)  # "nothing to apply" only for a real revision
    text = up_script(st.current, target, lock_timeout) if st.pending else ""
    return SqlPlan(st.database, st.current, st.pending, text)


def sql(direction: str, start: str | None = None, end: str | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT, verbose: bool = False) -> Script:
    """The SQL for Supabase's SQL editor or psql. Up is genisss's own script
    (rerunnable, see up_script); down is Alembic's offline mode behind
    down_guard."""
    if direction == "up":
        start = None if start == "base" else start
        text = up_script(start, end or "head", lock_timeout)
        log = []
        if verbose:
            counts: dict[str, int] = {}
            for rev, _ in upgrade_statements(start, end or "head"):
                counts[rev] = counts.get(rev, 0) + 1
            log = [f"{rev}: {n} statement{'s' * (n != 1)}" for rev, n in counts.items()]
            log.append(f"then {schema.VERSION_TABLE} is set to {resolve_revision(end or 'head')}")
        return Script(text, log)
    from alembic.util import CommandError

    from alembic import command

    buf = io.StringIO()
    cfg = alembic_config(buf)
    cfg.attributes["lock_timeout"] = lock_timeout
    rng = f"{start or schema.HEAD}:{end or 'base'}"
    cfg.attributes["reverts"] = (resolve_revision(start or "head"),
                                 "" if end in (None, "base") else resolve_revision(end))
    try:
        command.downgrade(cfg, rng, sql=True)
    except (CommandError, AssertionError, ValueError) as exc:  # ValueError: "a:b:c"
        raise _unknown(rng, exc) from None
    return Script(buf.getvalue())


def resolve_revision(name: str) -> str:
    """A revision's id from what the user typed (an id, "head"), or a usage error."""
    from alembic.util import CommandError

    try:
        rev = scripts().get_revision(name)
    except (CommandError, AssertionError, ValueError) as exc:
        raise _unknown(name, exc) from None
    if rev is None:  # "base"
        raise GenisssError(Exit.USAGE, f"{name!r} is the state before the first revision, not a revision",
                           "see: genisss migrate history")
    return rev.revision


def upgrade_statements(start: str | None, end: str) -> list[tuple[str, str]]:
    """(revision, statement) for every revision after start up to end, oldest
    first: each migration's UPGRADE list, the text `migrate up` runs. Every
    statement is idempotent, so that repair, stamp and a rerun script may run
    them over a schema that has them already."""
    order = ordered_revisions()
    first = order.index(resolve_revision(start)) + 1 if start else 0
    last = order.index(resolve_revision(end))
    if first > last + 1:
        raise GenisssError(Exit.USAGE, f"--from {start} is after --to {end}", "see: genisss migrate history")
    return [(rev, statement) for rev in order[first : last + 1]
            for statement in scripts().get_revision(rev).module.UPGRADE]


# Alembic's own version table, as its online mode creates it.
VERSION_TABLE_DDL = (f"CREATE TABLE IF NOT EXISTS {schema.VERSION_TABLE} (version_num varchar(32) NOT NULL, "
                     "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")


def up_script(start: str | None, end: str, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> str:
    """`migrate sql up`: one transaction that psql can run twice. The upgrades
    are idempotent; the version is set, not moved from one value to the next as
    Alembic's offline script does (which fails on a second run); and a database
    at a revision outside start..end is refused before anything changes."""
    statements = upgrade_statements(start, end)
    order = ordered_revisions()
    end_rev = resolve_revision(end)
    lo = order.index(resolve_revision(start)) if start else 0
    accepted = order[lo : order.index(end_rev) + 1]
    allowed = ", ".join(f"'{r}'" for r in ([""] if start is None else []) + accepted)
    lines = [
        f"-- genisss migrate sql up: {start or 'base'} -> {end_rev}. Safe to run twice.",
        "BEGIN;",
        f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms';",
        f"DO $$ BEGIN PERFORM pg_advisory_xact_lock({schema.MIGRATE_LOCK}); END $$;",
        VERSION_TABLE_DDL + ";",
        "DO $$\nDECLARE\n"
        f"  v text := coalesce((SELECT version_num FROM {schema.VERSION_TABLE} LIMIT 1), '');\n"
        f"BEGIN\n  IF v <> ALL (ARRAY[{allowed}]) THEN\n"
        "    RAISE EXCEPTION 'genisss: the database is at %, outside this script''s range "
        f"({start or 'base'} to {end_rev}): nothing was changed', coalesce(nullif(v, ''), 'base');\n"
        "  END IF;\nEND\n$$;",
    ]
    shown = None
    for rev, statement in statements:
        if rev != shown:
            lines.append(f"\n-- {rev}")
            shown = rev
        lines.append(statement.strip() + ";")
    lines += [
        "",
        f"DELETE FROM {schema.VERSION_TABLE};",
        f"INSERT INTO {schema.VERSION_TABLE} (version_num) VALUES ('{end_rev}');",
        "COMMIT;",
        "",
    ]
    return "\n".join(lines)


@dataclass
class Status:
    database: str
    current: str | None
    head: str
    pending: list[str]
    adoptable: bool  # global_stats exists but no revision: a hand-applied 033

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def status(database) -> Status:
    with dbmod.connect(database) as conn:
        current = schema.known_revision(conn)
        exists = conn.execute("SELECT to_regclass('public.global_stats') IS NOT NULL").fetchone()[0]
    order = ordered_revisions()
    pending = order[order.index(current) + 1 :] if current in order else order
    return Status(database.where, current, order[-1], pending, exists and current is None)


@dataclass
class DowngradePlan:
    database: str
    current: str | None
    target: str | None
    reverts: list[str]
    drops: list[str]
    counters: dict[str, int] | None


def plan_downgrade(database, target: str = "-1") -> DowngradePlan:
    """What `migrate down` would revert and lose, read before asking the operator."""
    from alembic.util import CommandError

    script = scripts()
    with dbmod.connect(database) as conn:
        current = schema.known_revision(conn)
        try:
            if target == "base":
                dest = None
            elif target.startswith("-"):
                revs = list(script.iterate_revisions(current, "base")) if current else []
                steps = int(target[1:])
                if steps > len(revs):  # as Alembic itself refuses it
                    raise ValueError(f"relative revision {target} goes below base")
                dest = revs[steps].revision if steps < len(revs) else None
            else:
                dest = script.get_revision(target).revision
        except (CommandError, ValueError, AssertionError) as exc:
            raise GenisssError(Exit.USAGE,
                               f"unknown target revision {target!r}: {str(exc) or 'not a revision'}",
                               "see: genisss migrate history") from None
        reverts = _between(current, dest) if current else []
        broadcasts = schema.BROADCAST in reverts and conn.execute(
            "SELECT to_regprocedure(%s) IS NOT NULL", [f"{schema.BROADCAST_FUNCTION}()"]).fetchone()[0]
        counters = None
        if schema.REALTIME in reverts and conn.execute(
            "SELECT to_regclass('public.global_stats') IS NOT NULL"
        ).fetchone()[0]:
            row = conn.execute(
                "SELECT total_stories, total_audio_generations FROM public.global_stats "
                "WHERE id = 'singleton'"
            ).fetchone()
            counters = {"total_stories": row[0], "total_audio_generations": row[1]} if row else {}
    drops = []
    if schema.SETTINGS in reverts:
        drops.append("the broadcast's settings (genisss.broadcast_settings), its flush, the private "
                     "channel's policy and pg_cron job where present: 035's broadcast function again")
    if schema.HINT in reverts:
        drops.append("global_stats_notify()'s empty payload and queue guard: 034's payload again")
    if broadcasts:  # 035 installed nothing where realtime.send() was missing
        drops.append("trigger global_stats_broadcast and its function")
    if schema.WATCHED in reverts and schema.REALTIME not in reverts:
        drops.append("trigger global_stats_notify's WHEN clause: it notifies on every update again")
    if schema.REALTIME in reverts:
        drops += [
            "table public.global_stats (the counter row)",
            "functions increment_story_counter(), increment_audio_counter(), sync_story_counter()",
            "trigger global_stats_notify and its function",
            "global_stats's membership of publication supabase_realtime",
        ]
    return DowngradePlan(database.where, current, dest, reverts, drops, counters)
