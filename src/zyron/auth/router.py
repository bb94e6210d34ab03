"""The /auth routes: signup, login, refresh, logout, me (and deleting it)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.auth.deletion import delete_account
from zyron.auth.deps import CurrentUser
from zyron.auth.errors import AccountDisabled
from zyron.auth.repository import user_by_id
from zyron.auth.schemas import (
    AccountDeletion,
    LoginRequest,
    RefreshRequest,
    SignupRequest,
    TokenPair,
    UserRead,
)
from zyron.auth.service import AuthService, RefreshReused
from zyron.db.deps import ServiceDb, UserDb
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidInput,
    InvalidRefreshToken,
    InvalidToken,
    NotAuthenticated,
    error_responses,
)
from zyron.files.deps import AfterCommit
from zyron.limits.deps import clear, hit
from zyron.limits.rates import RateLimited
from zyron.state import get_state

router = APIRouter(prefix="/auth", tags=["auth"])


def _service(request: Request) -> AuthService:
    service: AuthService = request.app.state.auth_service
    return service


Service = Annotated[AuthService, Depends(_service)]


def _service_transaction(request: Request) -> AbstractAsyncContextManager[AsyncSession]:
    """Open the auth flows' transaction (as service_role), after their rate limits."""
    return unit_of_work(get_state(request).sessionmaker, role="service_role")


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(EmailTaken, RateLimited),
)
async def signup(body: SignupRequest, request: Request, service: Service) -> TokenPair:
    """Create an account with email and password; returns tokens for it."""
    # Per address (one client making many accounts) and per email (probing which are taken).
    # Before the transaction opens: a flood of refused attempts costs the database nothing.
    await hit(request, "signup_ip")
    await hit(request, "signup_email", body.email)
    return await service.signup(lambda: _service_transaction(request), body.email, body.password)


@router.post("/login", responses=error_responses(InvalidCredentials, AccountDisabled, RateLimited))
async def login(body: LoginRequest, request: Request, service: Service) -> TokenPair:
    """Sign in with email and password."""
    # Per address (one client trying many accounts) and per account (many addresses guessing
    # one password), counted before the password is checked, so a burst sent at once is
    # limited too. A success proves the password and clears the account's count: the owner
    # signing in from many devices is never locked out by their own logins.
    await hit(request, "login_ip")
    await hit(request, "login_email", body.email)
    tokens = await service.login(lambda: _service_transaction(request), body.email, body.password)
    await clear(request, "login_email", body.email)
    return tokens


@router.post("/refresh", responses=error_responses(InvalidRefreshToken, AccountDisabled))
async def refresh(body: RefreshRequest, request: Request, service: Service) -> TokenPair:
    """Exchange a refresh token for a new pair; the old refresh token stops working."""
    # Its own transaction: revoking a reused token's family must commit although we answer 401.
    async with _service_transaction(request) as db:
        outcome = await service.refresh(db, body.refresh_token)
    if outcome is None or isinstance(outcome, RefreshReused):
        raise InvalidRefreshToken()
    return outcome


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(NotAuthenticated, InvalidToken),
)
async def logout(principal: CurrentUser, db: ServiceDb, service: Service) -> Response:
    """End this login session: its refresh tokens stop working."""
    family = principal.session_id
    if principal.issuer == "zyron" and family is not None:
        await service.logout(db, principal.user_id, family)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", responses=error_responses(NotAuthenticated, InvalidToken))
async def me(principal: CurrentUser, db: UserDb) -> UserRead:
    """Return the signed-in user."""
    user = await user_by_id(db, principal.user_id)
    if user is None:
        raise NotAuthenticated("The account behind this token no longer exists.")
    return UserRead.model_validate(user)


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        NotAuthenticated, InvalidToken, InvalidCredentials, InvalidInput, RateLimited
    ),
)
async def delete_me(
    principal: CurrentUser,
    request: Request,
    work: AfterCommit,
    body: AccountDeletion | None = None,
) -> Response:
    """Delete your account and everything of it: sessions, messages, files, usage, shares.

    A built-in account confirms with its password; for a Supabase user only Zyron's data goes
    (the Supabase account stays), and tokens issued before now stop working.
    """
    if principal.issuer == "zyron":
        # A password check, so counted like a sign-in: a stolen access token must not be a
        # way around the login limits to guess the password.
        await hit(request, "login_ip")
        await hit(request, "login_email", principal.email or str(principal.user_id))
    password = body.password if body is not None else None
    await delete_account(get_state(request), work, principal, password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
