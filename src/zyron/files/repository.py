"""SQL for files and the messages that use them; every query is filtered by the owner."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.models import File, Message, MessageFile, ShareFile

# Any constant: the first half of the per-user file lock's key (the user is the second).
FILES_LOCK_NAMESPACE = 0x7A66  # "zf"
_LOCK = text("SELECT pg_advisory_xact_lock(:namespace, :key)")


async def lock_files_of(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Take the user's file lock until the transaction ends (Postgres; SQLite has one writer).

    Whether a file stays is decided by reading what uses it (messages, shares) and then
    deleting; uploads count the quota, then insert. Run side by side, two such transactions
    each miss what the other is writing: a link made while its file is deleted would show
    nothing, an account deleted during an upload would leave the upload's bytes behind.
    Users cannot take row locks on files (no UPDATE privilege), so they queue on this key.
    """
    if db.get_bind().dialect.name != "postgresql":
        return
    await db.execute(_LOCK, {"namespace": FILES_LOCK_NAMESPACE, "key": file_lock_key(user_id)})


def file_lock_key(user_id: uuid.UUID) -> int:
    """Return the second half of the user's file lock key (an int4: the user's first bytes)."""
    return int.from_bytes(user_id.bytes[:4], "big", signed=True)


async def owned_file(db: AsyncSession, user_id: uuid.UUID, file_id: uuid.UUID) -> File | None:
    """Return the file if it exists and belongs to `user_id`."""
    result = await db.execute(select(File).where(File.id == file_id, File.user_id == user_id))
    return result.scalar_one_or_none()


async def files_by_id(
    db: AsyncSession, user_id: uuid.UUID, ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, File]:
    """Return the user's files among `ids`, by id."""
    if not ids:
        return {}
    result = await db.execute(select(File).where(File.id.in_(ids), File.user_id == user_id))
    return {row.id: row for row in result.scalars()}


async def list_files(
    db: AsyncSession, user_id: uuid.UUID, *, limit: int, before: File | None = None
) -> Sequence[File]:
    """Return the user's newest `limit` files (older than `before`), newest first."""
    query = select(File).where(File.user_id == user_id)
    if before is not None:
        query = query.where(
            or_(
                File.created_at < before.created_at,
                and_(File.created_at == before.created_at, File.id < before.id),
            )
        )
    result = await db.execute(query.order_by(File.created_at.desc(), File.id.desc()).limit(limit))
    return result.scalars().all()


async def used_bytes(db: AsyncSession, user_id: uuid.UUID) -> int:
    """Return the sum of the sizes of the user's files."""
    result = await db.execute(
        select(func.coalesce(func.sum(File.size), 0)).where(File.user_id == user_id)
    )
    return int(result.scalar_one())


async def add_file(
    db: AsyncSession,
    *,
    file_id: uuid.UUID,
    user_id: uuid.UUID,
    filename: str,
    media_type: str,
    size: int,
    sha256: str,
    storage_key: str,
    now: datetime,
) -> File:
    """Insert a file's row (its bytes are already stored)."""
    row = File(
        id=file_id,
        user_id=user_id,
        filename=filename,
        media_type=media_type,
        size=size,
        sha256=sha256,
        storage_key=storage_key,
        created_at=now,
    )
    db.add(row)
    await db.flush()
    return row


async def messages_using(db: AsyncSession, user_id: uuid.UUID, file_id: uuid.UUID) -> list[Message]:
    """Return the user's messages that link the file."""
    result = await db.execute(
        select(Message)
        .join(MessageFile, MessageFile.message_id == Message.id)
        .where(
            MessageFile.file_id == file_id,
            MessageFile.user_id == user_id,
            Message.user_id == user_id,
        )
    )
    return list(result.scalars())


async def session_file_ids(
    db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID
) -> set[uuid.UUID]:
    """Return the ids of the files the session's messages link."""
    result = await db.execute(
        select(MessageFile.file_id)
        .join(Message, Message.id == MessageFile.message_id)
        .where(
            Message.session_id == session_id,
            Message.user_id == user_id,
            MessageFile.user_id == user_id,
        )
        .distinct()
    )
    return set(result.scalars())


async def linked_file_ids(
    db: AsyncSession, user_id: uuid.UUID, file_ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    """Return those of `file_ids` that some message still links."""
    if not file_ids:
        return set()
    result = await db.execute(
        select(MessageFile.file_id)
        .where(MessageFile.file_id.in_(file_ids), MessageFile.user_id == user_id)
        .distinct()
    )
    return set(result.scalars())


async def shared_file_ids(
    db: AsyncSession, user_id: uuid.UUID, file_ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    """Return those of `file_ids` that some share link of the user shows."""
    if not file_ids:
        return set()
    result = await db.execute(
        select(ShareFile.file_id)
        .where(ShareFile.file_id.in_(file_ids), ShareFile.user_id == user_id)
        .distinct()
    )
    return set(result.scalars())


async def shares_showing(
    db: AsyncSession, user_id: uuid.UUID, file_id: uuid.UUID
) -> list[uuid.UUID]:
    """Return the ids of the user's shares that show the file."""
    result = await db.execute(
        select(ShareFile.share_id)
        .where(ShareFile.file_id == file_id, ShareFile.user_id == user_id)
        .order_by(ShareFile.share_id)
    )
    return list(result.scalars())


async def add_links(
    db: AsyncSession, user_id: uuid.UUID, message_id: uuid.UUID, file_ids: Sequence[uuid.UUID]
) -> None:
    """Insert a message_files row per file."""
    db.add_all(
        MessageFile(message_id=message_id, file_id=file_id, user_id=user_id) for file_id in file_ids
    )
    await db.flush()


async def delete_files(
    db: AsyncSession, user_id: uuid.UUID, file_ids: Collection[uuid.UUID]
) -> list[str]:
    """Delete the files' rows and their links; return their storage keys."""
    if not file_ids:
        return []
    # Explicit, so the links go even where the database does not cascade.
    await db.execute(
        delete(MessageFile).where(MessageFile.file_id.in_(file_ids), MessageFile.user_id == user_id)
    )
    result = await db.execute(
        delete(File)
        .where(File.id.in_(file_ids), File.user_id == user_id)
        .returning(File.storage_key),
        execution_options={"synchronize_session": False},
    )
    return list(result.scalars())
