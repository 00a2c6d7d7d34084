"""genisss broadcast (the broadcast's settings) and genisss relay (its trailing send)."""

from typing import Annotated

import typer

from genisss_cli.cli.app import app
from genisss_cli.cli.options import DEFAULT_LOCK_TIMEOUT, LockTimeoutOpt, command, seconds
from genisss_cli.errors import Exit, GenisssError


def rate_value(value: float | None) -> float | None:
    # Checked before anything runs (also before `migrate up` migrates).
    if value is not None:
        from genisss_cli.core import broadcast

        if broadcast.limit_error(value, False):
            raise typer.BadParameter(broadcast.RATE_RANGE)
    return value


PrivateOpt = Annotated[bool | None, typer.Option(
    "--private/--public", help="Private messages and the policy that lets anon read this topic alone; "
    "or public messages and no policy.")]
RateOpt = Annotated[float | None, typer.Option(
    "--max-per-second", metavar="R", callback=rate_value,
    help="At most R broadcasts a second (before fan-out), the last value always sent.")]
NoLimitOpt = Annotated[bool, typer.Option("--no-limit", help="Broadcast every change (the default).")]


def _settings_given(private, rate, no_limit, options=("--max-per-second", "--no-limit")) -> bool:
    from genisss_cli.core import broadcast

    if error := broadcast.limit_error(rate, no_limit, *options):
        raise error
    return private is not None or rate is not None or no_limit


@command(app, "broadcast")
def broadcast_command(
    private: PrivateOpt = None,
    max_per_second: RateOpt = None,
    no_limit: NoLimitOpt = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; for scripts.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show before and after; change nothing.")
                       ] = False,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    *, env,
) -> int:
    """Show or change how the counter is broadcast (migration 037): a public or
    private channel, and at most R messages a second. Without options, shows.

    A change shows before -> after; it is idempotent, and creates or drops the
    private channel's policy in the same transaction. Switching public/private
    changes which pages receive the counter: it asks, or takes --yes.

    Examples: genisss broadcast, genisss broadcast --private --max-per-second 2 --yes
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import broadcast, info

    database = db.resolve(env)
    if not _settings_given(private, max_per_second, no_limit):
        render.show(broadcast.state(database), env)
        return Exit.OK
    current = broadcast.state(database).settings
    if broadcast.flips_privacy(current, private) and not (yes or dry_run):
        kind = "private" if private else "public"
        if not env.stdin.isatty():
            raise GenisssError(Exit.USAGE, f"switching the broadcast to a {kind} channel changes what "
                               "browsers receive and needs a confirmation",
                               "pass --yes to confirm from a script")
        question = (f"Pages subscribed to the {'public' if private else 'private'} channel will stop "
                    f"receiving the counter. Switch to {kind}?")
        if not render.confirm(env, question):
            render.show(info.Declined(question), env)
            return Exit.INTERRUPTED
    render.show(broadcast.change(database, private=private, rate=max_per_second, no_limit=no_limit,
                                 dry_run=dry_run, lock_timeout=lock_timeout), env)
    return Exit.OK


AT_MIGRATE = ("--broadcast-rate", "--broadcast-no-limit")  # migrate up's names for them


def check_at_migrate(rate, no_limit) -> None:
    """migrate up refuses options that contradict each other before it migrates."""
    _settings_given(None, rate, no_limit, AT_MIGRATE)


def at_migrate(env, database, private, rate, no_limit, dry_run: bool, lock_timeout: float) -> None:
    """`migrate up --broadcast-...`: the settings chosen at migrate time, set after
    the migration (037 makes the row), in their own transaction. Choosing them
    is the operator's deliberate act, as the migration itself: no question."""
    if not _settings_given(private, rate, no_limit, AT_MIGRATE):
        return
    from genisss_cli import render
    from genisss_cli.core import broadcast

    if dry_run:
        render.say(env, "the broadcast settings are set after the migration: not in a dry run")
        return
    render.show(broadcast.change(database, private=private, rate=rate, no_limit=no_limit,
                                 lock_timeout=lock_timeout), env)


@command(app, "relay", json_help="One JSON object a line per event, then the summary.")
def relay_command(
    interval: Annotated[float, typer.Option(
        "--interval", min=0.1, max=1.0, metavar="S", callback=seconds,
        help="Seconds between two flushes: the last value arrives within 1/R + S s.")] = 1.0,
    duration: Annotated[float | None, typer.Option(
        "--for", min=0.1, metavar="S", callback=seconds, help="Stop after S seconds.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Flush once and exit.")] = False,
    *, env,
) -> int:
    """Send what a coalesced broadcast held back: every --interval seconds, the
    current totals if they changed since the last message and 1/R has passed
    (genisss.broadcast_flush()). Needed with --max-per-second where pg_cron
    does not run the flush. Prints each message it sent; Ctrl-C or SIGTERM
    ends it between two flushes, with a summary, exit 0.

    Needs a session (it holds a lock that check looks for): a transaction
    pooler exits 7. Reconnects by itself when the connection drops.

    Examples: genisss relay, genisss relay --json --for 60
    """
    from genisss_cli import render
    from genisss_cli.conn import db
    from genisss_cli.core import relay

    database = db.resolve(env)
    summary = relay.run(database, render.relay_sink(env), interval=interval, duration=duration, once=once)
    render.show(summary, env)
    return Exit.OK
