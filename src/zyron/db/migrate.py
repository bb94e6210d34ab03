"""Apply the Alembic migrations that build and upgrade the schema."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None, output: TextIO | None = None) -> Config:
    """Build the Alembic configuration in code, so no alembic.ini has to be found on disk."""
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


# Any constant: replicas starting together take turns instead of racing on alembic_version.
MIGRATION_LOCK_KEY = 0x7A79726F6E  # "zyron"


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
    command.upgrade(alembic_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


def postgres_sql(output: TextIO, revision: str = "head") -> None:
    """Write the Postgres SQL of every migration up to `revision`, without a database."""
    command.upgrade(alembic_config(output=output), revision, sql=True)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database to `revision` (the newest by default)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Downgrade the database to `revision` (`base` removes every table)."""
    async with engine.begin() as conn:
        await conn.run_sync(_downgrade, revision)
