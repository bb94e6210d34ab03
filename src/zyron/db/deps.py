"""The request's database session: one transaction, committed before the response is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.unit_of_work import unit_of_work
from zyron.state import get_state


async def _db_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with unit_of_work(get_state(request).sessionmaker) as session:
        yield session


# scope="function": commit when the route returns, so a commit error is the response.
DbSession = Annotated[AsyncSession, Depends(_db_session, scope="function")]
