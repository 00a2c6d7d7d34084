"""`genisss relay`: the trailing send of a coalesced broadcast, where pg_cron is not.

With a limit of R sends a second (migration 037), the trigger skips a change
that comes less than 1/R after the last send. Once the writes stop, someone
must send the last value: genisss.broadcast_flush() does, when the totals
differ from the last ones sent and 1/R has passed. The relay calls it every
--interval seconds (1 by default: the last value arrives within 1/R + 1 s).

The session holds RELAY_LOCK shared and is named RELAY_APPLICATION, so that
`genisss check` sees a relay is running. Each wait for the server is bounded
(statement_timeout, lock_timeout, the connection's deadline); a lost
connection is reported and retried with backoff. SIGINT and SIGTERM end it
between two flushes, never inside one, so what it reports sent was sent.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

from genisss_cli.conn import db as dbmod
from genisss_cli.core import broadcast, schema
from genisss_cli.core.checks import fixes
from genisss_cli.errors import Exit, GenisssError
from genisss_cli.interrupts import Interrupts

STATEMENT_TIMEOUT = "5s"  # a flush is one short transaction
LOCK_TIMEOUT = "2s"  # behind a long `genisss broadcast` change: try again next time
BACKOFF = (1.0, 30.0)  # seconds between reconnect attempts, doubling


@dataclass
class RelayStarted:
    database: str
    pid: int  # the relay's server session
    private: bool
    max_per_second: float | None  # None: nothing to flush until a limit is set
    interval: float
    cron_job: bool  # pg_cron flushes too (harmless: each flush is serialised)


@dataclass
class RelaySent:
    """One flush that sent the totals; warning: realtime.send() turned an error
    into it, so the message was lost (the state says sent: the next change goes)."""

    at: str
    total_stories: int
    total_audio_generations: int
    updated_at: str
    warning: str | None = None


@dataclass
class RelayLost:
    error: str
    retry_in: float


@dataclass
class RelaySummary:
    database: str
    reason: str  # interrupted | terminated | once | duration | failed
    flushes: int
    sent: int
    lost: int  # sends realtime.send() turned into a WARNING
    seconds: float
    last: dict | None  # the totals of the last message sent


def _open(database):
    conn = dbmod.connect(database, session=True)
    try:
        conn.execute(f"SET application_name = '{schema.RELAY_APPLICATION}'")
        conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        conn.execute("SELECT pg_catalog.pg_advisory_lock_shared(%s)", [schema.RELAY_LOCK])
        return conn
    except BaseException:
        conn.close()
        raise


def _preflight(conn, where: str) -> broadcast.Settings:
    schema.known_revision(conn)
    settings = broadcast.read(conn)
    if settings is None:
        raise broadcast.not_installed(where)
    if not conn.execute("SELECT to_regprocedure(%s) IS NOT NULL", [f"{schema.BROADCAST_FLUSH}(boolean)"]
                        ).fetchone()[0]:
        raise GenisssError(Exit.NOT_MIGRATED, f"{schema.BROADCAST_FLUSH}() does not exist on {where}: "
                           "Broadcast is not installed here (no realtime.send()), nothing to relay",
                           f"once Realtime exists, run: {fixes.REPAIR}")
    return settings


def _flush(conn, warnings: list[str]):
    warnings.clear()
    return conn.execute(f"SELECT {schema.BROADCAST_FLUSH}()").fetchone()[0]


def run(database, sink, *, interval: float = 1.0, duration: float | None = None, once: bool = False,
        mono=time.monotonic) -> RelaySummary:
    """Flush every interval seconds into sink (a callable taking each event)
    until SIGINT/SIGTERM, --for seconds, or one flush with once. The first
    connection's errors propagate; later connection losses are retried."""
    import psycopg

    start = mono()
    flushes = sent = lost = 0
    last: dict | None = None
    reason = "interrupted"
    warnings: list[str] = []

    def collect(diag) -> None:
        if diag.severity_nonlocalized == "WARNING":
            warnings.append(diag.message_primary or "")

    conn = _open(database)
    ctrl = Interrupts((signal.SIGINT, signal.SIGTERM), deferring=True)
    try:
        settings = _preflight(conn, database.where)
        conn.add_notice_handler(collect)
        with ctrl:
            sink(RelayStarted(database.where, dbmod.server_pid(conn), settings.private,
                              settings.max_per_second, interval, settings.cron_job))
            backoff = BACKOFF[0]
            next_at = mono()
            try:
                while not ctrl.requested:
                    try:
                        if conn is None:
                            conn = _open(database)
                            conn.add_notice_handler(collect)
                            backoff = BACKOFF[0]
                        payload = _flush(conn, warnings)
                    except (psycopg.OperationalError, GenisssError) as exc:
                        if isinstance(exc, GenisssError) and exc.code != Exit.CONNECT:
                            raise
                        if conn is not None and (conn.closed or conn.broken):
                            conn.close()
                            conn = None  # else a timeout on a live session: retry on it
                        sink(RelayLost(_first_line(exc), backoff))
                        _sleep(ctrl, backoff)
                        backoff = min(backoff * 2, BACKOFF[1])
                        continue
                    flushes += 1
                    if payload is not None:
                        sent += 1
                        warning = "; ".join(warnings) or None
                        lost += warning is not None
                        last = {k: payload[k] for k in ("total_stories", "total_audio_generations")}
                        sink(RelaySent(_now(conn), payload["total_stories"],
                                       payload["total_audio_generations"], payload["updated_at"], warning))
                    if once:
                        reason = "once"
                        break
                    if duration is not None and mono() - start >= duration:
                        reason = "duration"
                        break
                    next_at += interval
                    _sleep(ctrl, max(0.0, next_at - mono()))
                    if mono() > next_at + interval:  # fell behind (a slow flush): do not catch up
                        next_at = mono()
                if ctrl.requested:
                    reason = ctrl.reason
            except KeyboardInterrupt:
                reason = ctrl.reason
    except psycopg.Error as exc:
        raise _failed(exc, database.where) from None
    finally:
        if conn is not None:
            conn.close()
    return RelaySummary(database.where, reason, flushes, sent, lost, round(mono() - start, 3), last)


def _sleep(ctrl: Interrupts, seconds: float) -> None:
    """Wait, ending at once on SIGINT/SIGTERM (raised only here, between flushes)."""
    if ctrl.requested:
        raise KeyboardInterrupt
    ctrl.deferring = False
    try:
        time.sleep(seconds)
    finally:
        ctrl.deferring = True


def _now(conn) -> str:
    return conn.execute("SELECT to_jsonb(clock_timestamp()) #>> '{}'").fetchone()[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def _failed(exc: Exception, where: str) -> GenisssError:
    err = dbmod.translate(exc)
    if err is None:
        err = GenisssError(Exit.DATABASE, f"the relay's flush failed on {where}: {_first_line(exc)}")
    return err
