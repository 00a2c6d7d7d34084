"""`genisss db psql`: psql on the database in use.

The password goes to psql through PGPASSWORD, in psql's environment only;
psql's command line (which `ps` shows to every user of the machine) carries
the rest of the connection string without it.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass

from genisss_cli.errors import Exit, GenisssError


@dataclass(frozen=True)
class PsqlCommand:
    argv: list[str]  # psql, -d and the connection string without the password, then the user's
    environ: dict[str, str]  # the caller's, plus PGPASSWORD when the URL has a password


@dataclass(frozen=True)
class PsqlSession:
    """How psql ended; out and err are what it wrote when genisss's streams
    are not files (a program calling genisss.cli.run), else None: it wrote to
    them itself."""

    database: str
    status: int  # psql's exit status; negative: killed by that signal
    out: str | None = None
    err: str | None = None


def command(database, args: list[str], environ) -> PsqlCommand:
    """The psql command line and environment for database (a db.Database)."""
    from psycopg import conninfo

    exe = shutil.which("psql", path=environ.get("PATH", os.defpath))
    if exe is None:
        raise GenisssError(Exit.CONFIG, "psql is not installed (not found on PATH)",
                           "install the PostgreSQL client, e.g. apt install postgresql-client")
    params = {k: v for k, v in database.params.items() if v is not None}
    password = params.pop("password", None)
    params.setdefault("connect_timeout", str(max(1, round(database.connect_timeout))))
    child = {k: v for k, v in environ.items()}
    if password:
        child["PGPASSWORD"] = password
    return PsqlCommand([exe, "-d", conninfo.make_conninfo(**params), *args], child)


def run(database, cmd: PsqlCommand, stdin, stdout, stderr) -> PsqlSession:
    """Run psql in the foreground on the given streams, Ctrl-C its own."""
    from genisss_cli.interrupts import ChildOwnsCtrlC

    fds = [_fileno(s) for s in (stdin, stdout, stderr)]
    if None not in fds[1:]:
        proc = subprocess.Popen(cmd.argv, env=cmd.environ, stdin=fds[0] if fds[0] is not None
                                else subprocess.DEVNULL, stdout=fds[1], stderr=fds[2])
        with _reaped(proc), ChildOwnsCtrlC():
            status = proc.wait()
        return PsqlSession(database.where, status)
    given = stdin.read() if fds[0] is None and hasattr(stdin, "read") else None
    proc = subprocess.Popen(cmd.argv, env=cmd.environ, text=True,
                            stdin=subprocess.PIPE if given is not None else fds[0],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with _reaped(proc), ChildOwnsCtrlC():
        out, err = proc.communicate(given)
    return PsqlSession(database.where, proc.returncode, out, err)


@contextmanager
def _reaped(proc):
    """psql does not outlive genisss: anything that ends the wait ends psql too."""
    try:
        yield
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return None


def outcome(session: PsqlSession) -> GenisssError | None:
    """psql's exit status in genisss's table: 2 (no connection, or it went
    bad) is 4, any other failure 10, a signal 130."""
    if session.status == 0:
        return None
    if session.status < 0:
        return GenisssError(Exit.INTERRUPTED, "psql was interrupted")
    if session.status == 2:
        return GenisssError(Exit.CONNECT, f"psql could not connect to {session.database} "
                            "or lost the connection (psql exit status 2)", "see psql's message above")
    return GenisssError(Exit.DATABASE, f"psql exited with status {session.status}",
                        "see psql's message above")
