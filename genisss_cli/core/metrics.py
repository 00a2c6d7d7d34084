"""`genisss metrics`: the counter's state as numbers for Prometheus.

collect() never raises for the database's sake: an unreachable or unmigrated
database is itself a state to export (up = False, and the error that says
why, for the command to show and exit with). The checks are `genisss check`'s
catalog checks, run by its runner; never --live, which writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from genisss_cli.core import schema
from genisss_cli.core.checks import CheckResult, Options
from genisss_cli.errors import Exit, GenisssError, not_migrated

_STATE_SQL = f"""
SELECT to_regclass('{schema.TABLE}') IS NOT NULL, pg_catalog.pg_notification_queue_usage()
"""
_AGES_SQL = f"""
SELECT extract(epoch FROM now() - updated_at)::float8,
       extract(epoch FROM now() - last_story_at)::float8
  FROM {schema.TABLE} WHERE id = '{schema.ROW_ID}'
"""


@dataclass
class Metrics:
    """One reading. None where a value could not be read (see error)."""

    database: str  # host:port/dbname, never a password
    up: bool  # the counter was read
    exit_code: int  # the exit code of this run: 0, or the error's
    error: str | None = None  # why not up, one line
    stories: int | None = None  # total_stories
    audio_generations: int | None = None  # total_audio_generations
    drift: int | None = None  # total_stories - COUNT(*) of user_stories
    seconds_since_update: float | None = None  # now() - updated_at, by the server's clock
    seconds_since_last_story: float | None = None  # now() - last_story_at (None: no story yet)
    notify_queue_usage: float | None = None  # pg_notification_queue_usage(), 0 to 1
    revision: str | None = None  # the Alembic revision (None: none recorded)
    head: str = schema.HEAD
    checks: list[CheckResult] = field(default_factory=list)  # the catalog checks' rows


def collect(database, options: Options | None = None) -> tuple[Metrics, GenisssError | None]:
    """Read everything; return the reading and the error that kept any of it
    out (None when all was read)."""
    from genisss_cli.conn import db
    from genisss_cli.core import checks, counters

    options = options or Options()
    m = Metrics(database.where, up=False, exit_code=Exit.OK)
    error: GenisssError | None = None
    try:
        with db.connect(database) as conn:
            has_table, m.notify_queue_usage = conn.execute(_STATE_SQL).fetchone()
            m.revision = schema.current_revision(conn)
            try:
                if not has_table:
                    raise not_migrated(database.where)
                row = counters.require_row(conn)
                m.stories, m.audio_generations = row.total_stories, row.total_audio_generations
                m.seconds_since_update, m.seconds_since_last_story = conn.execute(_AGES_SQL).fetchone()
                m.drift = counters.drift(conn).rows[0].drift
                m.up = True
            except Exception as exc:  # the checks below still say what is wrong
                error = _as_error(exc)
            m.checks = checks.run(database, options).results
    except Exception as exc:
        error = error or _as_error(exc)
    if error is not None:
        m.up, m.exit_code, m.error = False, int(error.code), error.message
    return m, error


def _as_error(exc: Exception) -> GenisssError:
    from genisss_cli.conn import db

    if isinstance(exc, GenisssError):
        return exc
    translated = db.translate(exc)
    if translated is None:
        raise exc
    return translated


# -- --output ---------------------------------------------------------------------------------


SUFFIX = ".prom"  # the only files node_exporter's textfile collector reads


def check_output(path: Path) -> None:
    """Refuse, before connecting, a file the collector would never read, or
    one that cannot be written where it is."""
    if path.suffix != SUFFIX:
        raise GenisssError(Exit.USAGE, f"--output {path} does not end in {SUFFIX}",
                           f"node_exporter's textfile collector reads only *{SUFFIX} files")
    folder = path.parent
    if path.is_dir():
        raise _unwritable(path, "it is a folder")
    if not folder.is_dir():
        raise _unwritable(path, f"no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _unwritable(path, f"{folder} is not writable")


def write_atomic(path: Path, text: str) -> None:
    """Replace path with text in one step: node_exporter's textfile collector
    reads a whole old file or a whole new one, never half of either.

    The temporary file is in the same folder (os.replace is atomic only
    within a file system), named so that the collector, which reads *.prom
    only, skips it. A new file gets 0666 less the umask, as any file a
    program creates; a file that exists keeps its mode bits."""
    import secrets

    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise _unwritable(path, exc.strerror or exc.__class__.__name__) from None
    try:
        try:
            os.fchmod(fd, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            pass
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _unwritable(path, exc.strerror or exc.__class__.__name__) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _unwritable(path: Path, why: str) -> GenisssError:
    return GenisssError(Exit.CONFIG, f"cannot write --output {path}: {why}",
                        "give a file in a folder this user can write (the textfile collector's)")
