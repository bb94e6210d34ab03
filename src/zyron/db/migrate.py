"""Apply the Alembic migrations that build and upgrade the schema."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from zyron.db.engine import uses_transaction_pooler

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None, output: TextIO | None = None) -> Config:
    """Build the Alembic configuration in code, so no alembic.ini has to be found on disk."""
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


# Any constant: replicas starting together take turns instead of racing on alembic_version.
MIGRATION_LOCK_KEY = 0x7A79726F6E  # "zyron"


# How often a replica waiting for another's migrations asks again for the lock.
LOCK_POLL_SECONDS = 0.5


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Behind a transaction pooler nothing outlives a transaction: the migrations run in
        # one, under a lock that ends with it, and build their indexes plainly (docs/search.md).
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        connection.exec_driver_sql(NO_STATEMENT_TIMEOUT_IN_TRANSACTION)
    config = alembic_config(connection)
    config.attributes["one_transaction"] = True
    command.upgrade(config, revision)


def _upgrade_postgres(connection: Connection, revision: str) -> None:
    # A session lock, held across the commits of the migrations: each runs in a transaction
    # of its own, and some leave it for statements no transaction may hold (a CONCURRENTLY
    # index, a backfill in batches that each commit).
    take_session_lock(connection, MIGRATION_LOCK_KEY)
    try:
        connection.exec_driver_sql(NO_STATEMENT_TIMEOUT)
        connection.commit()
        command.upgrade(alembic_config(connection), revision)
    finally:
        release_session_lock(connection, MIGRATION_LOCK_KEY)


# The app's statement timeout (DB_STATEMENT_TIMEOUT_SECONDS) guards requests; a migration's
# backfill or index build on a large table takes longer, and cut short would fail every start.
NO_STATEMENT_TIMEOUT = "SET statement_timeout = 0"
NO_STATEMENT_TIMEOUT_IN_TRANSACTION = "SET LOCAL statement_timeout = 0"


def release_session_lock(connection: Connection, key: int) -> None:
    """End what a session lock's holder set up: its transaction, timeout, then the lock."""
    if connection.in_transaction():
        connection.rollback()  # what failed, not the unlock, is what is raised
    connection.exec_driver_sql("RESET statement_timeout")
    connection.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
    connection.commit()


def take_session_lock(connection: Connection, key: int) -> None:
    """Take a session-level advisory lock, asking again until it is free.

    Not `pg_advisory_lock`: a statement blocked on it holds a snapshot, and CREATE INDEX
    CONCURRENTLY in the lock holder's migration waits for every older snapshot to end, so
    the two would deadlock. Between tries this connection holds no snapshot at all.
    """
    while True:
        taken = connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar()
        connection.commit()
        if taken:
            return
        time.sleep(LOCK_POLL_SECONDS)


def _downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


def postgres_sql(output: TextIO, revision: str = "head") -> None:
    """Write the Postgres SQL of every migration up to `revision`, without a database."""
    command.upgrade(alembic_config(output=output), revision, sql=True)


async def upgrade(
    engine: AsyncEngine, revision: str = "head", *, transaction_pooler: bool | None = None
) -> None:
    """Upgrade the database to `revision` (the newest by default).

    `transaction_pooler`: DB_TRANSACTION_POOLER (None: decided by the port, as the engine is).
    """
    pooled = uses_transaction_pooler(engine.url, transaction_pooler)
    if engine.dialect.name == "postgresql" and not pooled:
        async with engine.connect() as conn:
            await conn.run_sync(_upgrade_postgres, revision)
        return
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Downgrade the database to `revision` (`base` removes every table)."""
    async with engine.begin() as conn:
        await conn.run_sync(_downgrade, revision)
