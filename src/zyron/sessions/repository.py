"""SQL for chat sessions and messages; every query is filtered by the owner."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.models import ChatSession, Message, Role, Status
from zyron.db.types import utcnow


async def owned_session(
    db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID
) -> ChatSession | None:
    """Return the session if it exists and belongs to `user_id`."""
    result = await db.execute(
        select(ChatSession).where(ChatSession.id == session_id, ChatSession.user_id == user_id)
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
    title: str,
    model: str | None = None,
    system_prompt: str | None = None,
) -> ChatSession:
    """Insert a session."""
    now = utcnow()
    chat = ChatSession(
        user_id=user_id,
        title=title,
        model=model,
        system_prompt=system_prompt,
        created_at=now,
        updated_at=now,
    )
    db.add(chat)
    await db.flush()
    return chat


async def update_session(db: AsyncSession, chat: ChatSession, changes: dict[str, Any]) -> None:
    """Apply changed fields and bump `updated_at`."""
    for name, value in changes.items():
        setattr(chat, name, value)
    chat.updated_at = utcnow()
    await db.flush()


async def delete_session(db: AsyncSession, chat: ChatSession) -> None:
    """Delete a session and its messages."""
    # Explicit, so messages go even where the database does not cascade.
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
) -> list[Message]:
    """Return the newest `limit` messages (older than `before`), oldest first."""
    query = select(Message).where(Message.session_id == session_id, Message.user_id == user_id)
    if before is not None:
        query = query.where(Message.created_at < before)
    result = await db.execute(
        query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    )
    return list(reversed(result.scalars().all()))


async def message_by_id(
    db: AsyncSession, user_id: uuid.UUID, message_id: uuid.UUID
) -> Message | None:
    """Return the message if it belongs to `user_id`."""
    result = await db.execute(
        select(Message).where(Message.id == message_id, Message.user_id == user_id)
    )
    return result.scalar_one_or_none()


async def add_exchange(
    db: AsyncSession,
    chat: ChatSession,
    *,
    text: str,
    model: str,
    parent_id: uuid.UUID | None,
    lease_seconds: float,
) -> tuple[Message, Message]:
    """Insert the user's message and the assistant's placeholder reply (status streaming)."""
    now = utcnow()
    user_message = Message(
        session_id=chat.id,
        user_id=chat.user_id,
        parent_id=parent_id,
        role=Role.USER,
        content=text,
        status=Status.COMPLETE,
        created_at=now,
    )
    db.add(user_message)
    await db.flush()
    reply = Message(
        session_id=chat.id,
        user_id=chat.user_id,
        parent_id=user_message.id,
        role=Role.ASSISTANT,
        content="",
        status=Status.STREAMING,
        model=model,
        # One microsecond later: the reply sorts after its question even on a coarse clock.
        created_at=now + timedelta(microseconds=1),
        # Until the producing task renews it, this says someone is working on the reply.
        lease_expires_at=now + timedelta(seconds=lease_seconds),
    )
    db.add(reply)
    chat.updated_at = now
    await db.flush()
    return user_message, reply
