"""The one place a connection string becomes text: its password masked
(reveal_url, for `db url --reveal` alone, keeps it).

show_url masks the password field of a URL (userinfo or a `password=` query
parameter) or of a key=value DSN, and changes no other character. mask_text
does the same for every connection string inside free text that genisss did
not write itself: libpq's and the server's messages, usage errors, a
traceback. Nothing is replaced by searching for a password's value, so a
password like `13` or `postgres` can never corrupt a number or a name.
"""

from __future__ import annotations

import re

MASK = "***"
# A placeholder in our own hints (postgresql://user:password@host/db) is no secret.
PLACEHOLDERS = {"password", "pass", MASK}

_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>]*")
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)([^&#\s]*)")
# libpq's key=value form: a value is 'quoted, \' escaped' or runs to a space.
_WORD_PASSWORD = re.compile(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s'\"]+)")


def show_url(dsn: str) -> str:
    """dsn with its password replaced by ***; every other character as given."""
    if "://" in dsn:
        return _URL.sub(_mask_url, dsn)
    return _WORD_PASSWORD.sub(_mask_word, dsn)


def reveal_url(dsn: str) -> str:
    """dsn as given, password included: only for `genisss db url --reveal`,
    the one output where the operator asks for it."""
    return dsn


def mask_text(text: str) -> str:
    """Free text with the password of every connection string in it masked."""
    text = _URL.sub(_mask_url, text)
    return _WORD_PASSWORD.sub(_mask_word, text)


def _mask_url(m: re.Match) -> str:
    scheme, _, rest = m.group(0).partition("://")
    # libpq ends the authority at the first '/'; a password's own unescaped
    # '@' makes the last '@' before it the end of the userinfo.
    authority = rest.split("/", 1)[0]
    at = authority.rfind("@")
    if at < 0 and "@" in rest and not _HOST_PORTS.fullmatch(authority):
        at = rest.rfind("@")  # an unescaped '/' in the password: hide up to its last '@'
    if at >= 0:
        user, colon, password = rest[:at].partition(":")
        if colon and password and password not in PLACEHOLDERS:
            rest = f"{user}:{MASK}{rest[at:]}"
    return f"{scheme}://{_QUERY_PASSWORD.sub(_mask_query, rest)}"


_HOST_PORTS = re.compile(r"[^:@]*(:\d*)?(,.*)?")


def _mask_query(m: re.Match) -> str:
    return m.group(0) if not m.group(2) or m.group(2) in PLACEHOLDERS else m.group(1) + MASK


def _mask_word(m: re.Match) -> str:
    value = m.group(2)
    if value.strip("'") in PLACEHOLDERS or not value.strip("'"):
        return m.group(0)
    return m.group(1) + MASK
