"""Supabase Realtime's own tenant schema, read at run time from a local mirror of
github.com/supabase/realtime. Nothing of it is in this repository: the project
must not contain Supabase's SQL, so the tests read it where it lies.

Realtime creates a tenant's `realtime` schema with Ecto migrations
(lib/realtime/tenants/repo/migrations/*.ex, run in the order of the list in
lib/realtime/tenants/migrations.ex). tests/ecto_sql.py reads each module's
SQL; this module finds the mirror, orders the migrations as Realtime does, and
loads them into a database. A migration that cannot be read is a ParseError
naming it; one that fails to load, a LoadError naming it.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ecto_sql import PREFIX, ParseError, migration_body, q, statement_sql

__all__ = ["ParseError", "find_mirror", "load", "migrations", "partition_sql", "prepare"]

MIRROR_ENV = "GENISSS_REALTIME_MIRROR"
MIRROR_GLOB = "/work/.mirror/supabase+realtime*"
MIGRATIONS_DIR = "lib/realtime/tenants/repo/migrations"
ORDER_FILE = "lib/realtime/tenants/migrations.ex"


# -- the mirror ------------------------------------------------------------------------------


@dataclass
class Mirror:
    """A bare git directory (read at HEAD) or a checked-out tree."""

    root: Path
    bare: bool
    commit: str

    def read(self, path: str) -> str:
        if self.bare:
            return self._git("show", f"{self.commit}:{path}")
        return (self.root / path).read_text()

    def list(self, folder: str) -> list[str]:
        if self.bare:
            out = self._git("ls-tree", "--name-only", self.commit, f"{folder}/")
            return [line.rsplit("/", 1)[-1] for line in out.splitlines() if line]
        return sorted(p.name for p in (self.root / folder).iterdir())

    def _git(self, *args: str) -> str:
        return subprocess.run(["git", f"--git-dir={self.root}", *args], capture_output=True, text=True,
                              check=True, timeout=60).stdout


def _open(path: Path) -> Mirror | None:
    for candidate, bare in ((path, True), (path / "repo", True), (path / ".git", True), (path, False)):
        if bare and (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
            try:
                commit = subprocess.run(["git", f"--git-dir={candidate}", "rev-parse", "HEAD"],
                                        capture_output=True, text=True, check=True, timeout=30).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                continue
            mirror = Mirror(candidate, True, commit)
        elif not bare and (candidate / MIGRATIONS_DIR).is_dir():
            mirror = Mirror(candidate, False, "(working tree)")
        else:
            continue
        try:
            if mirror.list(MIGRATIONS_DIR):
                return mirror
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def find_mirror() -> tuple[Mirror | None, str]:
    """The mirror, or None and where it was looked for."""
    explicit = os.environ.get(MIRROR_ENV)
    places = [Path(explicit)] if explicit else [Path(p) for p in sorted(glob.glob(MIRROR_GLOB))]
    for place in places:
        mirror = _open(place)
        if mirror:
            return mirror, str(place)
    where = f"{MIRROR_ENV}={explicit}" if explicit else f"{MIRROR_GLOB} (or set {MIRROR_ENV})"
    return None, where


# -- the migrations, in Realtime's order -----------------------------------------------------


@dataclass
class Migration:
    version: int
    module: str
    path: str
    statements: list[str]

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1].removesuffix(".ex")


def _order(mirror: Mirror) -> list[tuple[int, str]]:
    """(version, module) from the @migrations list Realtime runs."""
    try:
        text = mirror.read(ORDER_FILE)
    except (OSError, subprocess.SubprocessError):
        return []
    return [(int(v.replace("_", "")), m)
            for v, m in re.findall(r"\{\s*([0-9_]+)\s*,\s*Migrations\.([A-Za-z0-9_.]+)\s*\}", text)]


def migrations(mirror: Mirror) -> list[Migration]:
    """Every tenant migration's SQL, in the order Realtime runs them. ParseError
    (naming the migration) when one cannot be read, or the two lists disagree."""
    files = [f for f in mirror.list(MIGRATIONS_DIR) if f.endswith(".ex")]
    by_module = {}
    for f in files:
        path = f"{MIGRATIONS_DIR}/{f}"
        src = mirror.read(path)
        m = re.search(r"defmodule\s+Realtime\.Tenants\.Migrations\.([A-Za-z0-9_.]+)\s+do", src)
        if not m:
            raise ParseError(f"{f}: no defmodule Realtime.Tenants.Migrations.*")
        by_module[m.group(1)] = (path, src)
    order = _order(mirror) or sorted((int(f.split("_", 1)[0]), None) for f in files)
    out = []
    for version, module in order:
        if module is None:
            path = next(f"{MIGRATIONS_DIR}/{f}" for f in files if f.startswith(f"{version}_"))
            src = mirror.read(path)
        elif module in by_module:
            path, src = by_module.pop(module)
        else:
            raise ParseError(f"{ORDER_FILE} lists {version} {module}, "
                             f"which no file under {MIGRATIONS_DIR} defines")
        name = path.rsplit("/", 1)[-1]
        try:
            statements = [s for s in map(statement_sql, migration_body(src, name)) if s is not None]
        except ParseError as exc:
            raise ParseError(f"{name}: {exc}") from None
        out.append(Migration(version, module or name, path, statements))
    return out


# -- loading ---------------------------------------------------------------------------------

# What a Supabase project has before Realtime's migrations run, and they refer
# to: the API roles, postgres (the project's owner role) and dashboard_user
# (the last migration revokes from it); the realtime schema itself (created by
# the platform); Ecto's bookkeeping table in it (Ecto.Migrator creates it with
# prefix "realtime"). supabase_realtime_admin the migrations create themselves.
PLATFORM_ROLES = ("postgres", "anon", "authenticated", "service_role", "dashboard_user")
SCHEMA_MIGRATIONS = (f"CREATE TABLE IF NOT EXISTS {q(PREFIX)}.schema_migrations "
                     "(version bigint PRIMARY KEY, inserted_at timestamp(0))")


class LoadError(Exception):
    def __init__(self, migration: Migration, statement: str, error: Exception):
        self.migration, self.statement, self.error = migration, statement, error
        first = " ".join(statement.split())[:120]
        super().__init__(f"{migration.name}: {error.__class__.__name__}: {str(error).strip()} "
                         f"(statement: {first})")


def prepare(conn) -> None:
    """The platform's part, on an autocommit connection as a superuser."""
    import psycopg

    for role in PLATFORM_ROLES:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            try:
                conn.execute(f"CREATE ROLE {q(role)} NOLOGIN")
            except psycopg.errors.DuplicateObject:
                pass  # another session created it meanwhile (the cluster is shared)
    conn.execute(f"CREATE SCHEMA {q(PREFIX)}")
    conn.execute(SCHEMA_MIGRATIONS)


def load(conn, migs: list[Migration]) -> list[str]:
    """Run each migration in its own transaction, as Ecto does, recording its
    version; the names loaded. LoadError on the first that fails."""
    import psycopg

    done = []
    for mig in migs:
        statement = ""
        try:
            with conn.transaction():
                for statement in mig.statements:
                    conn.execute(statement)
                conn.execute(f"INSERT INTO {q(PREFIX)}.schema_migrations VALUES (%s, now())", [mig.version])
        except psycopg.Error as exc:
            raise LoadError(mig, statement, exc) from exc
        done.append(mig.name)
    return done


def partition_sql(day) -> list[str]:
    """A day's partition of realtime.messages as Realtime's application makes
    them (Tenants.create_messages_partitions: UTC days, yesterday to today + 3,
    owned by supabase_realtime_admin). Our own text of what it does."""
    import datetime as dt

    name = f"messages_{day:%Y_%m_%d}"
    return [f"CREATE TABLE IF NOT EXISTS realtime.{name} PARTITION OF realtime.messages "
            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + dt.timedelta(days=1)).isoformat()}')",
            f"ALTER TABLE realtime.{name} OWNER TO supabase_realtime_admin"]
