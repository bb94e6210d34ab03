"""OwnedShare for the owner's routes; ShareDb and HeldShare for whoever holds a link's token."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.auth.deps import CurrentUser
from zyron.db.deps import UserDb
from zyron.db.models import Share
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import NotFound
from zyron.shares import repository as repo
from zyron.shares import service
from zyron.shares.repository import HeldShare
from zyron.state import get_state


async def _owned_share(share_id: uuid.UUID, principal: CurrentUser, db: UserDb) -> Share:
    found = await repo.owned_share(db, principal.user_id, share_id)
    if found is None:
        # 404, not 403: nobody learns that someone else's id exists.
        raise NotFound("No such share.")
    return found


OwnedShare = Annotated[Share, Depends(_owned_share)]
"""The share named in the path, if the caller owns it (404 otherwise)."""


async def _share_db(request: Request, token: str) -> AsyncIterator[AsyncSession]:
    if not service.well_formed(token):
        raise NotFound(service.NO_SUCH_LINK)
    # As anon, holding the token's hash: on Postgres the policies, not this code, decide
    # that only this share and its files are readable.
    async with unit_of_work(
        get_state(request).sessionmaker,
        role="anon",
        local_settings={service.HELD_SHARE_SETTING: service.token_hash(token)},
    ) as db:
        yield db


ShareDb = Annotated[AsyncSession, Depends(_share_db, scope="function")]
"""A read-only transaction as the anonymous holder of the token in the path."""


async def _held_share(token: str, db: ShareDb) -> HeldShare:
    return await service.held_share(db, token)


SharedLink = Annotated[HeldShare, Depends(_held_share)]
"""The share the token in the path opens (404, the same for every reason, otherwise)."""
