"""genisss migrate up|down|status|history|sql."""

from typing import Annotated

import typer

from genisss_cli.cli.app import migrate_app
from genisss_cli.cli.broadcast import at_migrate, rate_value
from genisss_cli.cli.options import DEFAULT_LOCK_TIMEOUT, LockTimeoutOpt, command
from genisss_cli.core.schema import REVISIONS
from genisss_cli.errors import Exit, GenisssError

# Shell completion of TARGET: the revisions this genisss knows (schema.py's
# list, kept equal to Alembic's by a test: completion imports no Alembic).

def complete_up_target(incomplete: str) -> list[str]:
    return [t for t in ("head", *REVISIONS) if t.startswith(incomplete)]


def complete_down_target(incomplete: str) -> list[str]:
    return [t for t in ("-1", "base", *REVISIONS) if t.startswith(incomplete)]


@command(migrate_app, "up")
def migrate_up(
    target: Annotated[str, typer.Argument(help="Revision to upgrade to.",
                                          autocompletion=complete_up_target)] = "head",
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the SQL it would run; change nothing.")
    ] = False,
    broadcast_private: Annotated[bool | None, typer.Option(
        "--broadcast-private/--broadcast-public",
        help="Then set the broadcast's channel (genisss broadcast --private/--public).")] = None,
    broadcast_rate: Annotated[float | None, typer.Option(
        "--broadcast-rate", metavar="R", callback=rate_value,
        help="Then limit the broadcast to R messages a second (genisss broadcast --max-per-second).")] = None,
    broadcast_no_limit: Annotated[bool, typer.Option(
        "--broadcast-no-limit", help="Then broadcast every change (genisss broadcast --no-limit).")] = False,
    *, env,
) -> int:
    """Apply the migrations (the baseline, then 033 to 036) up to TARGET. Safe to rerun.

    Adopts a 033 that was pasted into the SQL editor by hand: the counter keeps
    its value, what is missing is added, the revision is recorded.

    Example: genisss migrate up
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import migrate

    database = db.resolve(env)
    if dry_run:
        render.show(migrate.dry_run_up(database, target, lock_timeout), env)
    else:
        render.show(migrate.upgrade(database, target, lock_timeout), env)
    at_migrate(env, database, broadcast_private, broadcast_rate, broadcast_no_limit, dry_run, lock_timeout)
    return Exit.OK


@command(migrate_app, "down")
def migrate_down(
    target: Annotated[
        str, typer.Argument(help="Revision to go down to: -1 (one step), a revision, or base.",
                            autocompletion=complete_down_target)
    ] = "-1",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; for scripts.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be dropped; change nothing.")
    ] = False,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    *, env,
) -> int:
    """Roll back: reverting 034 restores the trigger that notifies on every
    update; reverting 033 drops the trigger, the functions, the publication
    membership and global_stats (with its counter). user_stories is never dropped.

    Shows the database and what will be lost, and asks.

    Example: genisss migrate down --yes
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import info, migrate

    database = db.resolve(env)
    plan = migrate.plan_downgrade(database, target)
    if dry_run or not plan.reverts:
        render.show(plan, env)
        return Exit.OK
    if not yes:
        if not env.stdin.isatty():
            raise GenisssError(Exit.USAGE, "migrate down drops data and needs a confirmation",
                               "pass --yes to confirm from a script")
        render.show(plan, env.replace(json=False))  # a person reads it before answering
        question = "Drop these objects?"
        if not render.confirm(env, question):
            render.show(info.Declined(question), env)
            return Exit.INTERRUPTED
    render.show(migrate.downgrade(database, target, lock_timeout), env)
    return Exit.OK


@command(migrate_app, "status")
def migrate_status(*, env) -> int:
    """Current revision, head and what is pending. Exit 0 when up to date,
    1 (a finding) when a migration is pending.

    Example: genisss migrate status --json
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import migrate

    st = migrate.status(db.resolve(env))
    render.show(st, env)
    return Exit.OK if st.up_to_date else Exit.FINDING


@command(migrate_app, "history")
def migrate_history(*, env) -> int:
    """The migrations genisss knows, oldest first (reads no database); with
    --database-url, which one that database is at.

    Example: genisss migrate history
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import migrate

    database = db.resolve(env) if env.database_url is not None else None
    render.show(migrate.history(database), env)
    return Exit.OK


@command(migrate_app, "sql")
def migrate_sql(
    direction: Annotated[str, typer.Argument(help="up or down.")] = "up",
    start: Annotated[
        str | None, typer.Option("--from", help="Start revision (default: base for up, head for down).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="End revision (default: head for up, base for down).")
    ] = None,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    *, env,
) -> int:
    """Print the migrations as SQL, for Supabase's SQL editor or psql (no database needed).

    Same effect as `migrate up`/`down`, revision bookkeeping included.

    Example: genisss migrate sql up > genisss.sql
    """
    from genisss_cli import render
    from genisss_cli.core import migrate

    if direction not in ("up", "down"):
        raise typer.BadParameter("must be up or down", param_hint="DIRECTION")
    render.show(migrate.sql(direction, start, end, lock_timeout), env)
    return Exit.OK
