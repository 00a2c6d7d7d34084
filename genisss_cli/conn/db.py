"""Connecting, and turning psycopg's errors into one line and an exit code."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from genisss_cli.conn import config, deadline
from genisss_cli.errors import Exit, GenisssError, query_timeout

# Supabase's transaction-mode pooler (Supavisor, formerly PgBouncer) listens
# here; the direct server and the session-mode pooler listen on 5432.
TRANSACTION_POOLER_PORT = "6543"
APPLICATION_NAME = "genisss"


@dataclass(frozen=True)
class Database:
    """A resolved target: the DSN to use, where it came from, how long to wait.
    `where` describes it without a password; render.show_url shows the DSN."""

    dsn: str
    source: str
    embedded: bool
    connect_timeout: float = config.DEFAULT_CONNECT_TIMEOUT
    query_timeout: float = config.DEFAULT_QUERY_TIMEOUT
    data_dir: Path | None = None  # the embedded server's, to find it again after a restart

    @property
    def params(self) -> dict:
        from psycopg import conninfo

        return conninfo.conninfo_to_dict(self.dsn)

    @property
    def where(self) -> str:
        p = self.params
        host = p.get("host") or "localhost"
        if self.embedded:
            host = "embedded"
        elif host.startswith("/"):
            host = f"socket {host}"
        port = f":{p['port']}" if p.get("port") and not self.embedded else ""
        return f"{host}{port}/{p.get('dbname') or p.get('user') or ''}"

    @property
    def transaction_pooler(self) -> bool:
        return str(self.params.get("port", "")) == TRANSACTION_POOLER_PORT


def resolve(env) -> Database:
    """The database env points at; the embedded server is started if it is the one."""
    target = env.target
    timeouts = {"connect_timeout": env.connect_timeout, "query_timeout": env.query_timeout}
    if not target.embedded:
        return Database(target.dsn, target.source, False, **timeouts)
    from genisss_cli.conn import embedded  # pgserver's modules only where it is used

    dsn, started = embedded.ensure_running(env.data_dir)
    if started is not None:  # said once, by the command that started it
        from genisss_cli import render

        render.show(started, env)
    return Database(dsn, "embedded", True, data_dir=env.data_dir, **timeouts)


def connect(db: Database, *, session: bool = False, autocommit: bool = True, timeout: float | None = None):
    """Open a psycopg connection. session=True for LISTEN and session locks,
    which a transaction pooler cannot keep."""
    import psycopg

    if session and db.transaction_pooler:
        raise GenisssError(
            Exit.NEEDS_SESSION,
            f"{db.where} is a transaction pooler, which cannot keep a session (LISTEN, session locks)",
            "use the direct or session-mode connection string (port 5432)",
        )
    kwargs = {
        "autocommit": autocommit,
        "connect_timeout": max(1, round(timeout or db.connect_timeout)),
        "application_name": APPLICATION_NAME,
    }
    if db.transaction_pooler:
        kwargs["prepare_threshold"] = None  # no server-side prepared statements there
    answer_timeout = db.query_timeout
    try:
        conn = deadline.connection_class().connect(db.dsn, **kwargs)
    except psycopg.Error as exc:
        raise connect_error(db, exc) from None
    conn.answer_timeout = answer_timeout
    try:
        away = session and gives_sessions_away(conn, db)
    except BaseException:
        conn.close()
        raise
    if away:
        conn.close()
        raise GenisssError(
            Exit.NEEDS_SESSION,
            f"{db.where} is a transaction pooler: it gave this connection's server session to "
            "another client, so LISTEN and session locks would be lost",
            "use the direct or session-mode connection string",
        )
    return conn


POOLER_PROBE_TIMEOUT = 2.0  # seconds a second client may wait behind a pooler


def server_pid(conn) -> int:
    return conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()[0]


def pooled_pid(conn) -> int | None:
    """The server's pid for conn's session when conn is behind a pooler, None
    when it is not: a pooler answers the client's startup with a backend key of
    its own, so the pid the client was told is not the server's."""
    pid = server_pid(conn)
    return None if pid == conn.info.backend_pid else pid


def gives_sessions_away(conn, db: Database) -> bool:
    """Is conn behind a transaction pooler? Told by proof rather than by guess.

    Behind a pooler (pooled_pid), a second client asks for its server's pid: a
    transaction pooler hands it the server session conn (idle, autocommit) has
    just released (pgbouncer reuses the last released first); a session pooler
    cannot, because conn keeps it. Only a session seen given away counts: a
    pooler that reuses in another order passes, as it did when only the port
    (6543) told. The answer is kept on conn: `check --live` asks twice."""
    known = getattr(conn, "gives_sessions_away", None)
    if known is None:
        ours = pooled_pid(conn)
        known = ours is not None and _handed_on(db, ours)
        conn.gives_sessions_away = known
    return known


def _handed_on(db: Database, pid: int) -> bool:
    """Does a second client get the server session `pid`?"""
    import psycopg

    try:
        probe = connect(db)
    except GenisssError:
        return False  # no second client allowed: nothing shown either way
    probe.answer_timeout = POOLER_PROBE_TIMEOUT
    try:
        return server_pid(probe) == pid
    except psycopg.Error:
        return False  # no server session free for a second client: the first keeps its own
    finally:
        probe.close()


def set_lock_timeout(conn, seconds: float) -> None:
    """lock_timeout for the rest of conn's current transaction (SET LOCAL)."""
    conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", [f"{int(seconds * 1000)}ms"])


def keep_notices(conn, into: list[str]) -> None:
    """Append to into, as they arrive, the NOTICEs genisss's own SQL raises
    ("genisss: what it skipped or did"), without that prefix."""
    def handler(diag) -> None:
        text = diag.message_primary or ""
        if text.startswith("genisss:"):
            into.append(text.removeprefix("genisss:").strip())

    conn.add_notice_handler(handler)


# libpq's reason for a failed connection (searched, case aside, in this
# order) -> what genisss says, and the fix.
_CONNECT_REASONS = [
    (r"authentication failed", "authentication failed for user {user} at {where}",
     "check the user and password in the database URL"),
    (r"no password supplied", "{where} asks for a password and none was given",
     "put the password in the database URL"),
    (r'database "(?P<name>[^"]*)" does not exist', 'database "{name}" does not exist at {where}',
     "check the database name in the URL"),
    (r"role .*does not exist", "role {user} does not exist at {where}", "check the user in the database URL"),
    (r"could not translate host name|name or service not known", "unknown host in {where}",
     "check the host name"),
    (r"connection refused", "{where} refused the connection", "is the server running and listening there?"),
    (r"timeout expired|timed out", "no answer from {where} within the connect timeout",
     "check the network, or raise GENISSS_CONNECT_TIMEOUT"),
    (r"no such file or directory", "no server is listening at {where}",
     "start it (embedded: genisss db start)"),
]


def connect_error(db: Database, exc: Exception) -> GenisssError:
    text = _first_line(exc)
    user = db.params.get("user") or "the default user"
    for reason, message, hint in _CONNECT_REASONS:
        m = re.search(reason, text, re.IGNORECASE)
        if m:
            return GenisssError(Exit.CONNECT, message.format(user=user, where=db.where, **m.groupdict()),
                                hint)
    return GenisssError(Exit.CONNECT, f"cannot connect to {db.where}: {text}")


def translate(exc: BaseException) -> GenisssError | None:
    """Map an error that escaped a command to a GenisssError, or None if it is not psycopg's."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None or not isinstance(exc, psycopg.Error):
        return None
    from psycopg import errors as e

    text = _first_line(exc)
    if isinstance(exc, e.UndefinedTable | e.UndefinedFunction):
        return GenisssError(Exit.NOT_MIGRATED, f"migration 033 is not applied ({text})",
                            "run: genisss migrate up")
    if isinstance(exc, e.InsufficientPrivilege):
        return GenisssError(Exit.PERMISSION, f"permission denied: {text}",
                            "connect as the table owner or a role with the needed grant")
    if isinstance(exc, e.LockNotAvailable | e.QueryCanceled):
        return GenisssError(Exit.TIMEOUT, f"gave up waiting: {text}", "nothing was changed; retry later")
    if isinstance(exc, e.ProgramLimitExceeded | e.InsufficientResources):  # the server's own limit
        return GenisssError(Exit.DATABASE, f"the server reported an error: {text}")
    if isinstance(exc, psycopg.OperationalError):
        seconds = getattr(exc, "query_timeout", None)  # deadline.no_answer's
        if seconds is not None:
            return query_timeout(seconds, exc.committing)
        # DB-API files some server errors (55000 "does not have a replica
        # identity") under OperationalError too: only libpq's own (no SQLSTATE),
        # class 08 and the server shutting down (57P) mean the link is gone.
        if exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P")):
            return GenisssError(Exit.CONNECT, f"lost the connection to the server: {text}")
    return GenisssError(Exit.DATABASE, f"the server reported an error: {text}")


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else exc.__class__.__name__
    return re.sub(r"^(connection|FATAL|ERROR):\s*", "", text)


def server_version(conn) -> str:
    return conn.execute("SHOW server_version").fetchone()[0].split(" ")[0]
