"""`genisss check`: is this database ready for the realtime counter, and is it safe?

- model: CheckResult, Options, Context, Findings (what a check returns);
- structure, security, realtime: the catalog checks, one function a row;
- live: --live, one harmless change watched arriving;
- runner: runs them, each in its own transaction.

docs/check.md explains every row.
"""

__all__ = ["CheckReport", "CheckResult", "Options", "run"]


def __getattr__(name: str):
    """On first use (PEP 562): watch, relay and the error path import only
    `fixes` from here, and must not load every check with it."""
    if name == "run":
        from genisss_cli.core.checks.runner import run

        return run
    if name in __all__:
        from genisss_cli.core.checks import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
