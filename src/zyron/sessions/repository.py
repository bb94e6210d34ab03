"""SQL for chat sessions and messages; every query is filtered by the owner."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Row, Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.models import ChatSession, Message, MessageFile, Role, Status
from zyron.db.types import utcnow

# The title of a session created without one, until a title is generated for it.
DEFAULT_TITLE = "New chat"


class TurnRow(Protocol):
    """What a prompt needs of a stored message: a Message, or a row of those columns."""

    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def parts(self) -> list[dict[str, Any]]: ...
    @property
    def status(self) -> str: ...


class MessageRow(TurnRow, Protocol):
    """A message as GET /sessions/{id}/messages reads it: a Message, or a row of its columns."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def session_id(self) -> uuid.UUID: ...
    @property
    def parent_id(self) -> uuid.UUID | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def stop_reason(self) -> str | None: ...
    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def cache_creation_input_tokens(self) -> int | None: ...
    @property
    def cache_read_input_tokens(self) -> int | None: ...
    @property
    def reasoning_tokens(self) -> int | None: ...
    @property
    def cost_nanousd(self) -> int | None: ...
    @property
    def created_at(self) -> datetime: ...


# The columns of MessageRow.
MESSAGE_COLUMNS = (
    Message.id,
    Message.session_id,
    Message.parent_id,
    Message.role,
    Message.content,
    Message.parts,
    Message.status,
    Message.model,
    Message.stop_reason,
    Message.input_tokens,
    Message.output_tokens,
    Message.cache_creation_input_tokens,
    Message.cache_read_input_tokens,
    Message.reasoning_tokens,
    Message.cost_nanousd,
    Message.created_at,
)


async def owned_session(
    db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID
) -> ChatSession | None:
    """Return the session if it exists and belongs to `user_id`."""
    result = await db.execute(
        select(ChatSession).where(ChatSession.id == session_id, ChatSession.user_id == user_id)
    )
    return result.scalar_one_or_none()


async def touch_owned_session(
    db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime
) -> ChatSession | None:
    """Mark the user's session active now and return it; None if it is not theirs.

    One round trip instead of a SELECT and, at flush, an UPDATE: this is on the path of
    every message sent, before the model is called.
    """
    result = await db.execute(
        update(ChatSession)
        .where(ChatSession.id == session_id, ChatSession.user_id == user_id)
        .values(updated_at=now)
        .returning(ChatSession),
        execution_options={"synchronize_session": False},
    )
    return result.scalar_one_or_none()


async def list_sessions(db: AsyncSession, user_id: uuid.UUID, limit: int) -> Sequence[ChatSession]:
    """Return the user's sessions, most recently active first."""
    result = await db.execute(
        select(ChatSession)
        .where(ChatSession.user_id == user_id)
        .order_by(ChatSession.updated_at.desc(), ChatSession.id.desc())
        .limit(limit)
    )
    return result.scalars().all()


async def add_session(
    db: AsyncSession,
    user_id: uuid.UUID,
    *,
    title: str | None,
    model: str | None = None,
    system_prompt: str | None = None,
    now: datetime | None = None,
    client_id: str | None = None,
) -> ChatSession:
    """Insert a session; without a title, it is "New chat" until one is generated."""
    now = now or utcnow()
    chat = ChatSession(
        user_id=user_id,
        title=title or DEFAULT_TITLE,
        title_pending=title is None,
        model=model,
        system_prompt=system_prompt,
        created_at=now,
        updated_at=now,
        client_id=client_id,
    )
    db.add(chat)
    await db.flush()
    return chat


async def update_session(db: AsyncSession, chat: ChatSession, changes: dict[str, Any]) -> None:
    """Apply changed fields and bump `updated_at`; a title given ends the wait for one."""
    for name, value in changes.items():
        setattr(chat, name, value)
    if "title" in changes:
        chat.title_pending = False
    chat.updated_at = utcnow()
    await db.flush()


async def set_generated_title(
    db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID, title: str
) -> bool:
    """Replace the placeholder title; False if the session is gone or was titled meanwhile."""
    result = await db.execute(
        update(ChatSession)
        .where(
            ChatSession.id == session_id,
            ChatSession.user_id == user_id,
            # A title set by PATCH while this one was being made wins.
            ChatSession.title_pending,
        )
        .values(title=title, title_pending=False),
        execution_options={"synchronize_session": False},
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def delete_session(db: AsyncSession, chat: ChatSession) -> None:
    """Delete a session, its messages and their file links (zyron.files.service deletes files)."""
    # The session row first, as a message sent to it takes it first (touch_owned_session):
    # taking the messages first would deadlock with a reply being added below one of them.
    await db.execute(
        select(ChatSession.id)
        .where(ChatSession.id == chat.id, ChatSession.user_id == chat.user_id)
        .with_for_update()
    )
    # Explicit, so messages and their file links go even where the database does not cascade.
    await db.execute(
        delete(MessageFile).where(
            MessageFile.user_id == chat.user_id,
            MessageFile.message_id.in_(
                select(Message.id).where(
                    Message.session_id == chat.id, Message.user_id == chat.user_id
                )
            ),
        )
    )
    await db.execute(
        delete(Message).where(Message.session_id == chat.id, Message.user_id == chat.user_id)
    )
    await db.delete(chat)
    await db.flush()


async def list_messages(
    db: AsyncSession,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    *,
    limit: int,
    before: datetime | None = None,
) -> list[MessageRow]:
    """Return the newest `limit` messages (older than `before`), oldest first.

    Rows of the columns the API shows, not ORM objects: for a page of 100, building and
    tracking instances cost more than the query (docs/benchmarks.md).
    """
    query = select(*MESSAGE_COLUMNS).where(
        Message.session_id == session_id, Message.user_id == user_id
    )
    if before is not None:
        query = query.where(Message.created_at < before)
    result = await db.execute(
        query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    )
    rows: Sequence[MessageRow] = result.all()
    return list(reversed(rows))


async def history_turns(
    db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID, *, limit: int
) -> Sequence[Row[uuid.UUID, str, str, str]]:
    """Return the newest `limit` turns (id, role, content, status), oldest first.

    Plain rows, not ORM objects: building hundreds of Message instances to send their text
    to the model cost more than the query itself.
    """
    result = await db.execute(
        select(Message.id, Message.role, Message.content, Message.status)
        .where(Message.session_id == session_id, Message.user_id == user_id)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
    )
    return list(reversed(result.all()))


async def message_by_id(
    db: AsyncSession, user_id: uuid.UUID, message_id: uuid.UUID
) -> Message | None:
    """Return the message if it belongs to `user_id`."""
    result = await db.execute(
        select(Message).where(Message.id == message_id, Message.user_id == user_id)
    )
    return result.scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class Exchange:
    """The ids of a message and its placeholder reply, as inserted."""

    user_message_id: uuid.UUID
    reply_id: uuid.UUID
    reply_created_at: datetime


async def add_exchange(
    db: AsyncSession,
    chat: ChatSession,
    *,
    text: str,
    parts: list[dict[str, Any]],
    model: str,
    parent_id: uuid.UUID | None,
    lease_seconds: float,
    now: datetime,
    client_id: str | None = None,
) -> Exchange:
    """Insert the user's message and the assistant's placeholder reply (status streaming).

    One INSERT of both rows, without ORM objects: this runs before every first token. The
    caller has marked the session active at `now` (touch_owned_session, add_session).
    """
    exchange = Exchange(
        user_message_id=uuid.uuid4(),
        reply_id=uuid.uuid4(),
        # One microsecond later: the reply sorts after its question even on a coarse clock.
        reply_created_at=now + timedelta(microseconds=1),
    )
    common: dict[str, Any] = {"session_id": chat.id, "user_id": chat.user_id}
    rows: list[dict[str, Any]] = [
        {
            **common,
            "id": exchange.user_message_id,
            "parent_id": parent_id,
            "role": Role.USER,
            "content": text,
            "parts": parts,
            "status": Status.COMPLETE,
            "model": None,
            "created_at": now,
            "lease_expires_at": None,
            "client_id": client_id,
        },
        {
            **common,
            "id": exchange.reply_id,
            # Checked at the statement's end, so the reply may point at the row before it.
            "parent_id": exchange.user_message_id,
            "role": Role.ASSISTANT,
            "content": "",
            "parts": [],
            "status": Status.STREAMING,
            "model": model,
            "created_at": exchange.reply_created_at,
            # Until the producing task renews it, this says someone is working on the reply.
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "client_id": None,
        },
    ]
    await db.execute(insert(cast(Table, Message.__table__)), rows)
    return exchange


async def add_reply(
    db: AsyncSession,
    chat: ChatSession,
    *,
    parent_id: uuid.UUID,
    model: str,
    lease_seconds: float,
    now: datetime,
) -> Exchange:
    """Insert a placeholder reply to an existing user message (a regeneration: a sibling)."""
    exchange = Exchange(user_message_id=parent_id, reply_id=uuid.uuid4(), reply_created_at=now)
    await db.execute(
        insert(cast(Table, Message.__table__)),
        [
            {
                "id": exchange.reply_id,
                "session_id": chat.id,
                "user_id": chat.user_id,
                "parent_id": parent_id,
                "role": Role.ASSISTANT,
                "content": "",
                "parts": [],
                "status": Status.STREAMING,
                "model": model,
                "created_at": now,
                "lease_expires_at": now + timedelta(seconds=lease_seconds),
            }
        ],
    )
    return exchange
