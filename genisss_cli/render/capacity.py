"""The view of `genisss capacity`; its JSON is the result's fields."""

from __future__ import annotations

from genisss_cli.core import capacity
from genisss_cli.render.out import key_values, print_line, table
from genisss_cli.render.registry import text_view

LABELS = {
    capacity.POSTGRES_CHANGES: "Postgres Changes",
    capacity.BROADCAST: "Broadcast",
    capacity.COALESCED: "Broadcast coalesced",
}


def _n(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _yes(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


@text_view(capacity.Capacity)
def capacity_text(env, c) -> None:
    p = c.plan
    if c.measured:
        m = c.measured
        source = (f"measured on {m.database}: {m.updates} UPDATEs in {m.window_seconds:g} s "
                  f"(the counter moved by {m.increments})")
    else:
        source = "given (--writes-per-second)"
    key_values(env, "Realtime capacity", [
        ("plan", f"{p.name}: {p.connections:,} connections, {p.messages_per_second:,} messages/s"),
        ("viewers", f"{c.viewers:,}"),
        ("writes", f"{_n(c.writes_per_second)}/s, {source}"),
    ])
    rows = []
    for load in c.paths:
        label = LABELS[load.path]
        if load.path == capacity.COALESCED:
            label += f" at {_n(c.rate)}/s"
        if load.path == c.chosen:
            label = f"[bold]{label}[/]"
        messages = f"{_n(load.messages_per_second)} of {p.messages_per_second:,}"
        connections = f"{c.viewers:,} of {p.connections:,}"
        rows.append([label, _n(load.sends_per_second),
                     messages if load.messages_fit else f"[red]{messages}[/]",
                     connections if load.connections_fit else f"[red]{connections}[/]", _yes(load.fits)])
    coalesce = f"; to coalesce: genisss broadcast --max-per-second {_n(c.rate)}" if c.rate is not None else ""
    table(env, None, ["path", "sends/s", "messages/s", "connections", "fits"], rows,
          caption="messages/s = sends/s x viewers" + coalesce)
    print_line(env, f"largest rate that fits: floor({p.messages_per_second:,} / {c.viewers:,}) = "
               f"{c.largest_rate} broadcast(s)/s"
               + ("" if c.largest_rate else ": less than one message a second per viewer already exceeds it"))
    if c.viewers > p.connections:
        print_line(env, f"[red]{c.viewers:,} viewers exceed the plan's {p.connections:,} connections[/]: "
                   "no path fits")
    print_line(env, f"{LABELS[c.chosen]}: {'[green]fits[/]' if c.fits else '[red]does not fit[/]'}")
