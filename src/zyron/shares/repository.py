"""SQL for share links: the owner's queries filter by owner, an anonymous reader's by token hash.

On Postgres an anonymous reader acts as `anon` with the hash of the token it holds in
`zyron.share_token_hash` (migration 0012): the policies show that one share and its files'
rows, and only the columns selected below are granted. The filters here say the same for
SQLite, which has no row security.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer, load_only

from zyron.db.models import ChatSession, File, Share, ShareFile

FOREIGN_KEY_VIOLATION = "23503"  # Postgres's SQLSTATE


@dataclass(frozen=True, slots=True)
class HeldShare:
    """A share as the holder of its token reads it: what anon's column grants allow."""

    id: uuid.UUID
    title: str
    snapshot: list[dict[str, Any]]
    created_at: datetime


async def add_share(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    token_hash: str,
    title: str,
    up_to_message_id: uuid.UUID,
    snapshot: list[dict[str, Any]],
    file_ids: Collection[uuid.UUID],
    now: datetime,
) -> Share | None:
    """Insert a share and a share_files row per file it shows.

    None if the session (or its account) is gone: a foreign key refused the row. The
    transaction is then spoilt, and must end.
    """
    share = Share(
        user_id=user_id,
        session_id=session_id,
        token_hash=token_hash,
        title=title,
        up_to_message_id=up_to_message_id,
        snapshot=snapshot,
        created_at=now,
    )
    db.add(share)
    try:
        await db.flush()  # the share first: the share_files policy checks it is the caller's
    except IntegrityError as exc:
        if _foreign_key_violation(exc):
            return None
        raise
    db.add_all(
        ShareFile(share_id=share.id, file_id=file_id, user_id=user_id) for file_id in file_ids
    )
    await db.flush()
    return share


def _foreign_key_violation(exc: IntegrityError) -> bool:
    """Tell whether the database refused a row for naming one that does not exist."""
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return state == FOREIGN_KEY_VIOLATION or "FOREIGN KEY constraint failed" in str(exc.orig)


async def session_exists(db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID) -> bool:
    """Tell whether the session exists and belongs to `user_id`."""
    found = await db.execute(
        select(exists().where(ChatSession.id == session_id, ChatSession.user_id == user_id))
    )
    return bool(found.scalar())


async def owned_share(db: AsyncSession, user_id: uuid.UUID, share_id: uuid.UUID) -> Share | None:
    """Return the share, without its snapshot, if it exists and belongs to `user_id`."""
    result = await db.execute(
        select(Share)
        .options(defer(Share.snapshot, raiseload=True))
        .where(Share.id == share_id, Share.user_id == user_id)
    )
    return result.scalar_one_or_none()


async def list_shares(
    db: AsyncSession,
    user_id: uuid.UUID,
    *,
    limit: int,
    session_id: uuid.UUID | None = None,
    before: Share | None = None,
) -> Sequence[Share]:
    """Return the user's newest `limit` shares (of one session; older than `before`), newest first.

    Without their snapshots: a list never needs them, and each can be large.
    """
    query = (
        select(Share).options(defer(Share.snapshot, raiseload=True)).where(Share.user_id == user_id)
    )
    if session_id is not None:
        query = query.where(Share.session_id == session_id)
    if before is not None:
        query = query.where(
            or_(
                Share.created_at < before.created_at,
                and_(Share.created_at == before.created_at, Share.id < before.id),
            )
        )
    result = await db.execute(query.order_by(Share.created_at.desc(), Share.id.desc()).limit(limit))
    return result.scalars().all()


async def share_file_ids(
    db: AsyncSession, user_id: uuid.UUID, share_id: uuid.UUID
) -> set[uuid.UUID]:
    """Return the ids of the files the share shows."""
    result = await db.execute(
        select(ShareFile.file_id).where(
            ShareFile.share_id == share_id, ShareFile.user_id == user_id
        )
    )
    return set(result.scalars())


async def delete_share(db: AsyncSession, share: Share) -> None:
    """Delete a share and its share_files rows (zyron.files.service deletes unused files)."""
    # Explicit, so the rows go even where the database does not cascade.
    await db.execute(
        delete(ShareFile).where(ShareFile.share_id == share.id, ShareFile.user_id == share.user_id)
    )
    await db.execute(
        delete(Share).where(Share.id == share.id, Share.user_id == share.user_id),
        execution_options={"synchronize_session": False},
    )


async def held_share(db: AsyncSession, token_hash: str) -> HeldShare | None:
    """Return the share whose token hashes to `token_hash`, as its holder may read it."""
    result = await db.execute(
        select(Share.id, Share.title, Share.snapshot, Share.created_at).where(
            Share.token_hash == token_hash
        )
    )
    row = result.one_or_none()
    if row is None:
        return None
    return HeldShare(
        id=row.id, title=row.title, snapshot=list(row.snapshot), created_at=row.created_at
    )


# The columns of a file anon may read: enough to describe it and serve its bytes.
_HELD_FILE = load_only(
    File.id,
    File.user_id,
    File.filename,
    File.media_type,
    File.size,
    File.storage_key,
    raiseload=True,
)


def _held_files(token_hash: str) -> Any:
    return (
        select(File)
        .options(_HELD_FILE)
        .join(ShareFile, ShareFile.file_id == File.id)
        .join(Share, Share.id == ShareFile.share_id)
        .where(Share.token_hash == token_hash)
    )


async def held_files(db: AsyncSession, token_hash: str) -> list[File]:
    """Return the files the share whose token hashes to `token_hash` shows, by name."""
    result = await db.execute(_held_files(token_hash).order_by(File.filename, File.id))
    return list(result.scalars())


async def held_file(db: AsyncSession, token_hash: str, file_id: uuid.UUID) -> File | None:
    """Return one file of the share whose token hashes to `token_hash`, if it shows it."""
    result = await db.execute(_held_files(token_hash).where(File.id == file_id))
    return result.scalar_one_or_none()
