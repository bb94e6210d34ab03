"""Administration: users, their role and disabled mark, usage across users, limit overrides.

Used by the /admin routes (an admin's request) and by `zyron users` (the operator at the
command line). Every transaction runs as zyron_admin on Postgres (docs/admin.md). A change of
role or disabled mark is committed first, then acted on here (`Admin.changed`) and announced
to every replica through Redis, which forget what they cached of the account at once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from zyron.admin import repository as repo
from zyron.admin.schemas import (
    DEFAULT_USAGE_DAYS,
    MAX_USAGE_DAYS,
    AdminUsageReport,
    AdminUsageRow,
    AdminUserRead,
    Limits,
    LimitsRead,
    Role,
    UsageTotals,
    UserUsage,
)
from zyron.auth import repository as auth_repo
from zyron.auth.announce import announce_account_change
from zyron.db.models import UserRole
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import EmailTaken, InvalidInput, NotFound, ZyronError
from zyron.limits import overrides
from zyron.limits.overrides import UserLimits
from zyron.limits.usage import today
from zyron.llm.base import USAGE_KINDS
from zyron.llm.prices import NANOS_PER_USD, usd
from zyron.settings import Settings

if TYPE_CHECKING:
    from zyron.streams.redis_hub import RedisHub

log = logging.getLogger("zyron.admin")

NO_SUCH_USER = "No such user."
# The claims of the operator's transactions at the command line: no user behind them.
OPERATOR_CLAIMS: Mapping[str, Any] = {"role": "zyron_admin"}


class AdminLockout(ZyronError):
    """The change would leave nobody able to administer: the last admin, or yourself."""

    status_code = 409
    code = "admin_lockout"
    default_detail = (
        "This would leave no enabled admin: promote another account first "
        "(or use `zyron users` on the server)."
    )


@dataclass
class Admin:
    """Where administration runs, and who does it (`actor` None: the command line)."""

    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings
    hub: RedisHub | None
    actor: uuid.UUID | None
    claims: Mapping[str, Any] = field(default_factory=lambda: OPERATOR_CLAIMS)
    # What this process does once a change of the account committed (forget its cache; with
    # True, it was disabled: stop its replies). The command line has nothing cached.
    changed: Callable[[uuid.UUID, bool], None] = lambda user_id, disabled: None

    def transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        """Open an administrator's transaction (as zyron_admin on Postgres)."""
        return unit_of_work(self.sessionmaker, role="zyron_admin", claims=self.claims)


# --- users -----------------------------------------------------------------------------------


async def list_users(
    admin: Admin,
    *,
    query: str | None = None,
    role: Role | None = None,
    disabled: bool | None = None,
    limit: int = 50,
    before: uuid.UUID | None = None,
) -> list[AdminUserRead]:
    """Return users, newest first, with their usage; `before`: those created before that one."""
    async with admin.transaction() as db:
        anchor = None
        if before is not None:
            anchor = await repo.find_user(db, user_id=before, email=None)
            if anchor is None:
                raise NotFound(f"before: {NO_SUCH_USER}")
        rows = await repo.list_users(
            db, query=query, role=role, disabled=disabled, limit=limit, before=anchor
        )
    return [_user(row) for row in rows]


async def get_user(admin: Admin, user_id: uuid.UUID) -> AdminUserRead:
    """Return one user with their usage."""
    async with admin.transaction() as db:
        row = await repo.user_with_usage(db, user_id)
    if row is None:
        raise NotFound(NO_SUCH_USER)
    return _user(row)


async def find_user(admin: Admin, who: str) -> AdminUserRead:
    """Return the user named by an id or an email (the command line names users either way)."""
    try:
        user_id: uuid.UUID | None = uuid.UUID(who)
    except ValueError:
        user_id = None
    async with admin.transaction() as db:
        found = await repo.find_user(db, user_id=user_id, email=None if user_id else who)
        row = None if found is None else await repo.user_with_usage(db, found.id)
    if row is None:
        raise NotFound(f"No user with the {'id' if user_id else 'email'} {who!r}.")
    return _user(row)


async def update_user(
    admin: Admin, user_id: uuid.UUID, *, role: Role | None = None, disabled: bool | None = None
) -> AdminUserRead:
    """Change a user's role or disabled mark; every replica hears of it once committed.

    An admin's request may not disable its own account, nor leave no enabled admin; the
    command line may (it is how access is recovered).
    """
    async with admin.transaction() as db:
        await repo.lock_admins(db)  # two admins demoting each other: one waits, then counts
        row = await repo.find_user(db, user_id=user_id, email=None)
        if row is None:
            raise NotFound(NO_SUCH_USER)
        was_admin = row.role == UserRole.ADMIN and row.disabled_at is None
        new_role = row.role if role is None else role
        now_disabled = (row.disabled_at is not None) if disabled is None else disabled
        if admin.actor is not None:
            if now_disabled and row.disabled_at is None and user_id == admin.actor:
                raise AdminLockout(
                    "You cannot disable your own account: another admin can, or the operator "
                    "with `zyron users disable`."
                )
            still_admin = new_role == UserRole.ADMIN and not now_disabled
            last = was_admin and not still_admin
            if last and await repo.count_enabled_admins(db, other_than=user_id) == 0:
                raise AdminLockout()
        changed = False
        if new_role != row.role:
            await repo.set_role(db, user_id, new_role)
            changed = True
        if now_disabled != (row.disabled_at is not None):
            await repo.set_disabled(db, user_id, now_disabled)
            changed = True
    if changed:
        admin.changed(user_id, now_disabled)
        announced = await announce(admin.hub, user_id)
        log.info(
            "account changed",
            extra={
                "user_id": str(user_id),
                "by": str(admin.actor) if admin.actor else "operator",
                "role": new_role,
                "disabled": now_disabled,
                "announced": announced,
            },
        )
    return await get_user(admin, user_id)


async def create_user(admin: Admin, email: str, password_hash: str, *, role: Role) -> AdminUserRead:
    """Create a built-in account (the command line); EmailTaken if the email has one."""
    # As service_role, as signup does: zyron_admin does not insert users.
    async with unit_of_work(admin.sessionmaker, role="service_role") as db:
        if await auth_repo.user_by_email(db, email) is not None:
            raise EmailTaken(f"An account with the email {email!r} already exists.")
        try:
            async with db.begin_nested():
                user = await auth_repo.add_user(db, email=email, password_hash=password_hash)
                user.role = role
        except IntegrityError as exc:
            raise EmailTaken(f"An account with the email {email!r} already exists.") from exc
        user_id = user.id
    log.info("account created", extra={"user_id": str(user_id), "role": role})
    return await get_user(admin, user_id)


async def announce(hub: RedisHub | None, user_id: uuid.UUID) -> bool:
    """Tell every replica to forget what it cached of the account; False if none could be."""
    return await announce_account_change(hub, user_id)


def _totals(row: Row[Any]) -> dict[str, Any]:
    """The UsageTotals fields of a row with the sums of zyron.admin.repository."""
    nanos = int(row.cost_nanousd)
    return {
        "replies": int(row.replies),
        **{kind: int(getattr(row, kind)) for kind in USAGE_KINDS},
        "total_tokens": int(row.total_tokens),
        "cost_nanousd": nanos,
        "cost_usd": usd(nanos) or 0.0,
        "unpriced_replies": int(row.unpriced_replies),
    }


def _user(row: Row[Any]) -> AdminUserRead:
    return AdminUserRead(
        id=row.id,
        email=row.email,
        display_name=row.display_name,
        created_at=row.created_at,
        role=row.role,
        disabled=row.disabled_at is not None,
        disabled_at=row.disabled_at,
        usage=UsageTotals(**_totals(row)),
    )


# --- usage across users ----------------------------------------------------------------------


async def usage_report(
    admin: Admin,
    *,
    start: date | None,
    end: date | None,
    user_id: uuid.UUID | None = None,
    model: str | None = None,
    top: int = 20,
) -> AdminUsageReport:
    """Return every user's usage and cost by day and model, with the users who cost most."""
    start, end = usage_range(start, end)
    async with admin.transaction() as db:
        days = await repo.usage_by_day(db, start, end, user_id, model)
        totals = await repo.usage_totals(db, start, end, user_id, model)
        users = await repo.top_users(db, start, end, user_id, model, top)
    return AdminUsageReport(
        start=start,
        end=end,
        days=[
            AdminUsageRow(day=row.day, model=row.model, users=int(row.users), **_totals(row))
            for row in days
        ],
        top_users=[
            UserUsage(user_id=row.user_id, email=row.email, **_totals(row)) for row in users
        ],
        totals=UsageTotals(**_totals(totals)),
    )


def usage_range(start: date | None, end: date | None) -> tuple[date, date]:
    """The report's days: by default the last DEFAULT_USAGE_DAYS, at most MAX_USAGE_DAYS."""
    span = timedelta(days=DEFAULT_USAGE_DAYS - 1)
    if end is None:
        end = today() if start is None else max(today(), start)
    if start is None:
        start = end - span if end > date.min + span else date.min
    if start > end:
        raise InvalidInput(f"start: {start} is after end ({end})")
    if (end - start).days + 1 > MAX_USAGE_DAYS:
        raise InvalidInput(f"end: at most {MAX_USAGE_DAYS} days from start (both included)")
    return start, end


# --- limit overrides -------------------------------------------------------------------------

# API field -> (column, factor from the API's unit to the column's).
_FIELDS: dict[str, tuple[overrides.LimitName, int]] = {
    "daily_tokens": ("daily_tokens", 1),
    "daily_usd": ("daily_nanousd", NANOS_PER_USD),
    "monthly_usd": ("monthly_nanousd", NANOS_PER_USD),
    "storage_bytes": ("storage_bytes", 1),
}


async def get_limits(admin: Admin, user_id: uuid.UUID) -> LimitsRead:
    """Return the user's overrides, the settings, and what the user is held to."""
    async with admin.transaction() as db:
        if await repo.find_user(db, user_id=user_id, email=None) is None:
            raise NotFound(NO_SUCH_USER)
        row = await repo.override_of(db, user_id)
    defaults = overrides.server_limits(admin.settings)
    given = Limits(daily_tokens=None, daily_usd=None, monthly_usd=None, storage_bytes=None)
    if row is not None:
        given = Limits(
            daily_tokens=row.daily_tokens,
            daily_usd=usd(row.daily_nanousd),
            monthly_usd=usd(row.monthly_nanousd),
            storage_bytes=row.storage_bytes,
        )
    return LimitsRead(
        user_id=user_id,
        overrides=given,
        defaults=_limits(defaults),
        effective=_limits(overrides.apply(defaults, row)),
        updated_at=None if row is None else row.updated_at,
    )


async def update_limits(admin: Admin, user_id: uuid.UUID, changes: Mapping[str, Any]) -> LimitsRead:
    """Set the overrides named in `changes` (None: back to the setting); the rest stay."""
    values: dict[str, int | None] = {}
    for name, value in changes.items():
        column, factor = _FIELDS[name]
        # Dollars to whole nano-dollars: the unit every cost is counted in.
        values[column] = None if value is None else round(value * factor)
    async with admin.transaction() as db:
        if await repo.find_user(db, user_id=user_id, email=None) is None:
            raise NotFound(NO_SUCH_USER)
        if values:
            await repo.save_override(db, user_id, values)
    if values:
        log.info(
            "limits overridden",
            extra={"user_id": str(user_id), "by": str(admin.actor), "limits": sorted(values)},
        )
    return await get_limits(admin, user_id)


async def clear_limits(admin: Admin, user_id: uuid.UUID) -> LimitsRead:
    """Remove every override of the user: the settings apply again."""
    async with admin.transaction() as db:
        if await repo.find_user(db, user_id=user_id, email=None) is None:
            raise NotFound(NO_SUCH_USER)
        await repo.delete_override(db, user_id)
    return await get_limits(admin, user_id)


def _limits(limits: UserLimits) -> Limits:
    return Limits(
        daily_tokens=limits.daily_tokens,
        daily_usd=usd(limits.daily_nanousd),
        monthly_usd=usd(limits.monthly_nanousd),
        storage_bytes=limits.storage_bytes,
    )
