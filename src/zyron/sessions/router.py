"""The /sessions routes: create, list, read, update, delete, and list messages."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from zyron.auth.deps import CurrentUser
from zyron.db.deps import UserDb
from zyron.errors import (
    InvalidInput,
    InvalidToken,
    NotAuthenticated,
    NotFound,
    UnknownModel,
    error_responses,
)
from zyron.files import service as files_service
from zyron.files.deps import AfterCommit
from zyron.llm.deps import Models
from zyron.sessions import branches
from zyron.sessions import repository as repo
from zyron.sessions.deps import OwnedSession
from zyron.sessions.repository import MessageRow
from zyron.sessions.schemas import (
    MessageRead,
    SessionCreate,
    SessionRead,
    SessionUpdate,
    messages_json,
)
from zyron.state import get_state

router = APIRouter(
    prefix="/sessions",
    tags=["sessions"],
    responses=error_responses(NotAuthenticated, InvalidToken),
)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(UnknownModel))
async def create_session(
    body: SessionCreate, principal: CurrentUser, db: UserDb, models: Models
) -> SessionRead:
    """Create an empty chat session; without a title, one is generated after its first reply."""
    models.check(body.model)
    chat = await repo.add_session(
        db,
        principal.user_id,
        title=body.title,
        model=body.model,
        system_prompt=body.system_prompt,
    )
    return SessionRead.model_validate(chat)


@router.get("")
async def list_sessions(
    request: Request,
    principal: CurrentUser,
    db: UserDb,
    limit: Annotated[int, Query(ge=1, description="At most MAX_SESSIONS_PAGE (200).")] = 50,
) -> list[SessionRead]:
    """List the caller's sessions, most recently active first."""
    _page_cap("limit", limit, get_state(request).settings.max_sessions_page)
    sessions = await repo.list_sessions(db, principal.user_id, limit)
    return [SessionRead.model_validate(chat) for chat in sessions]


@router.get("/{session_id}", responses=error_responses(NotFound))
async def get_session(chat: OwnedSession) -> SessionRead:
    """Return one session."""
    return SessionRead.model_validate(chat)


@router.patch("/{session_id}", responses=error_responses(NotFound, UnknownModel))
async def update_session(
    chat: OwnedSession, body: SessionUpdate, db: UserDb, models: Models
) -> SessionRead:
    """Change the title, model or system prompt; fields left out stay as they are."""
    models.check(body.model)
    await repo.update_session(db, chat, body.model_dump(exclude_unset=True))
    return SessionRead.model_validate(chat)


@router.delete(
    "/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(NotFound)
)
async def delete_session(chat: OwnedSession, db: UserDb, work: AfterCommit) -> Response:
    """Delete a session, all its messages, and the files that only its messages used."""
    await files_service.delete_session(db, work, chat)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _page_cap(name: str, value: int, cap: int) -> None:
    """Refuse a page larger than the configured cap, naming it."""
    if value > cap:
        raise InvalidInput(f"{name}: at most {cap}")


@router.get(
    "/{session_id}/messages",
    response_model=list[MessageRead],
    responses=error_responses(NotFound),
)
async def list_messages(
    request: Request,
    chat: OwnedSession,
    db: UserDb,
    limit: Annotated[int, Query(ge=1, description="At most MAX_MESSAGES_PAGE (1000).")] = 100,
    before: Annotated[
        uuid.UUID | None,
        Query(description="A message id: return the messages before it (paging back)."),
    ] = None,
    tree: Annotated[
        bool,
        Query(
            description="true: every message of the session in time order, all branches, "
            "linked by parent_id. false: the active branch only (the path to the newest "
            "message)."
        ),
    ] = False,
) -> Response:
    """List the session's newest messages, oldest first: its active branch, or the whole tree."""
    _page_cap("limit", limit, get_state(request).settings.max_messages_page)
    messages: list[MessageRow] | None
    if tree:
        cutoff = None
        if before is not None:
            anchor = await repo.message_by_id(db, chat.user_id, before)
            if anchor is None or anchor.session_id != chat.id:
                raise NotFound("No such message in this session.")
            cutoff = anchor.created_at
        messages = await repo.list_messages(db, chat.user_id, chat.id, limit=limit, before=cutoff)
    else:
        messages = await branches.active_branch(
            db, chat.user_id, chat.id, limit=limit, before=before
        )
        if messages is None:
            raise NotFound("No such message in this session.")
    # Serialised once, here, from the rows: returned as a model list, FastAPI would validate
    # every message again before encoding it (a third of this endpoint's time for 100).
    return Response(messages_json(messages), media_type="application/json")
