"""Request transactions: one per request, as the caller, committed before the response is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.auth.deps import CurrentUser
from zyron.db.unit_of_work import unit_of_work
from zyron.state import get_state


async def _user_db(request: Request, principal: CurrentUser) -> AsyncIterator[AsyncSession]:
    sessionmaker = get_state(request).sessionmaker
    async with unit_of_work(sessionmaker, role="authenticated", claims=principal.claims) as db:
        yield db


async def _service_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with unit_of_work(get_state(request).sessionmaker, role="service_role") as db:
        yield db


# scope="function": commit when the route returns, so a failed commit is the response.
UserDb = Annotated[AsyncSession, Depends(_user_db, scope="function")]
"""A transaction as the signed-in user: on Postgres, RLS sees their claims."""

ServiceDb = Annotated[AsyncSession, Depends(_service_db, scope="function")]
"""A transaction for the auth flows that run before anyone is signed in (signup, login)."""
