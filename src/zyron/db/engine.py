"""Create the async engine for SQLite or Postgres, with the right connection settings."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from zyron.settings import ConfigError, Settings

SUPABASE_TRANSACTION_POOLER_PORT = 6543


def normalize_url(url: str) -> str:
    """Map the URL schemes people paste (postgres://, postgresql://, sqlite://) to async drivers."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling sends no BEGIN before a SAVEPOINT, so releasing
    # a savepoint would commit the whole transaction; we send BEGIN ourselves (see _begin).
    dbapi_connection.isolation_level = None
    # WAL lets readers run while a reply is written; foreign keys make deletes cascade.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front: a transaction that reads and then writes can
    # then never fail with SQLITE_BUSY halfway; busy_timeout makes others wait for it.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def uses_transaction_pooler(url: URL, setting: bool | None) -> bool:
    """Tell whether connections go through a transaction-mode pooler (explicit, or port 6543)."""
    if setting is not None:
        return setting
    return url.port == SUPABASE_TRANSACTION_POOLER_PORT


def create_engine(url: str, settings: Settings | None = None) -> AsyncEngine:
    """Create the engine; for SQLite make the file's directory and turn on WAL and foreign keys."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.get_driver_name() != "aiosqlite":
            raise ConfigError("DATABASE_URL: use sqlite+aiosqlite:///path/to/file.db for SQLite")
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, hide_parameters=True, json_deserializer=orjson.loads)
        event.listen(engine.sync_engine, "connect", _enable_sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _begin_immediate)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return _postgres_engine(parsed, settings or Settings(_env_file=None))
    raise ConfigError(
        f"DATABASE_URL: unsupported database {parsed.get_backend_name()!r}; "
        "use sqlite+aiosqlite:///... or postgresql+asyncpg://..."
    )


def _postgres_engine(url: URL, settings: Settings) -> AsyncEngine:
    """Create a pooled asyncpg engine, ready for a transaction-mode pooler when one is used."""
    if url.get_driver_name() != "asyncpg":
        raise ConfigError("DATABASE_URL: use postgresql+asyncpg:// (or postgres://) for Postgres")
    query = dict(url.query)
    # libpq's sslmode (in URLs copied from dashboards) is asyncpg's `ssl`.
    if "sslmode" in query:
        query["ssl"] = query.pop("sslmode")
    statement_timeout_ms = int(settings.db_statement_timeout_seconds * 1000)
    connect_args: dict[str, Any] = {
        "timeout": settings.db_connect_timeout_seconds,
        "server_settings": {
            "application_name": "zyron",
            "statement_timeout": str(statement_timeout_ms),
        },
    }
    if uses_transaction_pooler(url, settings.db_transaction_pooler):
        # A pooler in transaction mode may run each statement on another server connection:
        # no named prepared statements may be cached or reused, and startup parameters other
        # than application_name may be refused. The pooler is the pool (SQLAlchemy's advice
        # for asyncpg behind PgBouncer), so connections are not kept here.
        query["prepared_statement_cache_size"] = "0"
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = lambda: f"__zyron_{uuid.uuid4().hex}__"
        connect_args["server_settings"] = {"application_name": "zyron"}
        return create_async_engine(
            url.set(query=query),
            poolclass=NullPool,
            json_deserializer=orjson.loads,
            connect_args=connect_args,
            hide_parameters=True,
        )
    return create_async_engine(
        url.set(query=query),
        # JSON columns (parts, usage) are read on every message page: orjson reads them in
        # a fraction of json.loads' time. Writes keep json.dumps.
        json_deserializer=orjson.loads,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=settings.db_pool_recycle_seconds,
        pool_pre_ping=True,
        connect_args=connect_args,
        # Parameters are user data (messages, emails, hashes): keep them out of error logs.
        hide_parameters=True,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Create the session factory; objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
