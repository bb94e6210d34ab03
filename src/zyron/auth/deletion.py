"""Deleting an account: every row and every file of it, refused at once on every replica.

The user's transaction deletes their files' rows (for the storage keys), then the `users` row:
every other table of theirs cascades from it. A `deleted_accounts` row records when, in the
same transaction, so a Supabase token issued before then never brings the account back. The
stored objects go once that has committed (StorageWork), then every replica forgets the
account: this one at once, the others through Redis (zyron.streams.redis_hub).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from zyron.auth import repository as repo
from zyron.auth.announce import announce_account_change
from zyron.auth.deps import forget_account
from zyron.auth.principal import Principal
from zyron.db.types import utcnow
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import InvalidCredentials, InvalidInput, InvalidToken
from zyron.files import repository as files_repo
from zyron.files.deps import StorageWork
from zyron.state import AppState

if TYPE_CHECKING:
    from zyron.streams.redis_hub import RedisHub

log = logging.getLogger("zyron.auth")

_GONE = "The account behind this token no longer exists."


async def delete_account(
    state: AppState, work: StorageWork, principal: Principal, password: str | None
) -> None:
    """Check the password (built-in accounts), delete the account and tell every replica."""
    user_id = principal.user_id

    def transaction() -> AbstractAsyncContextManager[AsyncSession]:
        return unit_of_work(state.sessionmaker, role="authenticated", claims=principal.claims)

    async with transaction() as db:
        user = await repo.user_by_id(db, user_id)
        stored = None if user is None else user.password_hash
    if user is None:
        raise InvalidToken(_GONE)
    if stored is not None:
        # Checked between the two transactions: a hash takes a third of a second, which would
        # hold a pooled connection (and on SQLite the write lock) the whole time.
        if password is None:
            raise InvalidInput(
                "password: Field required (a built-in account confirms its deletion with it)."
            )
        if not await state.passwords.verify(stored, password):
            raise InvalidCredentials("The password is incorrect.")
    keys, mirrored = await remove_account(
        state.sessionmaker, state.hub, work, user_id, principal.claims
    )
    cancelled = state.generations.cancel_user(user_id)
    forget_account(state, user_id)
    announced = await announce_removal(state.hub, user_id, mirrored)
    log.info(
        "account deleted",
        extra={
            "user_id": str(user_id),
            "files": len(keys),
            "replies_cancelled": cancelled,
            "announced": announced,
        },
    )


async def remove_account(
    sessionmaker: async_sessionmaker[AsyncSession],
    hub: RedisHub | None,
    work: StorageWork,
    user_id: uuid.UUID,
    claims: Mapping[str, Any],
) -> tuple[list[str], list[uuid.UUID]]:
    """Delete the account's rows as the user, and hand its files to `work` for after the commit.

    Returns the files' storage keys and the replies whose events Redis may still mirror. Also
    used by `zyron users delete`, which then announces the removal as the API does.
    """
    async with unit_of_work(sessionmaker, role="authenticated", claims=claims) as db:
        # An upload committing between the collection of keys and the deletion would leave
        # its bytes behind: uploads take this lock too.
        await files_repo.lock_files_of(db, user_id)
        # Replies whose events may still be mirrored in Redis: their text goes too.
        mirrored: list[uuid.UUID] = []
        if hub is not None:
            since = utcnow() - timedelta(seconds=hub.mirror_seconds)
            mirrored = await repo.replies_since(db, user_id, since)
        keys = await repo.delete_files_of(db, user_id)
        if not await repo.delete_user(db, user_id):
            raise InvalidToken(_GONE)  # a concurrent deletion won
        await repo.record_deletion(db, user_id, utcnow())
    work.orphaned(keys)  # deleted after the request's end, as every file deletion is
    return keys, mirrored


async def announce_removal(
    hub: RedisHub | None, user_id: uuid.UUID, mirrored: list[uuid.UUID]
) -> bool:
    """Tell the other replicas to forget the account, and drop its replies' mirrors.

    False if Redis could not be told: the deletion has committed, and is answered as done;
    the other replicas' caches expire on their own, the mirrors with their retention.
    """
    return await announce_account_change(hub, user_id, also=mirrored)
