"""The broadcast's settings (migration 037): read them, change them.

One row of genisss.broadcast_settings says whether the counter's broadcast is
private and at most how many sends a second it makes; genisss.broadcast_apply()
makes the RLS policy and the pg_cron job match it. A change and its apply run
in one transaction, under --lock-timeout: the policy exists exactly when the
row says private, whatever fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from genisss_cli.conn import db as dbmod
from genisss_cli.core import schema
from genisss_cli.errors import Exit, GenisssError
from genisss_cli.errors import lock_timeout as lock_timed_out

MAX_RATE = 1000.0  # the table's CHECK: at most 1,000 sends a second
RATE_RANGE = f"must be above 0 and at most {MAX_RATE:g} sends a second"
# The sessions of `genisss relay`: holders of RELAY_LOCK in this database (a
# bigint key is (classid, objid) = (high, low) 32 bits, objsubid 1).
RELAYS_SQL = f"""
    SELECT l.pid FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'advisory' AND l.granted
       AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
       AND l.classid = {schema.RELAY_LOCK >> 32} AND l.objid = {schema.RELAY_LOCK & 0xFFFFFFFF}
       AND l.objsubid = 1
     ORDER BY l.pid"""


def relays(conn) -> list[int]:
    return [r[0] for r in conn.execute(RELAYS_SQL).fetchall()]


@dataclass
class Settings:
    """The broadcast as the database has it."""

    private: bool
    max_per_second: float | None  # None: every change is sent
    realtime: bool  # realtime.send() exists, so the trigger is installed
    policy: bool  # the private-channel policy exists on realtime.messages
    cron_job: bool  # pg_cron's flush job exists
    relays: list[int] = field(default_factory=list)  # pids of the running `genisss relay`s
    last_sent_at: datetime | None = None


@dataclass
class BroadcastState:
    """`genisss broadcast`: the settings of one database."""

    database: str
    settings: Settings


@dataclass
class BroadcastChange:
    """`genisss broadcast --private/--max-per-second ...`: before and after."""

    database: str
    before: Settings
    after: Settings
    dry_run: bool
    notices: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return (self.before.private, self.before.max_per_second) != (self.after.private,
                                                                      self.after.max_per_second)


def not_installed(where: str) -> GenisssError:
    return GenisssError(Exit.NOT_MIGRATED,
                        f"migration 037 is not applied to {where}: "
                        f"{schema.BROADCAST_SETTINGS} does not exist",
                        "run: genisss migrate up")


def installed(conn) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [schema.BROADCAST_SETTINGS]).fetchone()[0]


def read(conn, *, lock: bool = False) -> Settings | None:
    """The settings, None where 037 is not applied; lock: FOR UPDATE, in a transaction."""
    if not installed(conn):
        return None
    row = conn.execute(f"SELECT private, max_per_second, last_sent_at FROM {schema.BROADCAST_SETTINGS}"
                       + (" FOR UPDATE" if lock else "")).fetchone()
    private, rate, last = row if row else (False, None, None)
    realtime, policy, cron = conn.execute(
        """SELECT to_regprocedure(%(send)s) IS NOT NULL,
                  EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = to_regclass(%(messages)s)
                             AND polname = %(policy)s),
                  to_regclass('cron.job') IS NOT NULL""",
        {"send": schema.REALTIME_SEND, "messages": schema.REALTIME_MESSAGES,
         "policy": schema.BROADCAST_POLICY}).fetchone()
    if cron:
        cron = conn.execute("SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = %s)",
                            [schema.CRON_JOB]).fetchone()[0]
    return Settings(private, rate, realtime, policy, bool(cron), relays(conn), last)


def state(database) -> BroadcastState:
    with dbmod.connect(database) as conn:
        schema.known_revision(conn)
        settings = read(conn)
    if settings is None:
        raise not_installed(database.where)
    return BroadcastState(database.where, settings)


def flips_privacy(settings: Settings, private: bool | None) -> bool:
    """Would the change move browsers from one channel kind to the other? Pages
    subscribed as the old kind stop receiving; only where the trigger sends."""
    return private is not None and private != settings.private and settings.realtime


def limit_error(rate: float | None, no_limit: bool, rate_option: str = "--max-per-second",
                no_limit_option: str = "--no-limit") -> GenisssError | None:
    """What is wrong with a limit as given, in the words of the options that
    gave it (`genisss broadcast`'s or `migrate up --broadcast-...`'s)."""
    if rate is not None and no_limit:
        return GenisssError(Exit.USAGE, f"{rate_option} and {no_limit_option} exclude each other")
    if rate is not None and not 0 < rate <= MAX_RATE:  # nan fails both
        return GenisssError(Exit.USAGE, f"{rate_option} {RATE_RANGE}")
    return None


def change(database, *, private: bool | None = None, rate: float | None = None, no_limit: bool = False,
           dry_run: bool = False, lock_timeout: float = 5.0) -> BroadcastChange:
    """Set the settings that are given (None: unchanged), apply them, and say before
    and after. Idempotent: the same settings again change nothing, and the apply
    still repairs a missing policy or job."""
    if error := limit_error(rate, no_limit):
        raise error
    notices: list[str] = []
    import psycopg

    with dbmod.connect(database) as conn:
        schema.known_revision(conn)
        dbmod.keep_notices(conn, notices)
        try:
            with conn.transaction():
                dbmod.set_lock_timeout(conn, lock_timeout)
                before = read(conn, lock=True)
                if before is None:
                    raise not_installed(database.where)
                wanted_private = before.private if private is None else private
                wanted_rate = None if no_limit else (before.max_per_second if rate is None else rate)
                if dry_run:
                    after = replace(before, private=wanted_private, max_per_second=wanted_rate)
                    raise psycopg.Rollback()
                if wanted_rate is None and before.max_per_second is not None and before.realtime:
                    # What the limit held back goes now: the trigger sends only new changes.
                    conn.execute(f"SELECT {schema.BROADCAST_FLUSH}(true)")
                conn.execute(f"UPDATE {schema.BROADCAST_SETTINGS} SET private = %s, max_per_second = %s",
                             [wanted_private, wanted_rate])
                if wanted_rate is not None and before.max_per_second is None:
                    # Without a limit the trigger sent every change: the totals now
                    # are sent, and the limit counts from here.
                    conn.execute(f"""UPDATE {schema.BROADCAST_SETTINGS} s
                                        SET sent_stories = g.total_stories,
                                            sent_audio = g.total_audio_generations,
                                            last_sent_at = clock_timestamp()
                                       FROM {schema.TABLE} g WHERE g.id = %s""", [schema.ROW_ID])
                conn.execute(f"SELECT {schema.BROADCAST_APPLY}()")
                after = read(conn)
        except psycopg.errors.LockNotAvailable:
            raise lock_timed_out("the broadcast change", lock_timeout) from None
    return BroadcastChange(database.where, before, after, dry_run, notices)
