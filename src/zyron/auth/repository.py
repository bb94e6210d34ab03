"""SQL for users and refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.models import RefreshToken, User
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
