"""Dependencies that authenticate the caller: CurrentUser (required), OptionalUser (guests)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from zyron.auth.principal import Principal
from zyron.auth.repository import ensure_external_user
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import InvalidToken, NotAuthenticated
from zyron.state import get_state

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
    if principal.issuer == "supabase" and principal.user_id not in state.known_users:
        async with unit_of_work(
            state.sessionmaker, role="authenticated", claims=principal.claims
        ) as db:
            usable = await ensure_external_user(db, principal.user_id, principal.email)
        if not usable:
            raise InvalidToken(
                "The token's subject is a built-in account; sign in with a password."
            )
        state.known_users.add(principal.user_id)
    return principal


async def _current_principal(
    principal: Annotated[Principal | None, Depends(_optional_principal)],
) -> Principal:
    if principal is None:
        raise NotAuthenticated()
    return principal


OptionalUser = Annotated[Principal | None, Depends(_optional_principal)]
CurrentUser = Annotated[Principal, Depends(_current_principal)]
