"""The one place that begins and commits transactions for a request or a background task."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Open a transaction that commits when the block ends and rolls back if it raises."""
    async with sessionmaker() as session, session.begin():
        yield session
