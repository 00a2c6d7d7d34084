"""`migrate repair` and `migrate stamp`: the migrations' own statements, run
again over the schema in one transaction, tell what the schema lacks.

Every revision's UPGRADE is idempotent (CREATE OR REPLACE, IF NOT EXISTS, ON
CONFLICT DO NOTHING, catalog-guarded DO blocks), so running the upgrades up to
a revision over a schema that has all of it changes nothing the catalog shows
(core/catalog.py). What does change is what was missing or different: repair
keeps it (or rolls it back for its dry run), stamp refuses to record a
revision whose statements would change something.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from genisss_cli.conn import db as dbmod
from genisss_cli.core import catalog, migrate, schema
from genisss_cli.errors import Exit, GenisssError


@dataclass
class Repaired:
    """`migrate repair`: what re-running the upgrades to the current revision
    changed (applied) or would change (the dry run)."""

    database: str
    revision: str
    changes: list[catalog.Change]
    notices: list[str]
    applied: bool

    @property
    def changed(self) -> bool:
        return bool(self.changes)


@dataclass
class Stamp:
    """`migrate stamp REV`: how the schema differs from REV, and whether REV was recorded."""

    database: str
    current: str | None
    target: str
    differences: list[catalog.Change]
    later: list[str] = field(default_factory=list)  # later revisions the schema has all of too
    stamped: bool = False
    forced: bool = False
    notices: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.differences


class _session:
    """One transaction under the migrate lock, the server's genisss: notices kept."""

    def __init__(self, database, lock_timeout: float, what: str, blocked: Exit):
        # what and blocked (an exit code): for the errors
        self.database, self.lock_timeout, self.what, self.blocked = database, lock_timeout, what, blocked
        self.notices: list[str] = []

    def __enter__(self):
        from genisss_cli.conn import blockers

        self.conn = dbmod.connect(self.database, autocommit=False)
        dbmod.keep_notices(self.conn, self.notices)
        try:
            self.watch = blockers.watch(self.database, self.conn, self.lock_timeout).__enter__()
        except BaseException:
            self.conn.close()
            raise
        return self

    def lock(self) -> str | None:
        """The migrate lock, then the revision (read under it)."""
        try:
            dbmod.set_lock_timeout(self.conn, self.lock_timeout)
            self.conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", [schema.MIGRATE_LOCK])
        except Exception as exc:
            raise migrate.migration_error(exc, self.lock_timeout, self.what) from None
        return schema.known_revision(self.conn)

    def rerun(self, end: str, start: str | None = None,
              before: catalog.Snapshot | None = None) -> list[catalog.Change]:
        """Run the upgrades after start (base) up to end; what the catalog shows
        changed. before: the snapshot now, where the caller has it; the one
        after is kept as self.after."""
        from psycopg import errors

        before = catalog.snapshot(self.conn) if before is None else before
        try:
            for _, statement in migrate.upgrade_statements(start, end):
                self.conn.execute(statement)
        except errors.IntegrityError as exc:  # rows the revision's constraint forbids
            raise GenisssError(
                self.blocked, f"{self.what}: {exc.diag.message_primary}, so the revision's statements "
                "cannot run", "nothing was changed; genisss check names the rows and the fix, "
                "yours to run: repair and stamp change no row that exists") from None
        except Exception as exc:
            raise migrate.migration_error(exc, self.lock_timeout, self.what) from None
        self.after = catalog.snapshot(self.conn)
        return catalog.diff(before, self.after)

    def __exit__(self, kind, exc, tb):
        try:
            self.conn.rollback()  # whatever was not committed explicitly
        finally:
            self.conn.close()
            self.watch.__exit__(kind, exc, tb)


def repair(database, *, apply: bool, lock_timeout: float = migrate.DEFAULT_LOCK_TIMEOUT) -> Repaired:
    """Re-create what the current revision should have and does not. The
    counters keep their values (033's row insert is ON CONFLICT DO NOTHING);
    a missing singleton row starts where migrate up starts one: total_stories
    at count(*) of user_stories, as sync_story_counter() would set it, and
    total_audio_generations at 0 (nothing to count it from)."""
    with _session(database, lock_timeout, "migrate repair", Exit.FINDING) as s:
        current = s.lock()
        if current is None:
            raise GenisssError(Exit.NOT_MIGRATED, f"{database.where} has no recorded revision: nothing "
                               "to repair against", "run: genisss migrate up (it adopts a hand-applied "
                               "schema), or genisss migrate stamp REV")
        changes = s.rerun(current)
        if apply and changes:
            s.conn.commit()
    return Repaired(database.where, current, changes, s.notices, apply and bool(changes))


def _secure_version_table(conn) -> None:
    """alembic_version as migrate up leaves it: baseline's statement that closes
    it to the API roles, run after the table exists."""
    conn.execute(migrate.VERSION_TABLE_DDL)
    for _, statement in migrate.upgrade_statements(None, schema.BASELINE):
        if schema.VERSION_TABLE in statement:
            conn.execute(statement)


def stamp(database, target: str, *, write: bool, force: bool = False,
          lock_timeout: float = migrate.DEFAULT_LOCK_TIMEOUT) -> Stamp:
    """Compare the schema with target's (its upgrades rerun, then rolled back);
    with write, record target as the revision when they match (or force)."""
    rev = migrate.resolve_revision(target)
    with _session(database, lock_timeout, "migrate stamp", Exit.NOT_MIGRATED) as s:
        current = s.lock()
        s.conn.execute("SAVEPOINT genisss_stamp")
        differences = s.rerun(rev)
        later = [] if differences else _later_matches(s, rev)
        s.conn.execute("ROLLBACK TO SAVEPOINT genisss_stamp")  # stamp runs nothing
        result = Stamp(database.where, current, rev, differences, later, forced=force and bool(differences),
                       notices=s.notices)
        if write and (result.matches or force):
            _secure_version_table(s.conn)
            s.conn.execute(f"DELETE FROM {schema.VERSION_TABLE}")
            s.conn.execute(f"INSERT INTO {schema.VERSION_TABLE} (version_num) VALUES (%s)", [rev])
            s.conn.commit()
            result.stamped = True
    return result


def _later_matches(s: _session, rev: str) -> list[str]:
    """The revisions after rev whose statements, run in turn, change nothing
    either: the schema has all of them too (035 over 034 wherever it installed
    nothing, or once its broadcast trigger is there), so rev is not the only
    revision it matches."""
    order = migrate.ordered_revisions()
    later = []
    unchanged = s.after  # each step that changes nothing leaves this snapshot true
    for prev, nxt in pairwise(order[order.index(rev):]):
        if s.rerun(nxt, prev, before=unchanged):
            break
        later.append(nxt)
    return later


def mismatch(result: Stamp) -> GenisssError:
    n = len(result.differences)
    return GenisssError(Exit.NOT_MIGRATED,
                        f"the schema does not match {result.target}: {n} difference{'s' * (n != 1)} "
                        "(listed above)", "nothing was recorded; --force records it anyway, "
                        "or genisss migrate up / migrate repair")
