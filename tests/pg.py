"""A real PostgreSQL server for the tests: a throwaway cluster, or ZYRON_TEST_DATABASE_URL."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from tests.support import free_port
from zyron.db.engine import create_engine
from zyron.db.migrate import downgrade, upgrade

APP_ROLE = "zyron_app"
APP_PASSWORD = "zyron-test-password"


class PostgresUnavailable(Exception):
    """No Postgres server can be had; the message says why (printed as the skip reason)."""


def _find_binaries() -> Path | None:
    """Find the directory holding initdb and pg_ctl: PATH first, then the usual places."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    patterns = [
        "/usr/lib/postgresql/*/bin",
        "/usr/local/pgsql/bin",
        "/usr/pgsql-*/bin",
        "/opt/homebrew/opt/postgresql*/bin",
        "/usr/local/opt/postgresql*/bin",
        "/opt/homebrew/bin",
        "/usr/local/bin",
    ]
    candidates = sorted(
        (Path(p) for pattern in patterns for p in glob.glob(pattern)), reverse=True
    )  # newest version first
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


def _as_cluster_owner() -> tuple[list[str], str | None]:
    """initdb refuses to run as root: then run the cluster as the 'postgres' OS user."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresUnavailable(
            "running as root and no 'postgres' OS user to own a throwaway cluster"
        ) from exc
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root and 'runuser' is not available")
    return [runuser, "-u", "postgres", "--"], "postgres"


@dataclass
class PostgresServer:
    """A Postgres server with a superuser URL; makes one database per test server."""

    admin_dsn: str  # plain libpq form, for asyncpg
    _cluster_dir: Path | None = None
    _prefix: list[str] = field(default_factory=list)
    _bin: Path | None = None
    _databases: list[str] = field(default_factory=list)
    _options: str = ""  # the postgres options of a throwaway cluster, to start it again

    @classmethod
    def start(
        cls, *, url_variable: str = "ZYRON_TEST_DATABASE_URL", durable: bool = False
    ) -> PostgresServer:
        """Use the URL in `url_variable`, else start a throwaway cluster; else PostgresUnavailable.

        A throwaway cluster skips fsync for speed unless `durable` (benchmarks want commits
        to cost what they cost in production).
        """
        url = os.environ.get(url_variable)
        server = cls(admin_dsn=_libpq(url)) if url else cls._throwaway(durable=durable)
        server._prepare_app_role()
        return server

    @classmethod
    def _throwaway(cls, *, durable: bool) -> PostgresServer:
        bin_dir = _find_binaries()
        if bin_dir is None:
            raise PostgresUnavailable(
                "initdb/pg_ctl not found (install PostgreSQL, e.g. apt-get install postgresql, "
                "or set ZYRON_TEST_DATABASE_URL to a superuser URL)"
            )
        prefix, owner = _as_cluster_owner()
        root = Path(tempfile.mkdtemp(prefix="zyron-pg-"))
        data, sockets = root / "data", root / "sock"
        sockets.mkdir()
        if owner:
            shutil.chown(root, owner)
            shutil.chown(sockets, owner)
        port = free_port()
        run = [*prefix]
        subprocess.run(
            [*run, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--no-locale", "--no-sync"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        started = subprocess.run(
            [*run, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w",
             "-l", str(root / "server.log"), "start"],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if started.returncode != 0:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr} {log[-2000:]}")
        return cls(
            admin_dsn=f"postgresql://postgres@127.0.0.1:{port}/postgres",
            _cluster_dir=root,
            _prefix=prefix,
            _bin=bin_dir,
            _options=options,
        )

    def stop(self) -> None:
        """Drop the databases made here; stop and delete a throwaway cluster."""
        if self._cluster_dir is not None and self._bin is not None:
            subprocess.run(
                [*self._prefix, str(self._bin / "pg_ctl"), "-D", str(self._cluster_dir / "data"),
                 "-m", "immediate", "stop"],
                capture_output=True,
            )  # fmt: skip
            shutil.rmtree(self._cluster_dir, ignore_errors=True)
            return
        for name in self._databases:
            self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @property
    def throwaway(self) -> bool:
        """Tell whether this cluster was started here (and so can be paused and unpaused)."""
        return self._cluster_dir is not None

    def _pg_ctl(self, action: str) -> tuple[Path, Path]:
        """Return pg_ctl and the directory of a throwaway cluster, or raise."""
        if self._cluster_dir is None or self._bin is None:
            raise PostgresUnavailable(
                f"cannot {action} a server given by ZYRON_TEST_DATABASE_URL; "
                "only a throwaway cluster can be stopped and started again"
            )
        return self._bin / "pg_ctl", self._cluster_dir

    def pause(self) -> None:
        """Stop the throwaway cluster (fast shutdown), keeping its data; unpause() restarts it."""
        pg_ctl, root = self._pg_ctl("pause")
        stopped = subprocess.run(
            [*self._prefix, str(pg_ctl), "-D", str(root / "data"), "-m", "fast", "-w", "stop"],
            capture_output=True,
            text=True,
        )
        if stopped.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl stop failed: {stopped.stderr}")

    def unpause(self) -> None:
        """Start the paused throwaway cluster again on the same data directory and port."""
        pg_ctl, root = self._pg_ctl("unpause")
        log = root / "server.log"
        started = subprocess.run(
            [*self._prefix, str(pg_ctl), "-D", str(root / "data"), "-o", self._options, "-w",
             "-l", str(log), "start"],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if started.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr} {tail}")

    def execute(self, sql: str, database: str | None = None) -> None:
        """Run statements as the superuser."""

        async def run() -> None:
            conn = await asyncpg.connect(self.dsn(database))
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run())

    def dsn(self, database: str | None = None, *, user: str | None = None) -> str:
        """Return a libpq URL for `database` (default: the admin database) as `user`."""
        base, _, current = self.admin_dsn.rpartition("/")
        if user is not None:
            scheme, _, rest = base.partition("://")
            host = rest.rpartition("@")[2]
            base = f"{scheme}://{user}:{APP_PASSWORD}@{host}"
        return f"{base}/{database or current.split('?')[0]}"

    def create_database(self) -> str:
        """Create an empty database owned by the application's role; return its name."""
        name = f"zyron_test_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}" OWNER {APP_ROLE}')
        self._databases.append(name)
        return name

    def _prepare_app_role(self) -> None:
        # Like a production login role: not a superuser, no BYPASSRLS; CREATEROLE so the
        # migrations can create anon/authenticated/service_role where they do not exist.
        self.execute(
            f"""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} LOGIN CREATEROLE PASSWORD '{APP_PASSWORD}';
              END IF;
            END $$;
            """
        )


def _libpq(url: str) -> str:
    """Turn a SQLAlchemy URL into the plain libpq form asyncpg takes."""
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlalchemy_url(dsn: str) -> str:
    """Turn a libpq URL into the SQLAlchemy asyncpg form."""
    return "postgresql+asyncpg://" + dsn.split("://", 1)[1]


async def migrate(url: str, *steps: str) -> None:
    """Run migration steps in order on `url`: a revision to upgrade to, or "base" to tear down."""
    engine = create_engine(url)
    try:
        for step in steps:
            if step == "base":
                await downgrade(engine, "base")
            else:
                await upgrade(engine, step)
    finally:
        await engine.dispose()
