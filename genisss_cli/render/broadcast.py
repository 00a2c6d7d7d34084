"""Views of `genisss broadcast` and `genisss relay`; the JSON is the results' fields."""

from __future__ import annotations

import dataclasses

from genisss_cli.core import broadcast, relay, schema
from genisss_cli.core.checks import fixes
from genisss_cli.render.out import emit_json, key_values, print_line
from genisss_cli.render.registry import json_view, text_view


def _n(rate: float) -> str:
    return f"{rate:g}"


def channel(s: broadcast.Settings) -> str:
    if not s.private:
        return "public"
    return "private" + ("" if s.policy else " (no policy yet)")


def rate(s: broadcast.Settings) -> str:
    return "every change" if s.max_per_second is None else f"at most {_n(s.max_per_second)} a second"


def trailing(s: broadcast.Settings) -> str:
    """Who sends what the limit held back."""
    if s.max_per_second is None:
        return "not needed (every change is sent)"
    senders = ([f"pg_cron job {schema.CRON_JOB}"] if s.cron_job else []) + [
        f"genisss relay (pid {pid})" for pid in s.relays]
    return ", ".join(senders) or ("[red]none[/]: the last value of a burst waits for the next change; "
                                  "run genisss relay")


def _warnings(env, s: broadcast.Settings) -> None:
    if not s.realtime:
        print_line(env, "[yellow]note:[/] no realtime.send() here: nothing is broadcast until Realtime "
                   f"exists and {fixes.REPAIR} installs it (docs/realtime.md); the settings apply then")
    elif s.private and not s.policy:
        print_line(env, f"[yellow]note:[/] private, but policy {schema.BROADCAST_POLICY} is missing "
                   f"on {schema.REALTIME_MESSAGES}: SELECT {schema.BROADCAST_APPLY}();")


@text_view(broadcast.BroadcastState)
def state_text(env, st) -> None:
    s = st.settings
    key_values(env, f"Broadcast of {st.database}", [
        ("topic", f"{schema.BROADCAST_TOPIC}, event {schema.BROADCAST_EVENT}"),
        ("channel", channel(s)),
        ("rate", rate(s)),
        ("trailing send", trailing(s)),
        ("last sent", s.last_sent_at.isoformat() if s.last_sent_at else "-"),
    ])
    _warnings(env, s)


@json_view(broadcast.BroadcastChange)
def change_json(env, ch) -> None:
    emit_json(env, {**dataclasses.asdict(ch), "changed": ch.changed})


@text_view(broadcast.BroadcastChange)
def change_text(env, ch) -> None:
    b, a = ch.before, ch.after
    for note in ch.notices:
        print_line(env, f"[yellow]note:[/] {note}")
    verb = "would change" if ch.dry_run else "changed"
    if not ch.changed:
        print_line(env, f"{ch.database}: broadcast already {channel(a)}, {rate(a)}: nothing to change")
    else:
        parts = []
        if b.private != a.private:
            parts.append(f"channel {channel(b)} -> {channel(a)}")
        if b.max_per_second != a.max_per_second:
            parts.append(f"rate {rate(b)} -> {rate(a)}")
        print_line(env, f"{ch.database}: broadcast {verb}: {'; '.join(parts)}")
    if not ch.dry_run:
        if a.max_per_second is not None:
            print_line(env, f"trailing send: {trailing(a)}")
        _warnings(env, a)


# -- relay -----------------------------------------------------------------------------------


def relay_sink(env):
    """The relay's events as lines: JSON with --json, else text."""

    def show(event) -> None:
        if env.json:
            emit_json(env, {"event": EVENTS[type(event)], **dataclasses.asdict(event)})
        else:
            TEXTS[type(event)](env, event)

    return show


def _started(env, ev: relay.RelayStarted) -> None:
    limit = (f"at most {_n(ev.max_per_second)} a second" if ev.max_per_second is not None
             else "no limit set: every change is sent by the trigger, nothing to flush until one is")
    also = "; pg_cron flushes too" if ev.cron_job else ""
    kind = "private" if ev.private else "public"
    print_line(env, f"relaying for {ev.database} (session pid {ev.pid}): {kind}, "
               f"{limit}; a flush every {_n(ev.interval)} s{also} (Ctrl-C to stop)")


def _sent(env, ev: relay.RelaySent) -> None:
    totals = f"total_stories {ev.total_stories}, total_audio_generations {ev.total_audio_generations}"
    if ev.warning:
        print_line(env, f"{ev.at} [red]lost[/] {totals}: realtime.send() warned: {ev.warning}")
    else:
        print_line(env, f"{ev.at} sent {totals}")


def _lost(env, ev: relay.RelayLost) -> None:
    print_line(env, f"[yellow]flush failed[/] ({ev.error}); retrying in {_n(ev.retry_in)} s", stderr=True)


EVENTS = {relay.RelayStarted: "started", relay.RelaySent: "sent", relay.RelayLost: "retrying"}
TEXTS = {relay.RelayStarted: _started, relay.RelaySent: _sent, relay.RelayLost: _lost}


@json_view(relay.RelaySummary)
def summary_json(env, s) -> None:
    emit_json(env, {"event": "stopped", **dataclasses.asdict(s)})


@text_view(relay.RelaySummary)
def summary_text(env, s) -> None:
    lost = f", {s.lost} lost (realtime.send() warned)" if s.lost else ""
    print_line(env, f"relay stopped ({s.reason}) after {s.seconds:.1f} s: {s.flushes} flushes, "
               f"{s.sent} sent{lost}")
