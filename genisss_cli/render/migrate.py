"""Views of `genisss migrate`."""

from __future__ import annotations

import dataclasses

from genisss_cli.core import migrate, repair
from genisss_cli.render.out import emit_json, key_values, print_line, say, table, write
from genisss_cli.render.registry import json_view, text_view


@json_view(migrate.MigrateResult)
def result_json(env, result) -> None:
    emit_json(env, {**dataclasses.asdict(result), "changed": result.changed})


@text_view(migrate.MigrateResult)
def result_text(env, result) -> None:
    verb = "downgraded" if isinstance(result, migrate.Downgraded) else "upgraded"
    for note in result.notices:
        print_line(env, f"[yellow]skipped:[/] {note}")
    if not result.changed:
        print_line(env, f"{result.database}: already at {result.after or 'base'}, nothing to do")
        return
    if result.adopted is not None:
        _adoption_table(env, result.adopted)
    steps = ", ".join(result.applied) or "-"
    print_line(env, f"{result.database}: {verb} {result.before or 'base'} -> {result.after or 'base'} "
               f"[dim](ran: {steps})[/]")


@text_view(migrate.SqlPlan)
def sql_plan_text(env, plan) -> None:
    write(env, plan.sql or f"-- {plan.database}: nothing to apply\n")


@text_view(migrate.Script)
def script_text(env, script) -> None:
    write(env, script.sql)
    for line in script.log:  # -v: on stderr, so that the SQL on stdout stays a script
        say(env, line)


@json_view(migrate.Status)
def status_json(env, st) -> None:
    emit_json(env, {**dataclasses.asdict(st), "up_to_date": st.up_to_date})


@text_view(migrate.Status)
def status_text(env, st) -> None:
    state = "[green]up to date[/]" if st.up_to_date else f"[yellow]{len(st.pending)} pending[/]"
    key_values(env, "Migration status", [
        ("database", st.database),
        ("current", st.current or "none (never migrated by genisss)"),
        ("head", st.head),
        ("pending", ", ".join(st.pending) or "-"),
        ("state", state),
    ])
    if st.adoptable:
        print_line(env, "global_stats exists without a recorded revision (033 applied by hand): "
                   "`genisss migrate up` adopts it and keeps the counter")
    elif not st.up_to_date:
        print_line(env, "run: genisss migrate up")


@json_view(migrate.History)
def history_json(env, h) -> None:
    emit_json(env, [{**dataclasses.asdict(r), "current": r.revision == h.current} for r in h.revisions])
    _unread(env, h)


def _unread(env, h) -> None:
    if h.unread:  # on stderr, so that stdout stays the list
        say(env, f"current revision unknown: {h.unread}")


@text_view(migrate.History)
def history_text(env, h) -> None:
    # Each revises the one above (--json has down_revision): the revision ids
    # stay whole at 80 columns, the description wraps.
    rows = [[r.revision, "*" if r.revision == h.current else "", r.doc.removeprefix(f"{r.revision}: ")]
            for r in h.revisions]
    table(env, "Migrations (oldest first, each revising the one above)", ["revision", "current", "what"],
          rows, whole=("revision",))
    _unread(env, h)


@text_view(migrate.DowngradePlan)
def downgrade_plan_text(env, plan) -> None:
    pairs = [
        ("database", plan.database),
        ("from", plan.current or "base"),
        ("to", plan.target or "base"),
        ("reverts", ", ".join(plan.reverts) or "-"),
    ]
    pairs += [("drops", item) for item in plan.drops]
    pairs += [("loses", f"{name} = {value}") for name, value in (plan.counters or {}).items()]
    pairs.append(("keeps", "user_stories and its rows"))
    key_values(env, "migrate down", pairs)
    if not plan.reverts:
        print_line(env, "nothing to roll back")


def _change_rows(changes) -> list[list[str]]:
    return [[c.kind, c.name, c.change + (f" ({', '.join(c.aspects)})" if c.aspects else "")]
            for c in changes]


def _changes_table(env, title: str, changes) -> None:
    table(env, title, ["object", "name", "change"], _change_rows(changes), whole=("object",),
          words=("name",))


@json_view(repair.Repaired)
def repaired_json(env, result) -> None:
    emit_json(env, {**dataclasses.asdict(result), "changed": result.changed})


@text_view(repair.Repaired)
def repaired_text(env, result) -> None:
    for note in result.notices:
        print_line(env, f"[yellow]skipped:[/] {note}")
    if not result.changes:
        print_line(env, f"{result.database}: nothing to repair (the statements up to {result.revision} "
                   "change nothing here)")
        return
    done = "repaired" if result.applied else "would repair (dry run)"
    _changes_table(env, f"{result.database}: {done} at {result.revision}", result.changes)
    if not result.applied:
        print_line(env, "nothing was changed; run: genisss migrate repair --yes")


@json_view(repair.Stamp)
def stamp_json(env, result) -> None:
    emit_json(env, {**dataclasses.asdict(result), "matches": result.matches})


@text_view(repair.Stamp)
def stamp_text(env, result) -> None:
    if result.differences:
        _changes_table(env, f"{result.database}: {result.target}'s statements would change",
                       result.differences)
    else:
        print_line(env, f"{result.database}: the schema matches {result.target}")
    if result.later:
        its = "its statements" if len(result.later) == 1 else "their statements"
        print_line(env, f"the schema has all of {', '.join(result.later)} too ({its} would change "
                   f"nothing here): genisss migrate stamp {result.later[-1]} records the latest")
    if result.stamped:
        forced = " [yellow](forced: the schema does not match)[/]" if result.forced else ""
        print_line(env, f"{result.database}: recorded {result.target} "
                   f"(was {result.current or 'none'}){forced}")


def _adoption_table(env, a) -> None:
    # In the order it happened: what it found (kept, replaced, removed), then what it added.
    rows = _change_rows([*a.kept, *a.replaced, *a.removed, *a.added])
    removed = f", removed {len(a.removed)}" if a.removed else ""
    table(env, "Adopted a hand-applied schema", ["object", "name", "change"], rows, whole=("object",),
          words=("name",), caption=f"found {len(a.found)} objects: kept {len(a.kept)}, "
                                   f"replaced {len(a.replaced)}{removed}; added {len(a.added)}")
