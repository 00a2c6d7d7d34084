"""Exit codes and the one error type every command raises.

The convention is diff's and grep's, so cron and alerting can tell a finding
from a failure. The table is documented in the README; keep the two in step.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0  # all is well
    FINDING = 1  # the command worked and found something: drift, a failed check
    USAGE = 2  # bad command line (Typer's own code)
    CONFIG = 3  # malformed DSN, unreadable .env, bad setting
    CONNECT = 4  # cannot reach or log in to the server, or the database is missing
    NOT_MIGRATED = 5  # migration 033 is not applied, or the database is newer than this genisss
    PERMISSION = 6  # the role lacks a privilege the command needs
    NEEDS_SESSION = 7  # LISTEN or a session lock through a transaction pooler
    TIMEOUT = 8  # a lock or statement timeout; nothing was changed
    EMBEDDED = 9  # the embedded server could not be started or stopped
    DATABASE = 10  # any other error reported by the server
    INTERRUPTED = 130  # Ctrl-C during a command that changes data


class GenisssError(Exception):
    """A failure the user can act on: one line, a hint, an exit code."""

    def __init__(self, code: Exit, message: str, hint: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


# Errors more than one command raises, each worded once.

def missing_row() -> GenisssError:
    from genisss_cli.core.checks import fixes  # the one table of fixes; imported when it is needed

    return GenisssError(Exit.NOT_MIGRATED, "global_stats has no 'singleton' row",
                        f"fix: {fixes.missing_row()}")


def newer_database(revision: str, head: str) -> GenisssError:
    return GenisssError(Exit.NOT_MIGRATED,
                        f"the database is at {revision}, newer than this genisss (head {head})",
                        "upgrade genisss; nothing was changed")


def lock_timeout(what: str, seconds: float, done: str = "nothing was changed") -> GenisssError:
    """`what` (sync, the migration, bump) was not granted a lock within
    --lock-timeout. conn.blockers.watch adds who held it (held_by)."""
    err = GenisssError(Exit.TIMEOUT, f"{what} gave up waiting for a lock after {seconds:g} s",
                       f"{done}; a long transaction or another migration holds it: retry later")
    err.lock_wait, err.done = True, done
    return err


def held_by(err: GenisssError, holders: list[str], pids: list[int]) -> None:
    err.message += f": held by {'; '.join(holders)}"
    ends = "; ".join(f"SELECT pg_terminate_backend({int(pid)})" for pid in pids)
    err.hint = f"{err.done}; end that transaction ({ends}) or retry later"


def query_timeout(seconds: float, committing: bool) -> GenisssError:
    """The server gave no answer for GENISSS_QUERY_TIMEOUT (conn/deadline.py)."""
    if committing:
        return GenisssError(Exit.CONNECT, f"no answer from the server within {seconds:g} s "
                            "(GENISSS_QUERY_TIMEOUT) while committing",
                            "the COMMIT was sent: whether it took effect is unknown; look before you "
                            "retry (is the server frozen or cut off?)")
    return GenisssError(Exit.CONNECT, f"no answer from the server within {seconds:g} s "
                        "(GENISSS_QUERY_TIMEOUT)",
                        "is the server frozen or cut off? Check it, or raise GENISSS_QUERY_TIMEOUT")


def not_migrated(where: str) -> GenisssError:
    return GenisssError(Exit.NOT_MIGRATED,
                        f"migration 033 is not applied to {where}: public.global_stats does not exist",
                        "run: genisss migrate up")
