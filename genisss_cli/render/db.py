"""Views of `genisss db` and --version."""

from __future__ import annotations

from genisss_cli.conn import db, embedded
from genisss_cli.core import info, psql
from genisss_cli.render.out import emit_json, key_values, print_line, say, to_json, write
from genisss_cli.render.redact import mask_text, reveal_url, show_url
from genisss_cli.render.registry import json_view, text_view


@json_view(db.Database)
def database_json(env, database) -> None:
    emit_json(env, {"url": show_url(database.dsn), "source": database.source,
                    "embedded": database.embedded, "transaction_pooler": database.transaction_pooler})


@text_view(db.Database)
def database_text(env, database) -> None:
    write(env, show_url(database.dsn) + "\n")


# --reveal: written as is, past mask_text, which every other output passes.

@json_view(info.Revealed)
def revealed_json(env, revealed) -> None:
    database = revealed.database
    write(env, to_json({"url": reveal_url(database.dsn), "source": database.source,
                        "embedded": database.embedded,
                        "transaction_pooler": database.transaction_pooler}) + "\n")


@text_view(info.Revealed)
def revealed_text(env, revealed) -> None:
    write(env, reveal_url(revealed.database.dsn) + "\n")


@text_view(psql.PsqlSession)
def psql_text(env, session) -> None:
    """What psql wrote, where genisss's streams are not files; else psql wrote it itself."""
    if session.out:
        write(env, mask_text(session.out))
    if session.err:
        env.stderr.write(mask_text(session.err))
        env.stderr.flush()


@text_view(embedded.EmbeddedStatus)
def embedded_text(env, st) -> None:
    key_values(env, "Embedded PostgreSQL", [
        ("state", "[green]running[/]" if st.running else "[yellow]stopped[/]"),
        ("data", st.pgdata),
        ("version", st.major_version),
        ("pid", st.pid),
        ("url", st.dsn),
    ])


@text_view(embedded.Started)
def started_text(env, started) -> None:
    say(env, f"started the embedded PostgreSQL {started.version} in {started.pgdata} "
             f"({started.seconds:.1f} s)")


@json_view(embedded.Started)
def started_json(env, started) -> None:
    """Nothing: under --json, stderr carries only the one error object a
    program parses, and `db status --json` tells a program about the server."""


@text_view(info.Stopped)
def stopped_text(env, st) -> None:
    print_line(env, "stopped" if st.stopped else "was not running")


@text_view(info.Version)
def version_text(env, v) -> None:
    write(env, f"genisss {v.version}\n")


@text_view(info.Declined)
def declined_text(env, d) -> None:
    print_line(env, "nothing changed", stderr=True)


@json_view(info.Declined)
def declined_json(env, d) -> None:
    emit_json(env, {"declined": d.question, "changed": False}, stderr=True)
