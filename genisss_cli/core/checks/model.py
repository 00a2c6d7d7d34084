"""`genisss check`: is this database ready for the realtime counter, and is it safe?

Each check reads the catalogs and returns CheckResult rows: pass, warn, fail or
skipped, what it found, and for a failure the SQL (or genisss command) that
repairs it. A check runs in its own transaction, so that one that raises (a
catalog the role may not read, say) becomes a warning that says why and does
not poison the others. The --live checks are in live.py. docs/check.md
explains every row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genisss_cli.core import schema
from genisss_cli.core.checks import fixes
from genisss_cli.errors import Exit

TABLE = schema.TABLE
FUNCTIONS = tuple(name.removeprefix(f"{schema.SCHEMA}.") for name in schema.FUNCTIONS)
NOTIFY_FUNCTION = f"{schema.NOTIFY_FUNCTION}()"
NOTIFY_TRIGGER = schema.NOTIFY_TRIGGER
API_ROLES = schema.API_ROLES
WORKER_ROLE = schema.WORKER_ROLE
QUEUE_WARN = 0.01  # pg_notification_queue_usage() from which a warning is raised
SLOT_LAG_WARN = 128 * 1024 * 1024  # bytes of WAL a Realtime slot may hold back
MIGRATE_UP, RERUN_033, REPAIR, RELAY = fixes.MIGRATE_UP, fixes.RERUN_033, fixes.REPAIR, fixes.RELAY
COMMANDS = fixes.COMMANDS
NO_BROADCAST = "Broadcast: not available here (no realtime.send())"  # the broadcast rows' skip

# name -> (type as format_type() prints it, NOT NULL, the DDL that adds it)
COLUMNS = {
    "id": ("text", True, "text NOT NULL DEFAULT 'singleton'"),
    "total_stories": ("bigint", True, "bigint NOT NULL DEFAULT 0"),
    "total_audio_generations": ("bigint", True, "bigint NOT NULL DEFAULT 0"),
    "last_story_at": ("timestamp with time zone", False, "timestamptz"),
    "last_audio_at": ("timestamp with time zone", False, "timestamptz"),
    "updated_at": ("timestamp with time zone", True, "timestamptz NOT NULL DEFAULT now()"),
}
NULL_DEFAULTS = {"id": "'singleton'", "total_stories": "0", "total_audio_generations": "0",
                 "updated_at": "now()"}


@dataclass
class CheckResult:
    name: str
    status: str  # pass | warn | fail | skipped
    detail: str
    fix: str | None = None


@dataclass
class CheckReport:
    """Every row of one `genisss check`, and the database it looked at."""

    database: str
    results: list[CheckResult]

    def exit_code(self, strict: bool = False) -> int:
        """0 when nothing fails; 1 when a check fails (strict: or warns)."""
        bad = {"fail", "warn"} if strict else {"fail"}
        return Exit.FINDING if any(r.status in bad for r in self.results) else Exit.OK


# The rows only Supabase Realtime needs; skipped for a database without it.
REALTIME_ONLY = ("realtime visibility", "publication", "wal_level", "broadcast", "broadcast private",
                 "broadcast trailing send", "replication slot")


@dataclass
class Options:
    publication: str = schema.PUBLICATION
    # None: the database uses Supabase Realtime; else what turned it off
    # ("--no-realtime", "GENISSS_REALTIME=off"), for the skipped rows to say.
    realtime_off: str | None = None
    live: bool = False
    live_timeout: float = 10.0
    queue_warn: float = QUEUE_WARN
    slot_lag_warn: int = SLOT_LAG_WARN


@dataclass
class Context:
    conn: object  # psycopg.Connection, autocommit
    database: object  # db.Database
    options: Options
    table_oid: int | None = None
    roles: dict[str, int] = field(default_factory=dict)  # Supabase roles that exist -> oid
    revision: str | None = None

    def ident(self, name: str) -> str:
        """An identifier quoted as the server would (bare where it can be), for a fix's text."""
        return self.conn.execute("SELECT quote_ident(%s)", [name]).fetchone()[0]

    def sql(self, template: str, *identifiers: str) -> str:
        """A fix's text: template with each {} filled by a quoted identifier."""
        return template.format(*(self.ident(i) for i in identifiers))


class Findings:
    """What one check found: failures and warnings, each with its fix."""

    def __init__(self, name: str):
        self.name = name
        self.fails: list[str] = []
        self.warns: list[str] = []
        self.fixes: list[str] = []

    def fail(self, what: str, *fixes: str) -> None:
        self.fails.append(what)
        self.fixes.extend(f for f in fixes if f not in self.fixes)

    def warn(self, what: str, *fixes: str) -> None:
        self.warns.append(what)
        self.fixes.extend(f for f in fixes if f not in self.fixes)

    def result(self, ok_detail: str) -> CheckResult:
        if not self.fails and not self.warns:
            return CheckResult(self.name, "pass", ok_detail)
        status = "fail" if self.fails else "warn"
        return CheckResult(self.name, status, "; ".join(self.fails + self.warns), join_fixes(self.fixes))


def join_fixes(fixes: list[str]) -> str | None:
    """SQL statements joined into one script; a genisss command repairs it all alone."""
    for command in COMMANDS:
        if command in fixes:
            return command
    return ";\n".join(f.rstrip(";") for f in fixes) + ";" if fixes else None


def reason(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else exc.__class__.__name__


def rerun_fix(ctx: Context) -> str:
    """What restores a missing table (and what depends on it) of migration 033."""
    return fixes.missing_table(ctx.revision)


RLS_HIDES = ("row level security hides its rows from this role (run genisss check as the table's owner "
             "to see them)")


def rls_hides(conn, table: str) -> bool:
    """Does row level security filter what this role reads from table?"""
    return bool(one(conn, "SELECT row_security_active(to_regclass(%s))", [table])[0])


def quote_literal(conn, value: str) -> str:
    """A value quoted as the server would, for a fix's text."""
    return one(conn, "SELECT quote_literal(%s::text)", [value])[0]


def realtime_not_used(name: str, ctx: Context) -> CheckResult:
    return CheckResult(name, "skipped", f"Realtime not used ({ctx.options.realtime_off})")


def no_table(name: str) -> CheckResult:
    return CheckResult(name, "skipped", "public.global_stats does not exist (see table)")


def one(conn, query: str, params=None):
    return conn.execute(query, params).fetchone()


