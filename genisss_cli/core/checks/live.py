"""`genisss check --live`: make one harmless change and watch it arrive.

The change sets global_stats.updated_at = now() (no counter moves). It is
observed two ways, each on its own session connection opened BEFORE the change:

- LISTEN global_stats, as `genisss watch` does: the trigger's NOTIFY;
- a TEMPORARY logical replication slot with the built-in pgoutput plugin and
  publication_names = the publication, read with
  pg_logical_slot_get_binary_changes(): the way Supabase Realtime reads the
  publication. Enough of pgoutput's protocol is decoded to see a Relation ('R')
  message for public.global_stats and an Update ('U') of it in our transaction.

Where migration 035's broadcast trigger is installed, the same change also
goes through realtime.send(): the WARNINGs the change raised are collected
(realtime.send() turns its errors into them), and the message is looked for in
realtime.messages, where Realtime streams it from (row "live: broadcast").

The slot is dropped in a finally block (also on error and Ctrl-C); being
temporary, the server drops it too when the session ends, however it ends.
"""

from __future__ import annotations

import os
import threading
import time

from genisss_cli.core import schema
from genisss_cli.core.checks.model import NO_BROADCAST, CheckResult, Context, reason

LISTEN_ROW = "live: LISTEN"
SLOT_ROW = "live: publication"
BROADCAST_ROW = "live: broadcast"
ROWS = (LISTEN_ROW, SLOT_ROW, BROADCAST_ROW)
CHANNEL = schema.CHANNEL
POLL_INTERVAL = 0.005  # seconds between two reads of the slot


def run(ctx: Context) -> list[CheckResult]:
    conn, db, opts = ctx.conn, ctx.database, ctx.options
    pre = _preconditions(ctx)
    if pre["blocked"]:
        status, why = pre["blocked"]
        return [CheckResult(row, status, why) for row in ROWS]
    slot_skip = pre["slot_skip"]
    results: dict[str, CheckResult] = {}
    if slot_skip:
        results[SLOT_ROW] = CheckResult(SLOT_ROW, "skipped", slot_skip)
    if pre["broadcast_skip"]:
        results[BROADCAST_ROW] = CheckResult(BROADCAST_ROW, "skipped", pre["broadcast_skip"])

    listener = slot = None
    try:
        listener = Listener(db, conn.info.backend_pid, opts.live_timeout)
        if not slot_skip:
            try:
                slot = Slot(db, opts.publication)
            except Exception as exc:
                results[SLOT_ROW] = CheckResult(
                    SLOT_ROW, "warn", f"could not create a temporary replication slot: {reason(exc)}")
        if _pause():
            time.sleep(_pause())  # test hook: the slot exists, nothing has changed yet
        listener.start()
        warnings: list[str] = []
        sending = None if pre["broadcast_skip"] else _until_due(conn, opts.live_timeout)
        xid, commit_lsn, t0, updated_at = _touch(conn, warnings)
        deadline = t0 + opts.live_timeout
        if slot:
            results[SLOT_ROW] = _observe_slot(slot, xid, commit_lsn, t0, deadline, opts)
        results[LISTEN_ROW] = _observe_listener(listener, t0, deadline, opts)
        if BROADCAST_ROW not in results:
            results[BROADCAST_ROW] = _observe_broadcast(conn, updated_at, warnings, sending)
    finally:
        if listener:
            listener.close()
        if slot:
            slot.close()
    return [results[row] for row in ROWS]


def _preconditions(ctx: Context) -> dict:
    """What stops both paths ("blocked"), or only the replication path ("slot_skip")."""
    conn = ctx.conn
    out = {"blocked": None, "slot_skip": None, "broadcast_skip": None}
    with conn.transaction():
        has_column = ctx.table_oid and conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attname = 'updated_at')",
            [ctx.table_oid]).fetchone()[0]
        if not has_column:
            out["blocked"] = ("skipped", "public.global_stats (with updated_at) does not exist (see table)")
            return out
        may_update, user, can_slot, wal_level, pub = conn.execute("""
            SELECT has_table_privilege(%(t)s, 'UPDATE'), current_user,
                   (SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user),
                   current_setting('wal_level'),
                   EXISTS (SELECT 1 FROM pg_publication WHERE pubname = %(pub)s)""",
                                                                  {"t": ctx.table_oid,
                                                                   "pub": ctx.options.publication}).fetchone()
    if ctx.options.realtime_off:  # the LISTEN path is watch's; the publication path is Realtime's
        out["slot_skip"] = f"Realtime not used ({ctx.options.realtime_off})"
    if not may_update:
        out["blocked"] = ("warn", f"role {user} may not UPDATE global_stats, so it cannot make the test "
                          "change; run --live as the table's owner")
    elif out["slot_skip"]:
        pass
    elif wal_level != "logical":
        out["slot_skip"] = f"wal_level is {wal_level}, not logical: no logical decoding (see wal_level)"
    elif not can_slot:
        out["slot_skip"] = (f"role {user} may not create a replication slot (it needs the REPLICATION "
                            "attribute); Supabase Realtime reads the publication with its own role")
    elif not pub:
        out["slot_skip"] = f"publication {ctx.options.publication} does not exist (see publication)"
    with conn.transaction():
        send, trigger = conn.execute(
            "SELECT to_regprocedure(%s) IS NOT NULL, to_regprocedure(%s) IS NOT NULL",
            [schema.REALTIME_SEND, f"{schema.BROADCAST_FUNCTION}()"]).fetchone()
    if not send:
        out["broadcast_skip"] = NO_BROADCAST
    elif not trigger:
        out["broadcast_skip"] = f"{schema.BROADCAST_FUNCTION}() does not exist (see broadcast)"
    return out


def _pause() -> float:
    try:
        return float(os.environ.get("GENISSS_TEST_LIVE_PAUSE", "0"))
    except ValueError:
        return 0.0


def _touch(conn, warnings: list[str]) -> tuple[int, str, float, object]:
    """UPDATE updated_at in one transaction; its xid, an LSN past its commit, the
    moment COMMIT was sent (perf_counter), and the updated_at it set. The
    WARNINGs the UPDATE raised (realtime.send()'s errors) go to warnings."""

    def collect(diag) -> None:
        if diag.severity_nonlocalized == "WARNING":
            warnings.append(diag.message_primary or "")

    conn.add_notice_handler(collect)
    try:
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '5s'")
            xid = conn.execute("SELECT txid_current()").fetchone()[0] % 2**32
            cur = conn.execute("UPDATE public.global_stats SET updated_at = now() WHERE id = 'singleton' "
                               "RETURNING updated_at")
            if cur.rowcount != 1:
                raise RuntimeError(f"the test UPDATE changed {cur.rowcount} rows of global_stats "
                                   "(expected 1)")
            updated_at = cur.fetchone()[0]
            t0 = time.perf_counter()
    finally:
        conn.remove_notice_handler(collect)
    lsn = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]
    return xid, lsn, t0, updated_at


# -- the broadcast path ----------------------------------------------------------------------


def _until_due(conn, limit: float):
    """037's settings (None before 037); with a limit of R sends a second, first
    wait (at most `limit` s) until 1/R has passed since the last send, so that
    the trigger sends our change."""
    from genisss_cli.core import broadcast

    settings = broadcast.read(conn)
    if settings is not None and settings.max_per_second and settings.last_sent_at is not None:
        now = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # the server's clock, as the trigger's
        left = (settings.last_sent_at - now).total_seconds() + 1 / settings.max_per_second
        time.sleep(min(max(left, 0.0), limit))
    return settings


def _observe_broadcast(conn, updated_at, warnings: list[str], settings=None) -> CheckResult:
    """The message realtime.send() inserted for our change, found by its updated_at
    (the change held the row's lock: no other change has the same). settings:
    037's, for the channel kind to expect and the limit that may have skipped it."""
    private_wanted = bool(settings and settings.private)
    kind = "private" if private_wanted else "public"
    if warnings:
        return CheckResult(BROADCAST_ROW, "fail", "realtime.send() raised a WARNING instead of sending: "
                           f"{'; '.join(warnings)}: the change was not broadcast (see broadcast)")
    try:
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '10s'")
            rows = conn.execute(f"""
                SELECT tableoid::regclass::text, event, private
                  FROM {schema.REALTIME_MESSAGES}
                 WHERE topic = %s AND payload -> 'updated_at' = to_jsonb(%s::timestamptz)""",
                                [schema.BROADCAST_TOPIC, updated_at]).fetchall()
    except Exception as exc:  # this row only: the other two have their answers
        return CheckResult(BROADCAST_ROW, "warn", f"sent without a WARNING, but could not look for the "
                           f"message in {schema.REALTIME_MESSAGES}: {reason(exc)}")
    if not rows and settings is not None and settings.max_per_second:
        return CheckResult(BROADCAST_ROW, "warn", f"no message for the change: coalesced at "
                           f"{settings.max_per_second:g} a second, another change was sent just before it "
                           "(and the flush sends totals only when they changed); rerun when writes are quiet")
    if not rows:
        return CheckResult(BROADCAST_ROW, "fail", f"no message on topic '{schema.BROADCAST_TOPIC}' in "
                           f"{schema.REALTIME_MESSAGES} for the change, and no WARNING: is the trigger "
                           "enabled? (see broadcast)")
    partition, event, private = rows[0]
    if event != schema.BROADCAST_EVENT or private != private_wanted:
        return CheckResult(BROADCAST_ROW, "fail", f"the change was sent as event '{event}', "
                           f"{'private' if private else 'public'}; browsers listen for event "
                           f"'{schema.BROADCAST_EVENT}' on a {kind} channel", None)
    return CheckResult(BROADCAST_ROW, "pass", f"message on topic '{schema.BROADCAST_TOPIC}', event "
                       f"'{event}', {kind}, in {partition}: Realtime streams it from there")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- the LISTEN path ----------------------------------------------------------------------------


class Listener:
    """LISTEN global_stats on its own session; a thread waits for our notification."""

    def __init__(self, db, notifier_pid: int, timeout: float):
        from genisss_cli.conn import db as dbmod
        from genisss_cli.core.watch import listen

        self.conn = dbmod.connect(db, session=True)
        try:
            # Registering is part of the live round trip: --live-timeout bounds
            # it too, not watch's own 10 s.
            listen(self.conn, timeout=timeout)
        except BaseException:
            self.conn.close()
            raise
        self.notifier_pid = notifier_pid
        self.arrived: float | None = None
        self.payload: str | None = None
        self.error: str | None = None
        self.done = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._wait, name="genisss-live-listen", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _wait(self) -> None:
        try:
            while not self.stop.is_set():
                for n in self.conn.notifies(timeout=0.1):
                    if n.channel == CHANNEL and n.pid == self.notifier_pid:
                        self.arrived = time.perf_counter()
                        self.payload = n.payload
                        return
        except Exception as exc:
            self.error = reason(exc)
        finally:
            self.done.set()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(2)
        try:
            self.conn.close()
        except Exception:
            pass


def _observe_listener(listener: Listener, t0: float, deadline: float, opts) -> CheckResult:
    listener.done.wait(max(0.0, deadline - time.perf_counter()))
    if listener.arrived is not None:
        return CheckResult(LISTEN_ROW, "pass", f"NOTIFY on {CHANNEL} arrived {_ms(listener.arrived - t0)} "
                           "after COMMIT")
    if listener.error:
        return CheckResult(LISTEN_ROW, "fail", f"the listening session failed: {listener.error}")
    return CheckResult(LISTEN_ROW, "fail", f"no NOTIFY on {CHANNEL} within {opts.live_timeout:g} s of "
                       "the COMMIT (see trigger)")


# -- the publication path -----------------------------------------------------------------------


class Slot:
    """A temporary pgoutput slot on its own session, dropped by close()."""

    def __init__(self, db, publication: str):
        from psycopg import sql

        from genisss_cli.conn import db as dbmod

        self.name = f"genisss_check_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        self.conn = dbmod.connect(db, session=True)
        self.created = False
        try:
            # Creating a logical slot waits for running transactions: not forever;
            # reading it is quick, and keeps the same limit.
            self.conn.execute("SET statement_timeout = '10s'")
            self.conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput', true)", [self.name])
            self.created = True
        except BaseException:
            self.conn.close()
            raise
        # pgoutput reads the names as a list of identifiers: quote it as one.
        self.publications = sql.Identifier(publication).as_string(self.conn)
        self.relations: dict[int, tuple[str, str]] = {}

    def read(self) -> list[tuple[int, bytes]]:
        return [(int(xid), bytes(data)) for xid, data in self.conn.execute(
            "SELECT xid::text, data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL, "
            "'proto_version', '1', 'publication_names', %s)", [self.name, self.publications])]

    def confirmed_past(self, lsn: str) -> bool:
        row = self.conn.execute("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                                "WHERE slot_name = %s", [lsn, self.name]).fetchone()
        return bool(row and row[0])

    def close(self) -> None:
        try:
            if self.created and not self.conn.closed:
                self.conn.execute("SELECT pg_drop_replication_slot(%s)", [self.name])
        except Exception:
            pass  # a temporary slot goes with its session, closed below
        finally:
            self.conn.close()


def decode(message: bytes, relations: dict[int, tuple[str, str]]) -> tuple[str, int | None]:
    """(message type, relation OID) of one pgoutput message; an 'R' message is
    remembered in relations (OID -> (schema, name))."""
    kind = message[:1].decode("ascii", "replace")
    if kind in ("R", "U", "I", "D") and len(message) >= 5:
        relid = int.from_bytes(message[1:5], "big")
        if kind == "R":
            schema, rest = message[5:].split(b"\0", 1)
            name = rest.split(b"\0", 1)[0]
            relations[relid] = (schema.decode(), name.decode())
        return kind, relid
    return kind, None


def _observe_slot(slot: Slot, xid: int, commit_lsn: str, t0: float, deadline: float, opts) -> CheckResult:
    pub = opts.publication
    seen_commit = False
    while True:
        changes = slot.read()
        arrived = time.perf_counter()
        for change_xid, data in changes:
            kind, relid = decode(data, slot.relations)
            if change_xid != xid:
                continue
            if kind == "U" and slot.relations.get(relid) == ("public", "global_stats"):
                return CheckResult(SLOT_ROW, "pass", f"UPDATE of public.global_stats decoded from {pub} "
                                   f"{_ms(arrived - t0)} after COMMIT (pgoutput, temporary slot polled "
                                   f"every {_ms(POLL_INTERVAL)})")
            seen_commit = seen_commit or kind == "C"
        if seen_commit or slot.confirmed_past(commit_lsn):
            return CheckResult(SLOT_ROW, "fail", f"the transaction was decoded, but {pub} did not carry its "
                               "UPDATE of global_stats (see publication)")
        if time.perf_counter() > deadline:
            return CheckResult(SLOT_ROW, "fail", f"no UPDATE of global_stats came through {pub} within "
                               f"{opts.live_timeout:g} s of the COMMIT")
        time.sleep(POLL_INTERVAL)
