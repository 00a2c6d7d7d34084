"""`genisss check`: is this database ready for the realtime counter, and is it safe?

- model: CheckResult, Options, Context, Findings (what a check returns);
- structure, security, realtime: the catalog checks, one function a row;
- live: --live, one harmless change watched arriving;
- runner: runs them, each in its own transaction.

docs/check.md explains every row.
"""

from genisss_cli.core.checks.model import CheckReport, CheckResult, Options
from genisss_cli.core.checks.runner import run

__all__ = ["CheckReport", "CheckResult", "Options", "run"]
