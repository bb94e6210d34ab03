"""Dependencies that authenticate the caller: CurrentUser (required), OptionalUser (guests)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from zyron.auth.principal import Principal
from zyron.auth.repository import ensure_external_user, user_by_id
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import InvalidToken, NotAuthenticated
from zyron.state import AppState, get_state

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
    if known not in state.known_users:
        await _check_account(state, principal)
        state.known_users[known] = True
    return principal


async def _check_account(state: AppState, principal: Principal) -> None:
    """Make sure the token's user has a row: Supabase users get one on first use."""
    async with unit_of_work(
        state.sessionmaker, role="authenticated", claims=principal.claims
    ) as db:
        if principal.issuer == "supabase":
            if not await ensure_external_user(db, principal.user_id, principal.email):
                raise InvalidToken(
                    "The token's subject is a built-in account; sign in with a password."
                )
        elif await user_by_id(db, principal.user_id) is None:
            # A valid signature for an account that is gone (e.g. the database was reset).
            raise InvalidToken("The account behind this token no longer exists.")


async def _current_principal(
    principal: Annotated[Principal | None, Depends(_optional_principal)],
) -> Principal:
    if principal is None:
        raise NotAuthenticated()
    return principal


OptionalUser = Annotated[Principal | None, Depends(_optional_principal)]
CurrentUser = Annotated[Principal, Depends(_current_principal)]
