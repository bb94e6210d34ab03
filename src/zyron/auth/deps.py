"""Dependencies that authenticate the caller: CurrentUser (required), OptionalUser (guests)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.auth.errors import AccountDisabled
from zyron.auth.principal import KnownAccount, Principal, supabase_admin
from zyron.auth.repository import deleted_at, ensure_external_user, user_by_id
from zyron.db.models import UserRole
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import InvalidToken, NotAuthenticated
from zyron.state import AppState, get_state

log = logging.getLogger("zyron.auth")

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An access token from /auth/login or /auth/signup, or a Supabase Auth token.",
)


async def _optional_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal | None:
    # Only the header counts: a token in the query string is ignored, never used.
    if "authorization" not in request.headers:
        return None
    if credentials is None or not credentials.credentials.strip():
        raise InvalidToken("The Authorization header must be 'Bearer <access token>'.")
    state = get_state(request)
    principal = await state.verifier.verify(credentials.credentials.strip())
    # Keyed by issuer too: a built-in account being known must not admit a Supabase token
    # that names the same id.
    known = (principal.issuer, principal.user_id)
    account = state.known_users.get(known)
    if account is None:
        forgotten = state.forgotten
        account = await _check_account(state, principal)
        if state.forgotten == forgotten:
            state.known_users[known] = account
    if account.disabled:
        # Cached too: a disabled account's requests cost no query. Enabling it is announced,
        # as disabling it was, and every replica then reads the row again.
        raise AccountDisabled()
    # The role comes from the row (so a demotion counts at once), never from a claim Zyron
    # signed; a Supabase user may also be one by the token's app_metadata (docs/admin.md).
    if account.admin or (principal.issuer == "supabase" and supabase_admin(principal.claims)):
        return replace(principal, admin=True)
    return principal


async def _check_account(state: AppState, principal: Principal) -> KnownAccount:
    """Read the token's user's row (Supabase users get one on first use): role, disabled."""
    async with unit_of_work(
        state.sessionmaker, role="authenticated", claims=principal.claims
    ) as db:
        if principal.issuer == "supabase":
            # The Supabase account outlives its Zyron data: a token issued before the deletion
            # must not bring the account back (an empty one) on any replica.
            await _refuse_if_deleted_before_sign_in(db, principal)
            if not await ensure_external_user(db, principal.user_id, principal.email):
                raise InvalidToken(
                    "The token's subject is a built-in account; sign in with a password."
                )
            # Again, in this transaction: a deletion that committed between the first look
            # and the insert would otherwise be undone by it (the insert waits on the
            # deleting transaction's row, so this read sees what it committed).
            await _refuse_if_deleted_before_sign_in(db, principal)
        user = await user_by_id(db, principal.user_id)
        if user is None:
            # A valid signature for an account that is gone (e.g. the database was reset).
            raise InvalidToken("The account behind this token no longer exists.")
        return KnownAccount(
            admin=user.role == UserRole.ADMIN, disabled=user.disabled_at is not None
        )


async def _refuse_if_deleted_before_sign_in(db: AsyncSession, principal: Principal) -> None:
    """Refuse a token of a sign-in that happened before the account's deletion."""
    deleted = await deleted_at(db, principal.user_id)
    if deleted is not None and not _signed_in_after(principal, deleted):
        raise InvalidToken("This account was deleted; sign in again.")


def _signed_in_after(principal: Principal, moment: datetime) -> bool:
    """Tell whether the token's sign-in happened after `moment`.

    Supabase refreshes an access token hourly with a new `iat`, but the same sign-in: its
    authentication methods (`amr`, RFC 8176) carry when each was used, and the earliest is
    when the session began (a second factor added later does not make it new). A token
    without them cannot say, and counts as signed in before.
    """
    amr = principal.claims.get("amr")
    entries = amr if isinstance(amr, list) else []
    times: list[float] = []
    for entry in entries:
        stamp = entry.get("timestamp") if isinstance(entry, dict) else None
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            times.append(float(stamp))
    if not times:
        return False
    # Whole seconds: a sign-in in the deletion's own second counts as before it.
    return bool(min(times) > moment.timestamp())


async def authenticate(request: Request) -> Principal | None:
    """Return the caller as the routes' dependencies would (None: no Authorization header)."""
    return await _optional_principal(request, await bearer_scheme(request))


def forget_account(state: AppState, user_id: uuid.UUID | None) -> None:
    """Forget what was cached of an account (None: every account): its row is read again.

    Called for a deletion, a change of role and a disabling or enabling, here and, through
    Redis, on every replica (zyron.app._account_changed).
    """
    state.forgotten += 1
    if user_id is None:
        state.known_users.clear()
        return
    for issuer in ("zyron", "supabase"):
        state.known_users.pop((issuer, user_id), None)


# Checks begun by account changes heard from other replicas, kept until they end.
_checks: set[asyncio.Task[None]] = set()


def stop_replies_if_refused(
    state: AppState, user_id: uuid.UUID, *, when_unsure: bool = True
) -> None:
    """Cancel the user's replies here if their row says they may no longer chat.

    For an account change heard from another replica: a deletion or a disabling stops the
    replies this process produces for the user (the provider stops billing); a change of role,
    or an enabling, leaves them running. `when_unsure`: whether to stop them when the row
    cannot be read.
    """
    task = asyncio.get_running_loop().create_task(_stop_if_refused(state, user_id, when_unsure))
    _checks.add(task)
    task.add_done_callback(_checks.discard)


async def _stop_if_refused(state: AppState, user_id: uuid.UUID, when_unsure: bool) -> None:
    try:
        async with unit_of_work(state.sessionmaker, role="service_role") as db:
            user = await user_by_id(db, user_id)
        refused = user is None or user.disabled_at is not None
    except (SQLAlchemyError, OSError) as exc:
        # Cannot tell: for a change announced, stop them, as every account change did before
        # there were others.
        log.warning("account change not checked", extra={"reason": type(exc).__name__})
        refused = when_unsure
    if refused:
        state.generations.cancel_user(user_id)


async def _current_principal(
    principal: Annotated[Principal | None, Depends(_optional_principal)],
) -> Principal:
    if principal is None:
        raise NotAuthenticated()
    return principal


OptionalUser = Annotated[Principal | None, Depends(_optional_principal)]
CurrentUser = Annotated[Principal, Depends(_current_principal)]
