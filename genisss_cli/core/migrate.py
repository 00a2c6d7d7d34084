"""Migration 033 through Alembic: the core of `genisss migrate`.

Alembic is configured in code so that an installed genisss finds its scripts
from any folder; alembic/env.py calls run_online/run_offline from here so that
plain `alembic` in the repository behaves the same.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from genisss_cli.conn import db as dbmod
from genisss_cli.core import schema
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
                 config.attributes.get("steps"))
        return
    # Plain `alembic` from the repository: the same database genisss would use.
    from genisss_cli.env import Env

    url = context.get_x_argument(as_dictionary=True).get("database_url")
    database = dbmod.resolve(Env(database_url=url))
    with engine(database) as (eng, _notices), eng.connect() as connection:
        _migrate(context, connection, DEFAULT_LOCK_TIMEOUT, None)


def _migrate(context, connection, lock_timeout: float, steps: list | None) -> None:
    def record(ctx, step, heads, run_args):
        if steps is not None:  # what this process ran, after it held the lock
            steps.append((step.source_revision_ids, step.destination_revision_ids, step.up_revision_id))

    context.configure(connection=connection, transaction_per_migration=False,
                      on_version_apply=record)
    with context.begin_transaction():
        _guard(context, lock_timeout)
        # Under the lock, before Alembic looks the revision up in its scripts.
        schema.known_revision(connection.connection.driver_connection)
        context.run_migrations()


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
        context.run_migrations()


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
            conn.add_notice_handler(self._notice)
            return conn

        self.eng = create_engine("postgresql+psycopg://", creator=creator, poolclass=NullPool)
        return self.eng, self.notices

    def _notice(self, diag) -> None:
        if diag.message_primary and diag.message_primary.startswith("genisss:"):
            self.notices.append(diag.message_primary.removeprefix("genisss:").strip())

    def __exit__(self, *exc):
        self.eng.dispose()


@dataclass
class MigrateResult:
    database: str
    before: str | None
    after: str | None
    applied: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

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
    """`migrate sql`: SQL for Supabase's SQL editor or psql."""

    sql: str


def _run(database: dbmod.Database, verb: str, target: str, lock_timeout: float) -> MigrateResult:
    result = Upgraded if verb == "upgrade" else Downgraded
    from alembic.util import CommandError

    from alembic import command

    cfg = alembic_config()
    steps: list = []
    from genisss_cli.conn import blockers

    with engine(database) as (eng, notices), eng.connect() as conn, \
            blockers.watch(database, conn.connection.driver_connection, lock_timeout):
        cfg.attributes.update(connection=conn, lock_timeout=lock_timeout, steps=steps)
        try:
            getattr(command, verb)(cfg, target)
        except (CommandError, AssertionError) as exc:  # Alembic asserts on "", "@", "head+1"
            raise _unknown(target, exc) from None
        except Exception as exc:
            raise _migration_error(exc, lock_timeout) from None
        after = _current(conn)
    before = (steps[0][0] or (None,))[0] if steps else after
    return result(database.where, before, after, [s[2] for s in steps], list(notices))


def _unknown(target: str, exc: Exception) -> GenisssError:
    return GenisssError(Exit.USAGE, f"alembic: {str(exc) or f'cannot resolve revision {target!r}'}",
                        "see: genisss migrate history")


def check_target(target: str) -> None:
    """Raise the usage error `migrate up` would, for a target that names no revision."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        if target.strip().startswith("-"):
            raise CommandError(f"{target} is a step down (see: genisss migrate down)")
        ScriptDirectory.from_config(alembic_config()).get_revisions(target)
    except (CommandError, AssertionError, ValueError) as exc:
        raise _unknown(target, exc) from None


def _current(conn) -> str | None:
    raw = conn.connection.driver_connection  # read outside Alembic's transaction
    try:
        return schema.current_revision(raw)
    finally:
        raw.rollback()


def _migration_error(exc: Exception, lock_timeout: float) -> GenisssError:
    from psycopg import errors
    from sqlalchemy.exc import DBAPIError

    original = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(original, errors.LockNotAvailable):
        return lock_timed_out("the migration", lock_timeout)
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


def revisions_known() -> list[Revision]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    revs = [Revision(r.revision, r.down_revision, r.doc) for r in script.walk_revisions()]
    return list(reversed(revs))


def history(database=None) -> History:
    """What `migrate history` shows; the current revision where a database is given."""
    return History(revisions_known(), status(database).current if database is not None else None)


def ordered_revisions() -> list[str]:
    return [r.revision for r in revisions_known()]


def dry_run_up(database, target: str, lock_timeout: float) -> SqlPlan:
    """The SQL `migrate up TARGET` would run, changing nothing."""
    st = status(database)
    if not st.pending:
        check_target(target)  # "nothing to apply" only for a real revision
    text = sql("up", st.current, target, lock_timeout).sql if st.pending else ""
    return SqlPlan(st.database, st.current, st.pending, text)


def sql(direction: str, start: str | None = None, end: str | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Script:
    """The SQL Alembic would run, for Supabase's SQL editor (offline mode)."""
    from alembic.util import CommandError

    from alembic import command

    buf = io.StringIO()
    cfg = alembic_config(buf)
    cfg.attributes["lock_timeout"] = lock_timeout
    if direction == "up":
        rng = f"{start}:{end or 'head'}" if start else (end or "head")
    else:
        rng = f"{start or schema.HEAD}:{end or 'base'}"
    try:
        getattr(command, "upgrade" if direction == "up" else "downgrade")(cfg, rng, sql=True)
    except (CommandError, AssertionError, ValueError) as exc:  # ValueError: "a:b:c"
        raise _unknown(rng, exc) from None
    return Script(buf.getvalue())


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
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory.from_config(alembic_config())
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
