"""The counter operations: status, bump, drift and sync (the runbook's monitoring).

Everything here takes an open psycopg connection and returns dataclasses;
render.py prints them. Only psycopg is imported, never SQLAlchemy or Alembic:
`genisss status` and `genisss drift` are meant to cost little more than a
bare psycopg script (docs/performance.md).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from genisss_cli.conn.config import Dsn
from genisss_cli.core import schema
from genisss_cli.core.schema import MAX_BUMPS
from genisss_cli.errors import Exit, GenisssError, missing_row, not_migrated
from genisss_cli.errors import lock_timeout as lock_timed_out
from genisss_cli.interrupts import Interrupts

_NOT_MIGRATED_HINT = "run: genisss migrate up"


# -- sources ------------------------------------------------------------------------


@dataclass
class Source:
    """A counter column of global_stats and the table whose rows it counts."""

    name: str  # "stories", "audio"
    column: str  # column of public.global_stats
    table: str  # "schema.table" or "table" (searched on the search_path)


STORIES = Source("stories", "total_stories", "public.user_stories")


def audio_source(table: str) -> Source:
    """Audio generations against a table the operator names (`--audio-table`)."""
    return Source("audio", "total_audio_generations", table)


def table_parts(table: str) -> tuple[str, ...]:
    """Split "schema.table" (or "table"). Names are taken literally, as pg_tables shows them."""
    parts = tuple(table.split("."))
    if not table.strip() or len(parts) > 2 or any(not p.strip() for p in parts):
        raise GenisssError(Exit.USAGE, f"not a table name: {table!r}",
                           "give table or schema.table, e.g. public.audio_generations")
    if any(len(p.encode()) > 63 for p in parts):
        raise GenisssError(Exit.USAGE, f"table name too long: {table!r}",
                           "PostgreSQL names are at most 63 bytes")
    return parts


def table_ident(table: str):
    from psycopg import sql

    return sql.Identifier(*table_parts(table))


# -- the singleton row ----------------------------------------------------------------


@dataclass
class CounterRow:
    total_stories: int
    total_audio_generations: int
    last_story_at: datetime | None
    last_audio_at: datetime | None
    updated_at: datetime


ROW_SQL = (
    "SELECT total_stories, total_audio_generations, last_story_at, last_audio_at, updated_at"
    " FROM public.global_stats WHERE id = 'singleton'"
)


def read_row(conn) -> CounterRow | None:
    """The singleton row of global_stats, or None if it is missing.
    Raises psycopg's UndefinedTable when the migration is not applied."""
    row = conn.execute(ROW_SQL).fetchone()
    return CounterRow(*row) if row else None


def require_row(conn) -> CounterRow:
    row = read_row(conn)
    if row is None:
        raise missing_row()
    return row


# -- status ---------------------------------------------------------------------------


@dataclass
class Status:
    total_stories: int
    total_audio_generations: int
    last_story_at: datetime | None
    last_audio_at: datetime | None
    updated_at: datetime
    updated_ago_seconds: float  # measured by the server's clock
    database: str  # host:port/dbname, never a password
    url: Dsn  # render.show_url shows it, password masked
    server_version: str
    revision: str | None  # None: never migrated by genisss (033 applied by hand)
    head: str
    up_to_date: bool
    publication: str
    publication_exists: bool
    in_publication: bool


_STATUS_SQL = """
SELECT current_setting('server_version'),
       to_regclass('public.global_stats') IS NOT NULL,
       EXISTS (SELECT 1 FROM pg_publication WHERE pubname = %(pub)s),
       EXISTS (SELECT 1 FROM pg_publication_tables
               WHERE pubname = %(pub)s AND schemaname = 'public' AND tablename = 'global_stats'),
       now()
"""


def status(conn, database, publication: str = schema.PUBLICATION) -> Status:
    """Everything about the counter in a few round trips; database is a db.Database."""
    version, has_table, pub_exists, in_pub, now = conn.execute(
        _STATUS_SQL, {"pub": publication}).fetchone()
    revision = schema.known_revision(conn)  # a newer genisss's schema: refused, as everywhere
    if not has_table:
        raise not_migrated(database.where)
    row = require_row(conn)
    return Status(
        total_stories=row.total_stories,
        total_audio_generations=row.total_audio_generations,
        last_story_at=row.last_story_at,
        last_audio_at=row.last_audio_at,
        updated_at=row.updated_at,
        updated_ago_seconds=max(0.0, (now - row.updated_at).total_seconds()),
        database=database.where,
        url=Dsn(database.dsn),
        server_version=version.split(" ")[0],
        revision=revision,
        head=schema.HEAD,
        up_to_date=revision == schema.HEAD,
        publication=publication,
        publication_exists=pub_exists,
        in_publication=in_pub,
    )


# -- bump ---------------------------------------------------------------------------------


BUMP_SQL = {kind: f"SELECT {function}()" for kind, function in schema.INCREMENTS.items()}


@dataclass
class BumpResult:
    kind: str  # story | audio
    requested: int
    bumped: int  # increments that committed
    value: int | None  # the counter after the last one (None if none was made)
    seconds: float
    interrupted: bool = False
    in_flight_unknown: bool = False  # a second Ctrl-C cut a bump short: it may or may not count
    totals: CounterRow | None = None

    @property
    def rate(self) -> float:
        return self.bumped / self.seconds if self.seconds > 0 else 0.0


def _prepared(conn, query: str) -> _Prepared | None:
    # A transaction pooler may not keep a prepared statement past its
    # transaction: there, the plain cursor, unprepared. db.connect knows
    # Supabase's by its port (prepare_threshold None); any other pooler shows
    # by answering with a backend key of its own.
    if conn.prepare_threshold is None:
        return None
    from genisss_cli.conn import db

    if db.pooled_pid(conn) is not None:
        conn.prepare_threshold = None
        return None
    return _Prepared(conn, query)


def _bump_lock_timeout(conn, seconds: float) -> float | None:
    """lock_timeout for bump's session where the session is bump's own;
    behind a pooler a session setting would stay with a server session
    other clients get next, so there the seconds are returned, for each
    bump's transaction to set locally (and prepared statements are off)."""
    from genisss_cli.conn import db

    if conn.prepare_threshold is not None and db.pooled_pid(conn) is None:
        conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, false)", [f"{int(seconds * 1000)}ms"])
        return None
    conn.prepare_threshold = None
    return seconds


_statements = itertools.count(1)


class _Prepared:
    """`query` prepared on conn's session; calling the object runs it once and
    returns the first column of its one row.

    The call goes through psycopg.pq, psycopg's public libpq wrapper, and waits
    with poll(): a cursor's bookkeeping costs a large share of a round trip
    this short (docs/performance.md). The wait is in Python, so signal handlers
    run (the second Ctrl-C raises in poll()). It has no timeout of its own (a
    timeout on each poll() costs the kernel a timer per call): deadline's
    watchdog bounds it, as it does every query, and the loop counts its calls
    in conn.commands so that the watchdog sees it move. stop() frees the
    statement."""

    def __init__(self, conn, query: str):
        import select

        from psycopg import pq

        self.conn, self.pgconn = conn, conn.pgconn
        self.name = f"genisss_bump_{next(_statements)}"
        conn.execute(f"PREPARE {self.name} AS {query}")  # through the cursor: bounded, cancellable
        self._name = self.name.encode()
        self._poll = select.poll()
        self._poll.register(self.pgconn.socket, select.POLLIN)
        self._pq, self._ok = pq, pq.ExecStatus.TUPLES_OK
        self._counted = getattr(conn, "commands", None) is not None  # db.connect's connections

    def __call__(self) -> int | None:
        pg = self.pgconn
        if self._counted:
            self.conn.commands += 1
        try:
            pg.send_query_prepared(self._name, None)
            if pg.flush():
                self._flush()
            while True:
                self._poll.poll()
                pg.consume_input()
                if not pg.is_busy():
                    break
            res = pg.get_result()
            # Every result is read: an error at COMMIT (a full NOTIFY queue,
            # say) comes after the row, and must not pass for success.
            while (more := pg.get_result()) is not None:
                if more.status not in (self._ok, self._pq.ExecStatus.COMMAND_OK):
                    res = more
        except KeyboardInterrupt:
            if pg.transaction_status == self._pq.TransactionStatus.ACTIVE:
                self._cancel()
            raise
        except Exception:
            if getattr(self.conn, "timed_out", None):  # the watchdog shut the socket down
                raise self._no_answer() from None
            raise
        if res.status != self._ok:
            raise self._error(res)
        raw = res.get_value(0, 0)
        return None if raw is None else int(raw)

    def _flush(self) -> None:
        import select

        while self.pgconn.flush():
            select.select([], [self.pgconn.socket], [])

    def _no_answer(self):
        from genisss_cli.conn import deadline

        return deadline.no_answer(self.conn, self.conn.timed_out)

    def _cancel(self) -> None:
        """Cut the call in flight short, as psycopg does on Ctrl-C, and wait for
        its end, so that the session can still read the totals."""
        conn, pg = self.conn, self.pgconn
        try:
            conn.cancel_safe(timeout=5.0)
            end = time.monotonic() + 5.0
            while pg.is_busy():
                left = end - time.monotonic()
                if left <= 0 or not self._poll.poll(left * 1000):
                    raise TimeoutError("the server did not end the cancelled call")
                pg.consume_input()
            while pg.get_result() is not None:
                pass
        except BaseException as exc:  # a third Ctrl-C, or a server that did not end the call
            conn.close()  # in an unknown state: never reuse it
            if not isinstance(exc, Exception):
                raise

    def _error(self, res):
        """The psycopg error a cursor would have raised for res (its class: db.translate goes by it)."""
        import psycopg
        from psycopg import errors

        if getattr(self.conn, "timed_out", None):
            return self._no_answer()
        message = (res.error_message or b"").decode(self.conn.info.encoding, "replace").strip()
        if self.pgconn.status == self._pq.ConnStatus.BAD:
            return psycopg.OperationalError(message)
        state = (res.error_field(self._pq.DiagnosticField.SQLSTATE) or b"").decode("ascii", "replace")
        try:
            cls = errors.lookup(state)
        except KeyError:
            cls = psycopg.DatabaseError
        return cls(message)

    def stop(self) -> None:
        self.conn.execute(f"DEALLOCATE {self.name}")


def bump(conn, kind: str, count: int = 1, *, progress: Callable[[int], None] | None = None,
         interval: float = 0.1, lock_timeout: float | None = None) -> BumpResult:
    """Call the worker's increment function `count` times, each call its own
    transaction on the one (autocommit) connection. progress(done) is called at
    most every `interval` seconds. Ctrl-C stops after the bump in flight; a
    second one cuts that one short (interrupts.py). lock_timeout: how long
    one increment may wait for the counter's row lock (a transaction holding
    it) before bump stops, exit 8, saying how many were made."""
    if kind not in BUMP_SQL:
        raise GenisssError(Exit.USAGE, f"cannot bump {kind!r}", "choose story or audio")
    if not 1 <= count <= MAX_BUMPS:
        raise GenisssError(Exit.USAGE, f"--count must be between 1 and {MAX_BUMPS}")
    if not conn.autocommit:
        raise ValueError("bump needs an autocommit connection: each bump is its own transaction")
    from psycopg import errors

    query = BUMP_SQL[kind]
    # Once a run, before the first increment: a newer genisss's functions may
    # count differently (the loop below pays nothing for it).
    schema.known_revision(conn)
    cur = conn.cursor()
    local_timeout = _bump_lock_timeout(conn, lock_timeout) if lock_timeout is not None else None

    def one() -> int | None:
        if local_timeout is None:
            cur.execute(query)
        else:  # behind a pooler: each bump sets its own, in its transaction
            from genisss_cli.conn import db

            with conn.transaction():
                db.set_lock_timeout(conn, local_timeout)
                cur.execute(query)
        return cur.fetchone()[0]

    clock = time.monotonic
    done = 0
    value = None
    unknown = False
    started = clock()
    next_report = started + interval
    with Interrupts(deferring=True, second_raises=True) as stop:
        try:
            value = one()  # the first one alone: it tells a missing row
            if value is None:
                raise missing_row()
            done = 1
            # The hot loop: one round trip a bump, nothing else (the benchmark
            # compares this with pgbench).
            call = _prepared(conn, query) if count > 1 else None
            while done < count and not stop.requested:
                if call is None:
                    value = one()
                else:
                    value = call()
                done += 1
                if progress is not None:
                    now = clock()
                    if now >= next_report:
                        progress(done)
                        next_report = now + interval
            if call is not None:  # free the statement; only here, where the session is sound
                call.stop()
        except KeyboardInterrupt:  # the second Ctrl-C, while a bump was on the wire
            unknown = True
            stop.requested = True
        except errors.LockNotAvailable:
            made = ("nothing was changed" if not done else
                    f"{done} of {count} increments were made before it (the counter is at {value})")
            raise lock_timed_out("bump", lock_timeout, made) from None
    seconds = clock() - started
    if progress is not None:
        progress(done)
    if unknown:
        value = None  # stale: the bump that was cut short may or may not have counted
    try:
        totals = read_row(conn)
    except Exception:
        if not unknown:
            raise
        totals = None  # after a second Ctrl-C, report what we know
    return BumpResult(kind, count, done, value, seconds, stop.requested, unknown, totals)


# -- drift ------------------------------------------------------------------------------


@dataclass
class DriftRow:
    name: str
    counter: int
    actual: int
    drift: int  # counter - actual
    estimated: bool
    table: str = ""


@dataclass
class DriftReport:
    rows: list[DriftRow]
    tolerance: int
    estimated: bool  # at least one `actual` is the planner's estimate
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(abs(r.drift) <= self.tolerance for r in self.rows)


def drift(conn, sources: list[Source] | None = None, *, estimate: bool = False,
          tolerance: int = 0) -> DriftReport:
    """counter - actual for each source, read in one REPEATABLE READ snapshot.

    estimate=True takes `actual` from pg_class.reltuples (the planner's
    estimate) instead of counting; a table never analysed is counted exactly.
    """
    from psycopg import errors, pq, sql

    sources = [STORIES] if sources is None else list(sources)
    if not sources:
        raise ValueError("drift needs at least one source")
    if tolerance < 0:
        raise GenisssError(Exit.USAGE, "--tolerance must be 0 or more")
    idents = [table_ident(s.table) for s in sources]
    cols = [sql.SQL("g.{}").format(sql.Identifier(s.column)) for s in sources]
    if estimate:
        # The quoted name goes in as a parameter, so it resolves exactly like the count's.
        names = [i.as_string(conn) for i in idents]
        actual = [sql.SQL("(SELECT c.reltuples::float8 FROM pg_class c WHERE c.oid = to_regclass({}))")
                  .format(sql.Literal(n)) for n in names]
        actual += [sql.SQL("(SELECT c.relpages FROM pg_class c WHERE c.oid = to_regclass({}))")
                   .format(sql.Literal(n)) for n in names]
    else:
        actual = [sql.SQL("(SELECT count(*) FROM {})").format(i) for i in idents]
    query = sql.SQL("SELECT {} FROM public.global_stats AS g WHERE g.id = 'singleton'").format(
        sql.SQL(", ").join(cols + actual))

    notes: list[str] = []
    try:
        with _snapshot(conn, pq, sql):
            row = conn.execute(query).fetchone()
            if row is None:
                raise missing_row()
            n = len(sources)
            counters, values = list(row[:n]), list(row[n:2 * n])
            flags = [estimate] * n
            if estimate:
                pages = row[2 * n:]
                missing = [s.table for s, v in zip(sources, values, strict=True) if v is None]
                if missing:
                    raise _missing_table(conn, missing[0])
                # reltuples is -1 until the first ANALYZE (before PostgreSQL 14: 0,
                # with relpages 0, which also means empty): count those exactly,
                # in the same snapshot.
                for k, (v, p) in enumerate(zip(values, pages, strict=True)):
                    if v < 0 or p == 0:
                        values[k] = conn.execute(
                            sql.SQL("SELECT count(*) FROM {}").format(idents[k])).fetchone()[0]
                        flags[k] = False
                        if v < 0:
                            notes.append(f"{sources[k].table} was never analysed, so it was counted "
                                         f"exactly (ANALYZE {names[k]} makes the estimate available)")
                values = [round(v) for v in values]
    except errors.UndefinedTable:
        raise _diagnose_missing(conn, sources) from None
    rows = [DriftRow(s.name, int(c), int(a), int(c) - int(a), f, s.table)
            for s, c, a, f in zip(sources, counters, values, flags, strict=True)]
    return DriftReport(rows, tolerance, any(flags), notes)


@contextmanager
def _snapshot(conn, pq, sql):
    """One REPEATABLE READ, READ ONLY transaction when the connection is idle;
    inside a caller's transaction, the single statement is one snapshot anyway."""
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        yield
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def _diagnose_missing(conn, sources: list[Source]) -> GenisssError:
    """Which table is it? Called after an UndefinedTable (the transaction is over)."""
    found = conn.execute("SELECT to_regclass('public.global_stats') IS NOT NULL").fetchone()[0]
    if not found:
        return GenisssError(Exit.NOT_MIGRATED, "migration 033 is not applied: public.global_stats "
                            "does not exist", _NOT_MIGRATED_HINT)
    for s in sources:
        ident = table_ident(s.table).as_string(conn)
        if conn.execute("SELECT to_regclass(%s) IS NULL", [ident]).fetchone()[0]:
            return _missing_table(conn, s.table)
    return GenisssError(Exit.DATABASE, "a table disappeared while counting", "retry")


def _missing_table(conn, table: str) -> GenisssError:
    if table == STORIES.table:
        return GenisssError(Exit.NOT_MIGRATED, f"{table} does not exist", _NOT_MIGRATED_HINT)
    return GenisssError(Exit.USAGE, f"table {table!r} does not exist",
                        "check --audio-table: schema.table, spelled as pg_tables shows it")


# -- sync --------------------------------------------------------------------------------


@dataclass
class SyncResult:
    old_count: int
    new_count: int
    difference: int  # new_count - old_count (= -drift)
    dry_run: bool = False
    synced: bool = False  # sync_story_counter() ran
    skipped: bool = False  # --if-drift found no drift

    @property
    def changed(self) -> bool:
        return self.synced and self.difference != 0


SYNC_SQL = "SELECT old_count, new_count, difference FROM public.sync_story_counter()"


def sync(conn, *, dry_run: bool = False, if_drift: bool = False,
         lock_timeout: float = 5.0) -> SyncResult:
    """Run sync_story_counter(). dry_run: only say what it would change.
    if_drift: do nothing when there is no drift (for a daily cron line).
    lock_timeout: how long to wait for the counter's row lock (a stuck
    transaction holding it) before giving up with nothing changed."""
    if dry_run or if_drift:
        row = drift(conn).rows[0]
        if dry_run or row.drift == 0:
            return SyncResult(row.counter, row.actual, row.actual - row.counter,
                              dry_run=dry_run, skipped=not dry_run)
    # An UndefinedFunction here becomes NOT_MIGRATED in db.translate(); a lock
    # timeout is errors.lock_timeout, which conn.blockers.watch completes.
    from psycopg import errors

    from genisss_cli.conn import db

    try:
        with conn.transaction():
            db.set_lock_timeout(conn, lock_timeout)
            old, new, diff = conn.execute(SYNC_SQL).fetchone()
    except errors.LockNotAvailable:
        raise lock_timed_out("sync", lock_timeout) from None
    if old is None:
        raise missing_row()
    return SyncResult(old, new, diff, synced=True)
