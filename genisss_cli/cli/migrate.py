"""genisss migrate up|down|status|history|sql|repair|stamp."""

from typing import Annotated

import typer

from genisss_cli.cli.app import migrate_app
from genisss_cli.cli.broadcast import at_migrate, check_at_migrate, rate_value
from genisss_cli.cli.options import DEFAULT_LOCK_TIMEOUT, LockTimeoutOpt, command
from genisss_cli.core.schema import REVISIONS
from genisss_cli.errors import Exit, GenisssError

# Shell completion of TARGET: the revisions this genisss knows (schema.py's
# list, kept equal to Alembic's by a test: completion imports no Alembic).

def complete_up_target(incomplete: str) -> list[str]:
    return [t for t in ("head", *REVISIONS) if t.startswith(incomplete)]


def complete_down_target(incomplete: str) -> list[str]:
    return [t for t in ("-1", "base", *REVISIONS) if t.startswith(incomplete)]


YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; for scripts.")]


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
    """Apply the migrations (the baseline, then 033 up to {head}) up to TARGET. Safe to rerun.

    Adopts a 033 that was pasted into the SQL editor by hand: the counter keeps
    its value, what is missing is added, the revision is recorded.

    Example: genisss migrate up
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import migrate

    check_at_migrate(broadcast_rate, broadcast_no_limit)
    database = db.resolve(env)
    if dry_run:
        render.show(migrate.dry_run_up(database, target, lock_timeout), env)
    else:
        render.show(migrate.upgrade(database, target, lock_timeout), env)
    at_migrate(env, database, broadcast_private, broadcast_rate, broadcast_no_limit, dry_run, lock_timeout)
    return Exit.OK


def relative_target(value: str) -> str:
    """-N reaches TARGET as an argument (see migrate down); any other word
    that starts with a dash is a mistyped option, and is said to be one."""
    if value.startswith("-") and not value[1:].isdigit():
        raise typer.BadParameter(f"{value} is not an option of this command, nor -N, a revision or base")
    return value


# -1, -2 ... as in Alembic: Click would read them as unknown short options,
# so unknown options reach TARGET and relative_target sorts them.
@command(migrate_app, "down", context_settings={"ignore_unknown_options": True})
def migrate_down(
    target: Annotated[
        str, typer.Argument(help="Revision to go down to: -1 (one step), -N, a revision, or base.",
                            autocompletion=complete_down_target, callback=relative_target)
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
    The head is {head}.

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
    """The migrations genisss knows, oldest first, and which one the database
    in use is at (the default database too). Where the default database (no
    -d) cannot be reached the list is still shown, with the reason on stderr.

    Example: genisss migrate history
    """
    from genisss_cli import render
    from genisss_cli.core import migrate

    render.show(migrate.history(env), env)
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
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say on stderr what the script holds.")
    ] = False,
    *, env,
) -> int:
    """Print the migrations as SQL, for Supabase's SQL editor or psql (no database needed).

    Same effect as `migrate up`/`down`, revision bookkeeping included. The up
    script is one transaction that may be run twice (the second run changes
    nothing); it refuses a database at a revision outside --from..--to. The
    down script refuses a database that is not at --from (run twice, the
    second run says so and changes nothing).

    Example: genisss migrate sql up > genisss.sql
    """
    from genisss_cli import render
    from genisss_cli.core import migrate

    if direction not in ("up", "down"):
        raise typer.BadParameter("must be up or down", param_hint="DIRECTION")
    render.show(migrate.sql(direction, start, end, lock_timeout, verbose), env)
    return Exit.OK


@command(migrate_app, "repair")
def migrate_repair(
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Repair; without it, only show what it would do.")
    ] = False,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    *, env,
) -> int:
    """Re-create what the current revision should have and does not: functions,
    triggers, the singleton row, grants, the policy, publication membership,
    035's broadcast trigger once realtime.send() exists. Every counter keeps its
    value; a missing row starts at count(*) of user_stories and 0 audio.

    It runs the migrations' own statements again up to the current revision in
    one transaction under the migrate lock and lists what that changed. Without
    --yes it rolls back: a dry run, exit 1 when something needs repair.

    Example: genisss migrate repair --yes
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import repair

    result = repair.repair(db.resolve(env), apply=yes, lock_timeout=lock_timeout)
    render.show(result, env)
    return Exit.FINDING if result.changed and not result.applied else Exit.OK


@command(migrate_app, "stamp")
def migrate_stamp(
    target: Annotated[str, typer.Argument(help="Revision to record (or head).",
                                          autocompletion=complete_up_target)],
    yes: YesOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Record it even where the schema does not match.")
    ] = False,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    *, env,
) -> int:
    """Record TARGET in alembic_version without running it, once the schema
    matches it: TARGET's statements, run in a transaction that is rolled back,
    must change nothing. Otherwise it lists the differences and records
    nothing (exit 5); --force records it anyway. Asks first; --yes for scripts.

    Example: genisss migrate stamp {head} --yes
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import info, repair

    database = db.resolve(env)
    plan = repair.stamp(database, target, write=False, force=force, lock_timeout=lock_timeout)
    if not plan.matches and not force:
        render.show(plan, env)
        raise repair.mismatch(plan)
    if not yes:
        if not env.stdin.isatty():
            raise GenisssError(Exit.USAGE, "migrate stamp rewrites alembic_version and needs a confirmation",
                               "pass --yes to confirm from a script")
        render.show(plan, env.replace(json=False))
        question = f"Record {plan.target} as the database's revision?"
        if not render.confirm(env, question):
            render.show(info.Declined(question), env)
            return Exit.INTERRUPTED
    result = repair.stamp(database, target, write=True, force=force, lock_timeout=lock_timeout)
    if not result.stamped:  # the schema changed between the two looks
        render.show(result, env)
        raise repair.mismatch(result)
    render.show(result, env)
    return Exit.OK
