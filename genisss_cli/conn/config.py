"""Where the DSN comes from.

Order: the --database-url option, GENISSS_DATABASE_URL, DATABASE_URL, the same
two keys in ./.env, and last the embedded server. Nothing here connects.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from genisss_cli.errors import Exit, GenisssError

ENV_KEYS = ("GENISSS_DATABASE_URL", "DATABASE_URL")
DEFAULT_CONNECT_TIMEOUT = 10.0
# How long a query may go without an answer before genisss gives up on the
# server (frozen, paused, or cut off without a reset): longer than any lock
# timeout a command takes (at most 600 s) and than a COUNT(*) of a big table.
DEFAULT_QUERY_TIMEOUT = 900.0


class Dsn:
    """A connection string as given, password and all. Results carry it in
    this wrapper so that nothing prints it by accident: render.show_url is the
    one way to turn it into text, with the password masked."""

    __slots__ = ("value",)

    def __init__(self, value: str):
        self.value = value

    def __repr__(self) -> str:
        return "Dsn(...)"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, Dsn) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


@dataclass(frozen=True)
class Target:
    """The database a command talks to; dsn is None for the embedded default."""

    dsn: str | None
    source: str

    @property
    def embedded(self) -> bool:
        return self.dsn is None


def resolve(option: str | None, env=None, cwd: Path | None = None) -> Target:
    """The first source that is set. A source set to nothing (`-d ""`,
    `DATABASE_URL=`) is an error, not a pass to the next one: falling through
    would quietly send the command to another server, or the embedded one."""
    env = os.environ if env is None else env
    if option is not None:
        return Target(_given(option, "--database-url", "give a URL, or leave the option out"),
                      "--database-url")
    for key in ENV_KEYS:
        if key in env:
            return Target(_given(env[key], key, "set it, or unset it to use the next source"), key)
    dotenv = (cwd or Path.cwd()) / ".env"
    if dotenv.is_file():
        values = read_dotenv(dotenv)
        for key in ENV_KEYS:
            if key in values:
                source = f".env {key}"
                return Target(_given(values[key], source,
                                     "set it, or remove the line to use the next source"), source)
    return Target(None, "embedded")


def _given(value: str, source: str, hint: str) -> str:
    if not value.strip():
        raise GenisssError(Exit.USAGE, f"the database URL from {source} is empty", hint)
    return normalize(value, source)


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*$")


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, `export` and quotes allowed; anything else is an error,
    because a half-read .env could silently send genisss to the wrong server."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # an editor's BOM is not part of the first key
    except (OSError, UnicodeDecodeError) as exc:
        raise GenisssError(Exit.CONFIG, f"cannot read {path}: {exc.__class__.__name__}") from None
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise GenisssError(
                Exit.CONFIG,
                f"{path.name} line {lineno} is not KEY=VALUE",
                "fix or remove that line, or pass --database-url",
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def normalize(dsn: str, source: str) -> str:
    """Validate a DSN and drop a SQLAlchemy driver suffix (postgresql+psycopg://)."""
    from psycopg import conninfo

    dsn = dsn.strip()
    dsn = re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", dsn)
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except Exception:
        # libpq's own message can quote the string back, password and all.
        raise GenisssError(
            Exit.CONFIG,
            f"malformed database URL (from {source})",
            "expected postgresql://user:password@host:5432/dbname",
        ) from None
    if "@" in (params.get("host") or ""):  # libpq split the password at its own '@'
        raise GenisssError(Exit.CONFIG, f"malformed database URL (from {source}): '@' in the host",
                           "write an '@' in the password as %40")
    secrets = _passwords_in(dsn) | {params.get("password") or ""}
    for port in str(params.get("port") or "5432").split(","):
        if not (port.isdigit() and 0 < int(port) < 65536):
            # A '/' in the password makes libpq read part of it as the port: don't echo that.
            shown = "" if any(port in s for s in secrets if s) else f" {port!r}"
            raise GenisssError(Exit.CONFIG, f"malformed database URL (from {source}): bad port{shown}",
                               "expected postgresql://user:password@host:5432/dbname "
                               "(write '/' in a password as %2F)")
    return dsn


def _passwords_in(dsn: str) -> set[str]:
    """What the user may have meant as the password, however libpq read the string."""
    from urllib.parse import unquote

    found = set()
    m = re.match(r"^[a-z]+://[^:/@]*:([^@]*)@", dsn)
    if m and m.group(1):
        found |= {m.group(1), unquote(m.group(1))}
    m = re.search(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn)
    if m:
        found.add(m.group(1).strip("'"))
    return found


def connect_timeout(env=None) -> float:
    """GENISSS_CONNECT_TIMEOUT: seconds to wait for the server to answer a connection."""
    return _seconds_setting("GENISSS_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT, 3600, env)


def query_timeout(env=None) -> float:
    """GENISSS_QUERY_TIMEOUT: seconds a query may wait for the server's answer (db.connect)."""
    return _seconds_setting("GENISSS_QUERY_TIMEOUT", DEFAULT_QUERY_TIMEOUT, 86400, env)


def _seconds_setting(key: str, default: float, most: float, env=None) -> float:
    env = os.environ if env is None else env
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if not 0 < value <= most:  # also rejects nan
        raise GenisssError(Exit.CONFIG, f"{key} must be seconds between 0 and {most:g}")
    return value


_SWITCH = {"on": True, "true": True, "yes": True, "1": True,
           "off": False, "false": False, "no": False, "0": False}


def realtime(env=None) -> bool:
    """GENISSS_REALTIME: off when the database does not use Supabase Realtime
    (check then skips what only Realtime needs); on by default."""
    env = os.environ if env is None else env
    raw = env.get("GENISSS_REALTIME", "").strip().lower()
    if not raw:
        return True
    if raw not in _SWITCH:
        raise GenisssError(Exit.CONFIG, "GENISSS_REALTIME must be on or off")
    return _SWITCH[raw]


def data_dir(env=None) -> Path:
    """Where the embedded server keeps its data: GENISSS_DATA_DIR, or the user's data folder."""
    env = os.environ if env is None else env
    override = env.get("GENISSS_DATA_DIR", "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs  # only where the embedded server is the one in use

    return platformdirs.user_data_path("genisss")
