"""The Typer app and its groups; the command modules register on them."""

import typer

app = typer.Typer(
    name="genisss",
    help="Operate the Genisss realtime story counter on PostgreSQL and Supabase.\n\n"
    "The database comes from --database-url, GENISSS_DATABASE_URL, DATABASE_URL, "
    "./.env, or else the embedded PostgreSQL (started on demand).\n\n"
    "Example: genisss migrate up && genisss check",
    no_args_is_help=True,
    # Plain (click) help: Typer's Rich help imports markdown and syntax
    # highlighting on every --help, which it never uses.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,  # a traceback could show a DSN; errors are one line
    context_settings={"help_option_names": ["-h", "--help"]},
)
migrate_app = typer.Typer(help="Apply, roll back and inspect the migrations (Alembic).\n\n"
                          "Example: genisss migrate status",
                          no_args_is_help=True)
db_app = typer.Typer(help="The database in use, and the embedded server's lifecycle.\n\n"
                     "Example: genisss db url",
                     no_args_is_help=True)
app.add_typer(migrate_app, name="migrate")
app.add_typer(db_app, name="db")
