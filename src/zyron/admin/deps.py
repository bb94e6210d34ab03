"""What the /admin routes depend on: a route that only admins can see, and their context."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from zyron.admin.service import Admin
from zyron.auth.deps import authenticate, bearer_scheme, forget_account
from zyron.auth.errors import AccountDisabled
from zyron.auth.principal import Principal
from zyron.errors import NotAuthenticated
from zyron.state import AppState, get_state

_ADMIN = "zyron_admin"  # where the gate leaves the admin's principal in the request's state


class AdminRoute(APIRoute):
    """A route that, to anyone but an admin, answers as a path that does not exist.

    Checked before anything else of the request is read (its body, its parameters, its
    method): a non-admin, a guest or a bad token gets the very 404 an unknown path gets, so
    nothing tells them the route exists.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 404 unless the caller is an admin; else serve the route as usual."""
        request = Request(scope, receive)
        try:
            principal = await authenticate(request)
        except (NotAuthenticated, AccountDisabled):
            principal = None
        if principal is None or not principal.admin:
            raise StarletteHTTPException(status_code=404)  # what the router's own 404 raises
        setattr(request.state, _ADMIN, principal)
        await super().handle(scope, receive, send)


def _changed(state: AppState, user_id: uuid.UUID, disabled: bool) -> None:
    """Act here on a committed change of an account (other replicas hear of it from Redis)."""
    forget_account(state, user_id)
    if disabled:
        state.generations.cancel_user(user_id)  # an abusive user's replies stop billing now


def _admin(
    request: Request,
    # Declared for the OpenAPI document (the gate above has already checked it).
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Admin:
    principal: Principal = getattr(request.state, _ADMIN)
    state = get_state(request)
    return Admin(
        sessionmaker=state.sessionmaker,
        settings=state.settings,
        hub=state.hub,
        actor=principal.user_id,
        claims={**principal.claims, "role": "zyron_admin"},
        changed=lambda user_id, disabled: _changed(state, user_id, disabled),
    )


AdminContext = Annotated[Admin, Depends(_admin)]
"""The signed-in admin's context: their transactions run as zyron_admin (docs/admin.md)."""
