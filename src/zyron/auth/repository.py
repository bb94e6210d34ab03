"""SQL for users, refresh tokens and deleted accounts."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.models import DeletedAccount, File, Message, RefreshToken, Role, User
from zyron.db.types import utcnow


async def user_by_email(db: AsyncSession, email: str) -> User | None:
    """Return the user with this (lower-cased) email."""
    result = await db.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def user_by_id(db: AsyncSession, user_id: uuid.UUID) -> User | None:
    """Return the user with this id."""
    return await db.get(User, user_id)


async def add_user(db: AsyncSession, *, email: str, password_hash: str) -> User:
    """Insert a built-in account; IntegrityError if the email is taken."""
    user = User(email=email, password_hash=password_hash)
    db.add(user)
    await db.flush()
    return user


async def set_password_hash(db: AsyncSession, user_id: uuid.UUID, password_hash: str) -> None:
    """Store a new hash of the same password (stronger parameters)."""
    await db.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))


async def ensure_external_user(db: AsyncSession, user_id: uuid.UUID, email: str | None) -> bool:
    """Create the row of an externally authenticated user on first sight.

    False if the id belongs to a built-in account, which external tokens must never act as.
    """
    existing = await db.get(User, user_id)
    if existing is not None:
        return existing.password_hash is None
    try:
        async with db.begin_nested():
            db.add(User(id=user_id, email=email))
    except IntegrityError:
        # A concurrent first request inserted the row, or the email belongs to a built-in
        # account: keep the id (what ownership hangs on) and drop the duplicate email.
        existing = await db.get(User, user_id)
        if existing is None:
            async with db.begin_nested():
                db.add(User(id=user_id, email=None))
        elif existing.password_hash is not None:
            return False
    return True


async def add_refresh_token(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    token_hash: str,
    family: uuid.UUID,
    expires_at: datetime,
) -> None:
    """Store a refresh token's hash."""
    db.add(
        RefreshToken(user_id=user_id, token_hash=token_hash, family=family, expires_at=expires_at)
    )
    await db.flush()


async def refresh_token_by_hash(db: AsyncSession, token_hash: str) -> RefreshToken | None:
    """Return the stored refresh token with this hash."""
    result = await db.execute(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    return result.scalar_one_or_none()


async def mark_used(db: AsyncSession, token_id: uuid.UUID) -> bool:
    """Revoke one token if it is still live; False if someone else used it first."""
    result = await db.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def revoke_family(db: AsyncSession, user_id: uuid.UUID, family: uuid.UUID) -> None:
    """Revoke every live token of a login session."""
    await db.execute(
        update(RefreshToken)
        .where(
            RefreshToken.user_id == user_id,
            RefreshToken.family == family,
            RefreshToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )


async def delete_files_of(db: AsyncSession, user_id: uuid.UUID) -> list[str]:
    """Delete every files row of the user (their links cascade); return their storage keys."""
    result = await db.execute(
        delete(File).where(File.user_id == user_id).returning(File.storage_key),
        execution_options={"synchronize_session": False},
    )
    return list(result.scalars())


async def replies_since(db: AsyncSession, user_id: uuid.UUID, since: datetime) -> list[uuid.UUID]:
    """Return the ids of the user's replies created after `since`."""
    result = await db.execute(
        select(Message.id).where(
            Message.user_id == user_id, Message.role == Role.ASSISTANT, Message.created_at > since
        )
    )
    return list(result.scalars())


async def delete_user(db: AsyncSession, user_id: uuid.UUID) -> bool:
    """Delete the user's row; every table of theirs cascades. False if it was already gone."""
    result = await db.execute(
        delete(User).where(User.id == user_id).returning(User.id),
        execution_options={"synchronize_session": False},
    )
    return result.scalar_one_or_none() is not None


async def record_deletion(db: AsyncSession, user_id: uuid.UUID, at: datetime) -> None:
    """Remember when the account was deleted (a second deletion moves the date)."""
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(DeletedAccount).values(user_id=user_id, deleted_at=at)
    await db.execute(
        statement.on_conflict_do_update(
            index_elements=["user_id"], set_={"deleted_at": statement.excluded.deleted_at}
        )
    )


async def deleted_at(db: AsyncSession, user_id: uuid.UUID) -> datetime | None:
    """Return when the account was last deleted, if it ever was."""
    result = await db.execute(
        select(DeletedAccount.deleted_at).where(DeletedAccount.user_id == user_id)
    )
    return result.scalar_one_or_none()
