"""OwnedSession: the session named in the path, if the caller owns it (404 otherwise)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from zyron.auth.deps import CurrentUser
from zyron.db.deps import UserDb
from zyron.db.models import ChatSession
from zyron.errors import NotFound
from zyron.sessions.repository import owned_session


async def _owned_session(session_id: uuid.UUID, principal: CurrentUser, db: UserDb) -> ChatSession:
    chat = await owned_session(db, principal.user_id, session_id)
    if chat is None:
        # 404, not 403: nobody learns that someone else's id exists.
        raise NotFound("No such session.")
    return chat


OwnedSession = Annotated[ChatSession, Depends(_owned_session)]
