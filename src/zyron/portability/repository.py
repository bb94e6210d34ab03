"""SQL of exports and imports: every query is filtered by the owner."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any, cast

from sqlalchemy import Row, Table, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.models import ChatSession, File, Message, MessageFile, UsageDaily
from zyron.errors import ImportConflict
from zyron.sessions.repository import MESSAGE_COLUMNS

# What an export writes of a message: what the API shows, and the client's id.
EXPORT_COLUMNS = (*MESSAGE_COLUMNS, Message.client_id)
# Rows per INSERT: a large import is many bounded statements, not one giant one.
INSERT_BATCH = 1000
# The unique index of a session's client_id (the import's key), as each database names it.
SESSION_KEY_INDEX = "ix_chat_sessions_user_id_client_id"
_SQLITE_SESSION_KEY = "UNIQUE constraint failed: chat_sessions.user_id, chat_sessions.client_id"


async def sessions_of(db: AsyncSession, user_id: uuid.UUID) -> Sequence[ChatSession]:
    """Return every session of the user, oldest first."""
    result = await db.execute(
        select(ChatSession)
        .where(ChatSession.user_id == user_id)
        .order_by(ChatSession.created_at, ChatSession.id)
    )
    return result.scalars().all()


async def messages_of(
    db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID
) -> Sequence[Row[Any]]:
    """Return every message of the session, all branches, oldest first."""
    result = await db.execute(
        select(*EXPORT_COLUMNS)
        .where(Message.session_id == session_id, Message.user_id == user_id)
        .order_by(Message.created_at, Message.id)
    )
    return result.all()


async def files_of(db: AsyncSession, user_id: uuid.UUID) -> Sequence[File]:
    """Return every file of the user, oldest first."""
    result = await db.execute(
        select(File).where(File.user_id == user_id).order_by(File.created_at, File.id)
    )
    return result.scalars().all()


async def session_files(db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID) -> list[File]:
    """Return the files the session's messages link, oldest first."""
    linked = (
        select(MessageFile.file_id)
        .join(Message, Message.id == MessageFile.message_id)
        .where(
            Message.session_id == session_id,
            Message.user_id == user_id,
            MessageFile.user_id == user_id,
        )
    )
    result = await db.execute(
        select(File)
        .where(File.user_id == user_id, File.id.in_(linked))
        .order_by(File.created_at, File.id)
    )
    return list(result.scalars())


async def usage_of(db: AsyncSession, user_id: uuid.UUID) -> Sequence[UsageDaily]:
    """Return the user's daily usage rows, oldest first."""
    result = await db.execute(
        select(UsageDaily)
        .where(UsageDaily.user_id == user_id)
        .order_by(UsageDaily.day, UsageDaily.model)
    )
    return result.scalars().all()


async def taken_keys(db: AsyncSession, user_id: uuid.UUID, keys: Collection[str]) -> set[str]:
    """Return those of `keys` that are already the client_id of one of the user's sessions."""
    found: set[str] = set()
    batch = list(keys)
    # In slices: SQLite takes at most 32766 bound parameters a statement.
    for start in range(0, len(batch), 500):
        result = await db.execute(
            select(ChatSession.client_id).where(
                ChatSession.user_id == user_id,
                ChatSession.client_id.in_(batch[start : start + 500]),
            )
        )
        found.update(key for key in result.scalars() if key is not None)
    return found


async def owned_session_ids(
    db: AsyncSession, user_id: uuid.UUID, ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    """Return those of `ids` that are sessions of the user."""
    found: set[uuid.UUID] = set()
    batch = list(ids)
    for start in range(0, len(batch), 500):
        result = await db.execute(
            select(ChatSession.id).where(
                ChatSession.user_id == user_id, ChatSession.id.in_(batch[start : start + 500])
            )
        )
        found.update(result.scalars())
    return found


async def files_by_content(
    db: AsyncSession, user_id: uuid.UUID, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], File]:
    """Return the user's files whose (sha256, filename) is among `keys`."""
    found: dict[tuple[str, str], File] = {}
    batch = list(keys)
    for start in range(0, len(batch), 500):
        result = await db.execute(
            select(File)
            .where(
                File.user_id == user_id,
                tuple_(File.sha256, File.filename).in_(batch[start : start + 500]),
            )
            .order_by(File.created_at, File.id)
        )
        for row in result.scalars():
            found.setdefault((row.sha256, row.filename), row)
    return found


async def add_sessions(db: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert sessions given as column values; ImportConflict if a client_id is taken."""
    try:
        await _insert(db, cast(Table, ChatSession.__table__), rows)
    except IntegrityError as exc:
        if key_taken(exc):
            raise ImportConflict() from exc
        raise


def key_taken(exc: IntegrityError) -> bool:
    """Tell whether the error is the unique index of sessions' client_ids, and not another."""
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state is not None:  # Postgres (asyncpg: the constraint's name is on the cause)
        name = getattr(getattr(orig, "__cause__", None), "constraint_name", None)
        return state == "23505" and (name or "") == SESSION_KEY_INDEX
    return _SQLITE_SESSION_KEY in str(orig)


async def add_messages(db: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert messages given as column values, parents before their children."""
    await _insert(db, cast(Table, Message.__table__), rows)


async def add_links(db: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert message_files rows given as column values."""
    await _insert(db, cast(Table, MessageFile.__table__), rows)


async def _insert(db: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert the rows INSERT_BATCH at a time, in their order (parents first stay first)."""
    for start in range(0, len(rows), INSERT_BATCH):
        await db.execute(insert(table), rows[start : start + INSERT_BATCH])
