"""Signup, login, refresh-token rotation and logout for built-in accounts."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.auth import repository as repo
from zyron.auth.errors import AccountDisabled
from zyron.auth.passwords import Passwords
from zyron.auth.schemas import TokenPair, UserRead
from zyron.auth.tokens import hash_refresh_token, issue_access_token, new_refresh_token
from zyron.db.models import User
from zyron.db.types import utcnow
from zyron.errors import EmailTaken, InvalidCredentials
from zyron.settings import Settings

log = logging.getLogger("zyron.auth")

# Opens the auth flows' unit of work (as service_role); called once per transaction needed.
Transaction = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@dataclass(frozen=True)
class RefreshReused:
    """A revoked refresh token was presented: its family has been revoked."""

    user_id: uuid.UUID


class AuthService:
    """Account operations; the caller's unit of work commits."""

    def __init__(self, settings: Settings, passwords: Passwords, signing_key: str) -> None:
        self._settings = settings
        self._passwords = passwords
        self._key = signing_key

    async def signup(self, transaction: Transaction, email: str, password: str) -> TokenPair:
        """Create an account and sign it in."""
        # Hashed before the transaction opens: a hash takes a third of a second, which would
        # hold a pooled connection (and on SQLite the write lock) the whole time.
        password_hash = await self._passwords.hash(password)
        async with transaction() as db:
            if await repo.user_by_email(db, email) is not None:
                raise EmailTaken()
            try:
                async with db.begin_nested():
                    user = await repo.add_user(db, email=email, password_hash=password_hash)
            except IntegrityError as exc:  # a concurrent signup with the same email won
                raise EmailTaken() from exc
            log.info("signup", extra={"user_id": str(user.id)})
            return await self._issue(db, user, family=uuid.uuid4())

    async def login(self, transaction: Transaction, email: str, password: str) -> TokenPair:
        """Check the password and start a new login session."""
        async with transaction() as db:
            user = await repo.user_by_email(db, email)
        stored = user.password_hash if user is not None else None
        # Checked between the two transactions, for the same reason signup hashes first.
        if not await self._passwords.verify(stored, password) or user is None or stored is None:
            raise InvalidCredentials()
        if user.disabled_at is not None:  # said only to whoever knows the password
            raise AccountDisabled()
        rehashed = (
            await self._passwords.hash(password) if self._passwords.needs_rehash(stored) else None
        )
        async with transaction() as db:
            if rehashed is not None:
                await repo.set_password_hash(db, user.id, rehashed)
            return await self._issue(db, user, family=uuid.uuid4())

    async def refresh(
        self, db: AsyncSession, refresh_token: str
    ) -> TokenPair | RefreshReused | None:
        """Rotate a refresh token; a used one revokes its family, an unknown one gives None."""
        stored = await repo.refresh_token_by_hash(db, hash_refresh_token(refresh_token))
        if stored is None:
            return None
        if stored.revoked_at is not None or not await repo.mark_used(db, stored.id):
            # Reuse means the token leaked (or a client raced itself): end that login session.
            await repo.revoke_family(db, stored.user_id, stored.family)
            log.warning("refresh token reuse", extra={"user_id": str(stored.user_id)})
            return RefreshReused(stored.user_id)
        if stored.expires_at <= utcnow():
            return None
        user = await repo.user_by_id(db, stored.user_id)
        if user is None:
            return None
        if user.disabled_at is not None:
            # Raised, so the transaction rolls back: the token is not used up, and works again
            # once the account is enabled.
            raise AccountDisabled()
        return await self._issue(db, user, family=stored.family)

    async def logout(self, db: AsyncSession, user_id: uuid.UUID, family: uuid.UUID) -> None:
        """End a login session: its refresh tokens stop working."""
        await repo.revoke_family(db, user_id, family)

    async def _issue(self, db: AsyncSession, user: User, *, family: uuid.UUID) -> TokenPair:
        refresh = new_refresh_token()
        await repo.add_refresh_token(
            db,
            user_id=user.id,
            token_hash=hash_refresh_token(refresh),
            family=family,
            expires_at=utcnow() + timedelta(seconds=self._settings.refresh_token_ttl_seconds),
        )
        ttl = self._settings.access_token_ttl_seconds
        access = issue_access_token(
            key=self._key,
            issuer=self._settings.token_issuer,
            user_id=user.id,
            email=user.email,
            session_id=family,
            ttl_seconds=ttl,
        )
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_in=ttl,
            user=UserRead.model_validate(user),
        )
