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

    def undo(self) -> str:
        """How to stop using this source, in the words its kind needs."""
        if self.source == "--database-url":
            return "leave out --database-url"
        if self.source.startswith(".env "):
            return f"remove {self.source.split()[1]} from ./.env (or run from another folder)"
        return f"unset {self.source}"


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
        values = read_dotenv(dotenv, env)
        for key in ENV_KEYS:
            if key in values:
                source = f".env {key}"
                if values[key] is None:  # python-dotenv's "declared, no value": a slip here
                    raise GenisssError(Exit.CONFIG, f".env has {key} without '='",
                                       "write KEY=VALUE, or remove the line to use the next source")
                return Target(_given(values[key], source,
                                     "set it, or remove the line to use the next source"), source)
    return Target(None, "embedded")


def _given(value: str, source: str, hint: str) -> str:
    if not value.strip():
        raise GenisssError(Exit.USAGE, f"the database URL from {source} is empty", hint)
    return normalize(value, source)


# .env as python-dotenv reads it (its parser's grammar, written out here, so
# that a value means what the application's load_dotenv() makes of it):
# `export ` allowed; 'single quotes' (\\ and \' escaped) and "double quotes"
# (\n, \t, \" ... escaped) may span lines and be followed by a # comment; an
# unquoted value ends at a whitespace-led #; KEY alone declares no value;
# ${NAME} and ${NAME:-default} are expanded. Each part is possessive (*+, ?+):
# python-dotenv reads them one after another and never goes back.
_BINDING = re.compile(r"""
    [^\S\r\n]*+(?:export[^\S\r\n]++)?+
    (?:'(?P<qkey>[^']++)'|(?!')(?P<key>[^=\#\s]++)|(?=\#))[^\S\r\n]*+
    (?:=(?P<gap>[^\S\r\n]*+)
       (?:'(?P<single>(?:\\.|[^'\\])*+)'|"(?P<double>(?:\\.|[^"\\])*+)"|(?!['"])(?P<bare>[^\r\n]*+)))?+
    (?:[^\S\r\n]*+\#[^\r\n]*+)?+[^\S\r\n]*+(?:\r\n|\n|\r|$)
""", re.VERBOSE | re.DOTALL)
_OPENS_QUOTE = re.compile(r"[^\S\r\n]*(?:export[^\S\r\n]+)?[^=\#\s]+[^\S\r\n]*=[^\S\r\n]*(['\"])")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t", "v": "\v"}
_VARIABLE = re.compile(r"\$\{(?P<name>[^}:]*)(?::-(?P<default>[^}]*))?\}")


def read_dotenv(path: Path, environ=None) -> dict[str, str | None]:
    """KEY=VALUE bindings as python-dotenv reads them (None: a KEY with no
    `=`). A line it could not read is an error, where python-dotenv warns
    and skips: a half-read .env could silently send genisss elsewhere."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # an editor's BOM is not part of the first key
    except (OSError, UnicodeDecodeError) as exc:
        raise GenisssError(Exit.CONFIG, f"cannot read {path}: {exc.__class__.__name__}") from None
    values: dict[str, str | None] = {}
    pos = re.compile(r"\s*").match(text).end()
    while pos < len(text):
        m = _BINDING.match(text, pos)
        if m is None or m.end() == pos:
            lineno = len(re.findall(r"\r\n|\n|\r", text[:pos])) + 1
            why = ""
            if quote := _OPENS_QUOTE.match(text, pos):  # a quoted value may span lines
                closed = re.compile(r"(?<!\\)" + quote[1]).search(text, quote.end())
                why = (f": text follows the closing {quote[1]} (a comment starts with #)" if closed
                       else f": the {quote[1]} it opens is never closed")
            raise GenisssError(Exit.CONFIG, f"{path.name} line {lineno} is not KEY=VALUE{why}",
                               "fix or remove that line, or pass --database-url")
        pos = re.compile(r"\s*").match(text, m.end()).end()
        key = m["qkey"] or m["key"]
        if key is not None:
            values[key] = _expand(_value(m), values, os.environ if environ is None else environ)
    return values


def _value(m: re.Match) -> str | None:
    if m["single"] is not None:
        return re.sub(r"\\([\\'])", r"\1", m["single"])
    if m["double"] is not None:
        return re.sub(r"\\([\\'\"abfnrtv])", lambda e: _ESCAPES[e[1]], m["double"])
    if m["bare"] is None:
        return None
    if m["gap"] and m["bare"].startswith("#"):  # `KEY= # comment`: empty
        return ""
    return re.sub(r"\s+#.*", "", m["bare"]).rstrip()


def _expand(value: str | None, earlier: dict, environ) -> str | None:
    """${NAME} and ${NAME:-default}, from the environment, else the file's
    earlier keys (load_dotenv's order: the environment wins)."""
    if value is None:
        return None

    def one(v: re.Match) -> str:
        found = environ.get(v["name"], earlier.get(v["name"], v["default"] or ""))
        return found or ""

    return _VARIABLE.sub(one, value)


def normalize(dsn: str, source: str) -> str:
    """Validate a DSN and drop a SQLAlchemy driver suffix (postgresql+psycopg://).
    A DSN libpq cannot read is an error that keeps libpq's reason (any
    password it quotes masked) and adds the fix where one is known."""
    from psycopg import conninfo

    dsn = dsn.strip()
    dsn = re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", dsn)
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except Exception as exc:
        reason = _reason(exc, dsn)
        raise GenisssError(Exit.CONFIG, f"malformed database URL (from {source}): {reason}",
                           _fix(reason, dsn)) from None
    if "@" in (params.get("host") or ""):  # libpq split the password at its own '@'
        raise GenisssError(Exit.CONFIG, f"malformed database URL (from {source}): '@' in the host",
                           "write an '@' in the password as %40")
    for port in str(params.get("port") or "5432").split(","):
        if not (port.isdigit() and 0 < int(port) < 65536):
            # A '/' in the password makes libpq read part of it as the port: don't echo that.
            shown = "" if _secret_part(port, dsn) else f" {port!r}"
            raise GenisssError(Exit.CONFIG, f"malformed database URL (from {source}): bad port{shown}",
                               "expected postgresql://user:password@host:5432/dbname "
                               "(write '/' in a password as %2F)")
    return dsn


def _password_spans(dsn: str) -> list[tuple[int, int]]:
    """Where in dsn the user may have meant a password, however libpq read it
    (wider rather than narrower): a URL's userinfo after `user:` up to its
    last '@' (an unescaped '@', '/' or space inside is still the password),
    the same shape anywhere in what is not a URL (postgresql//u:pw@h), and
    every password= (or ?password=) value."""
    # A scheme with one slash or none (postgresql:/u:pw@h) is a misspelt URL too.
    url = re.match(r"""['"]?[A-Za-z][A-Za-z0-9+.-]*:/{0,2}(?:[^:/@\s]*:(.*)@)?""", dsn, re.DOTALL)
    userinfo = url if url else re.search(r"[^:/@\s]*:(.*)@", dsn, re.DOTALL)
    spans = [userinfo.span(1)] if userinfo and userinfo.group(1) else []
    # A password= value runs to the next ` key=` or `&key=` (a space or '&'
    # may be meant as part of it).
    keyword = r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'?|.*?)(?=\s+[\w.-]+\s*=|&[\w.-]+=|\s*$)"
    return spans + [m.span(1) for m in re.finditer(keyword, dsn)]


def _secret_part(piece: str, dsn: str) -> set[int]:
    """The offsets in piece, a part of dsn libpq quotes back, that may show
    a password's characters (wherever piece occurs in dsn)."""
    found = set()
    spans = _password_spans(dsn)
    for at in (m.start() for m in re.finditer(re.escape(piece), dsn) if piece):
        for a, b in spans:
            found.update(range(max(a, at) - at, min(b, at + len(piece)) - at))
    return found


def _reason(exc: Exception, dsn: str) -> str:
    """libpq's first line, with what it quotes of the DSN masked where it
    overlaps a password. libpq quotes every piece of its input it names, so
    the text between any two of its '"' that is part of the DSN is such a
    piece (the password may hold a '"' itself); render's mask_text masks whole
    connection strings, not a piece cut inside the password, nor the password
    alone."""
    from itertools import combinations

    from genisss_cli.render.redact import MASK

    text = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    hidden = set()  # positions in text that show a password's character
    for i, j in combinations([k for k, c in enumerate(text) if c == '"'], 2):
        hidden.update(i + 1 + k for k in _secret_part(text[i + 1:j], dsn))
    # Each run of hidden characters becomes one mask; the rest is as libpq wrote it.
    return re.sub(r"\0+", MASK, "".join("\0" if k in hidden else c for k, c in enumerate(text)))


# Query parameters of Prisma's URLs, which libpq does not know.
_PRISMA = ("schema", "connection_limit", "pool_timeout", "socket_timeout", "statement_cache_size",
           "sslaccept", "sslidentity")


def _fix(reason: str, dsn: str) -> str:
    """The fix for a DSN libpq could not read, where genisss knows one."""
    if dsn[:1] in ("'", '"'):
        return "remove the quotes around the URL"
    m = re.match(r'invalid URI query parameter: "([^"]*)"', reason)
    if m and m.group(1) == "pgbouncer":
        return ("drop ?pgbouncer=true: that is Prisma's setting, not PostgreSQL's; "
                "genisss detects a pooler itself")
    if m and m.group(1) in _PRISMA:
        return f"drop ?{m.group(1)}=...: that is Prisma's setting, not PostgreSQL's"
    if m:
        return f"remove ?{m.group(1)}=...: PostgreSQL has no such parameter"
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)(?::/*|//)", dsn)
    if reason.startswith('missing "="') and scheme:
        import difflib

        if difflib.get_close_matches(scheme.group(1).lower(), ["postgresql", "postgres"], 1, 0.6):
            return "did you mean postgresql://?"
        return "a PostgreSQL URL starts with postgresql://"
    if reason.startswith("unexpected spaces") and re.search(r"\s#", dsn):
        return "a comment inside the quotes is part of the value: end the quotes before the #"
    if reason.startswith("unexpected spaces"):
        return "a URL holds no spaces: remove them, or write one that belongs to a password as %20"
    if "percent-encoded" in reason:
        return "write a '%' as %25"
    return "expected postgresql://user:password@host:5432/dbname"


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
