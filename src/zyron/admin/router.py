"""The /admin routes: users, their role and disabled mark, usage across users, limit overrides.

To anyone but an admin, each answers the 404 of a path that does not exist (AdminRoute).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from zyron.admin import service
from zyron.admin.deps import AdminContext, AdminRoute
from zyron.admin.schemas import (
    MAX_TOP_USERS,
    MAX_USAGE_DAYS,
    MAX_USERS_PAGE,
    AdminUsageReport,
    AdminUserRead,
    IsoDay,
    LimitsRead,
    LimitsUpdate,
    Role,
    UserUpdate,
)
from zyron.admin.service import AdminLockout
from zyron.errors import InvalidInput, NotFound, error_responses

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        **error_responses(NotFound)[404],
        "description": "`not_found`: the caller is not an admin (the same answer as a path "
        "that does not exist), or no such user",
    }
}

router = APIRouter(prefix="/admin", tags=["admin"], route_class=AdminRoute, responses=NOT_FOUND)


# Text no database column holds (Postgres refuses it): refused alike on every database.
NO_NUL = r"^[^\x00]*$"


@router.get("/users")
async def list_users(
    admin: AdminContext,
    q: Annotated[
        str | None,
        Query(
            max_length=320,
            pattern=NO_NUL,
            description="Only users whose email contains this (any case).",
        ),
    ] = None,
    role: Annotated[Role | None, Query(description="Only users of this role.")] = None,
    disabled: Annotated[
        bool | None, Query(description="Only disabled users (true) or enabled ones (false).")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_USERS_PAGE, description=f"At most {MAX_USERS_PAGE}.")
    ] = 50,
    before: Annotated[
        uuid.UUID | None,
        Query(description="A user id: return the users created before it (paging back)."),
    ] = None,
) -> list[AdminUserRead]:
    """List users, newest first, with their role, disabled mark and all-time usage."""
    return await service.list_users(
        admin, query=q, role=role, disabled=disabled, limit=limit, before=before
    )


@router.get("/users/{user_id}")
async def get_user(admin: AdminContext, user_id: uuid.UUID) -> AdminUserRead:
    """Return one user with their role, disabled mark and all-time usage."""
    return await service.get_user(admin, user_id)


@router.patch("/users/{user_id}", responses=error_responses(AdminLockout, InvalidInput))
async def update_user(admin: AdminContext, user_id: uuid.UUID, body: UserUpdate) -> AdminUserRead:
    """Promote, demote, disable or enable a user; every replica applies it at once.

    A disabled user's tokens, logins and refreshes are refused (`403 account_disabled`) and
    their running replies stop; enabling them lets the same tokens in again.
    """
    return await service.update_user(admin, user_id, role=body.role, disabled=body.disabled)


@router.get("/users/{user_id}/limits")
async def get_limits(admin: AdminContext, user_id: uuid.UUID) -> LimitsRead:
    """Return the user's quota and budget overrides, the settings, and what applies."""
    return await service.get_limits(admin, user_id)


@router.patch("/users/{user_id}/limits", responses=error_responses(InvalidInput))
async def update_limits(admin: AdminContext, user_id: uuid.UUID, body: LimitsUpdate) -> LimitsRead:
    """Set some of the user's overrides (null: back to the setting); the rest stay.

    They apply from the user's next request, on every replica (they are read per request).
    """
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    return await service.update_limits(admin, user_id, changes)


@router.delete("/users/{user_id}/limits")
async def clear_limits(admin: AdminContext, user_id: uuid.UUID) -> LimitsRead:
    """Remove every override of the user: the settings apply again."""
    return await service.clear_limits(admin, user_id)


@router.get("/usage", responses=error_responses(InvalidInput))
async def usage(
    admin: AdminContext,
    start: Annotated[
        IsoDay | None,
        Query(description="The first UTC day (default: 29 days before `end`)."),
    ] = None,
    end: Annotated[
        IsoDay | None,
        Query(
            description=f"The last UTC day (default: today); at most {MAX_USAGE_DAYS} days "
            "from `start`, both included, and not before it (else `422 validation_error`)."
        ),
    ] = None,
    user_id: Annotated[uuid.UUID | None, Query(description="Only this user's usage.")] = None,
    model: Annotated[
        str | None,
        Query(max_length=200, pattern=NO_NUL, description="Only this model's usage."),
    ] = None,
    top: Annotated[
        int,
        Query(ge=1, le=MAX_TOP_USERS, description="How many of the costliest users to list."),
    ] = 20,
) -> AdminUsageReport:
    """Return usage and cost across users by day and model, and the users who cost most."""
    return await service.usage_report(
        admin, start=start, end=end, user_id=user_id, model=model, top=top
    )
