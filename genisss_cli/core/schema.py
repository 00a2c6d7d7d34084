"""The migration head, known without importing Alembic.

status and check compare the database's revision with HEAD on every run; reading
alembic/versions for it would cost SQLAlchemy and Alembic's import time.
tests/test_migrate.py keeps this equal to Alembic's own head.
"""

BASELINE = "baseline"
REALTIME = "033_global_stats_realtime"  # the counter's objects
WATCHED = "034_notify_when_watched"  # NOTIFY only while a watcher holds the key
HEAD = WATCHED
# 034's key: its trigger notifies only while a watcher holds it shared
# ('genisssw' as a bigint; migrate's own lock is 'genisss').
WATCH_LOCK = 7450482557741921143
VERSION_TABLE = "alembic_version"


def current(conn) -> str | None:
    """The database's Alembic revision, None where genisss never migrated it."""
    row = conn.execute(
        "SELECT to_regclass('public.alembic_version') IS NOT NULL"
    ).fetchone()
    if not row[0]:
        return None
    row = conn.execute("SELECT version_num FROM public.alembic_version LIMIT 1").fetchone()
    return row[0] if row else None
