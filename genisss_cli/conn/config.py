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
CONNECT_TIMEOUT_OVERRIDE: float | None = None  # --connect-timeout
# How long a query may go without an answer before genisss gives up on the
# server (frozen, paused, or cut off without a reset): longer than any lock
# timeout a command takes (at most 600 s) and than a COUNT(*) of a big table.
DEFAULT_QUERY_TIMEOUT = 900.0

# Every password genisss has seen this run. render masks each of them in
# anything it prints, as a last line of defence behind display_dsn().
SECRETS: set[str] = set()


@dataclass(frozen=True)
class Target:
    """The database a command talks to; dsn is None for the embedded default."""

    dsn: str | None
    source: str

    @property
    def embedded(self) -> bool:
        return self.dsn is None


def resolve(option: str | None, env=None, cwd: Path | None = None) -> Target:
    env = os.environ if env is None else env
    if option is not None:
        return Target(normalize(option, "--database-url"), "--database-url")
    for key in ENV_KEYS:
        if env.get(key, "").strip():
            return Target(normalize(env[key], key), key)
    dotenv = (cwd or Path.cwd()) / ".env"
    if dotenv.is_file():
        values = read_dotenv(dotenv)
        for key in ENV_KEYS:
            if values.get(key, "").strip():
                return Target(normalize(values[key], f".env {key}"), f".env {key}")
    return Target(None, "embedded")


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
    _remember_password_of(dsn)
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except Exception:
        # libpq's own message can quote the string back, password and all.
        raise GenisssError(
            Exit.CONFIG,
            f"malformed database URL (from {source})",
            "expected postgresql://user:password@host:5432/dbname",
        ) from None
    if params.get("password"):
        SECRETS.add(params["password"])
    if "@" in (params.get("host") or ""):  # libpq split the password at its own '@'
        raise GenisssError(Exit.CONFIG, f"malformed database URL (from {source}): '@' in the host",
                           "write an '@' in the password as %40")
    for port in str(params.get("port") or "5432").split(","):
        if not (port.isdigit() and 0 < int(port) < 65536):
            # A '/' in the password makes libpq read part of it as the port: don't echo that.
            shown = "" if any(port in s for s in SECRETS) else f" {port!r}"
            raise GenisssError(Exit.CONFIG, f"malformed database URL (from {source}): bad port{shown}",
                               "expected postgresql://user:password@host:5432/dbname "
                               "(write '/' in a password as %2F)")
    return dsn


def _remember_password_of(dsn: str) -> None:
    # Before parsing, so that even a DSN libpq rejects has its secret masked.
    m = re.match(r"^[a-z]+://[^:/@]*:([^@]*)@", dsn)
    if m and m.group(1):
        from urllib.parse import unquote

        SECRETS.update({m.group(1), unquote(m.group(1))})
    m = re.search(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn)
    if m:
        SECRETS.add(m.group(1).strip("'"))


def display_dsn(dsn: str) -> str:
    """The DSN as a URL with the password replaced by ***."""
    from urllib.parse import quote

    from psycopg import conninfo

    params = conninfo.conninfo_to_dict(dsn)
    user = params.pop("user", "")
    secret = ":***" if params.pop("password", None) else ""
    host = params.pop("host", "")
    port = params.pop("port", "")
    dbname = params.pop("dbname", "")
    auth = f"{quote(user, safe='')}{secret}@" if user or secret else ""
    netloc = ""
    if host and not host.startswith("/") and "," not in host:
        netloc = host + (f":{port}" if port else "")
    else:
        if host:
            params = {"host": host, **params}
        if port:
            params["port"] = port
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"postgresql://{auth}{netloc}/{dbname}" + (f"?{query}" if query else "")


def connect_timeout(env=None) -> float:
    """Seconds to wait for the server to answer a connection (--connect-timeout)."""
    if CONNECT_TIMEOUT_OVERRIDE is not None:
        return CONNECT_TIMEOUT_OVERRIDE
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
