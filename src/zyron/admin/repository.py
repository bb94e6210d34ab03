"""SQL of administration: users with their usage, role and disabled mark, usage across
users, limit overrides. Run as zyron_admin on Postgres (its policies, migration 0016).

Users are read column by column: zyron_admin may not read password hashes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, Select, and_, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.models import LimitOverride, UsageDaily, User, UserRole
from zyron.db.types import utcnow
from zyron.llm.base import USAGE_KINDS

USER_COLUMNS = (
    User.id,
    User.email,
    User.display_name,
    User.created_at,
    User.role,
    User.disabled_at,
)
# Any constant: the key of the lock that orders changes to who is an admin (Postgres).
_ADMINS_LOCK = 0x7A79_726F_6E41  # "zyronA"


def _total_tokens() -> ColumnElement[int]:
    """What a quota counts: input (cache reads and writes are input too) and output."""
    return (
        UsageDaily.input_tokens
        + UsageDaily.cache_creation_input_tokens
        + UsageDaily.cache_read_input_tokens
        + UsageDaily.output_tokens
    )


def _sums() -> list[Any]:
    """The aggregate columns of a usage total, labelled as UsageTotals names them."""
    return [
        func.coalesce(func.sum(UsageDaily.replies), 0).label("replies"),
        *(func.coalesce(func.sum(getattr(UsageDaily, k)), 0).label(k) for k in USAGE_KINDS),
        func.coalesce(func.sum(_total_tokens()), 0).label("total_tokens"),
        func.coalesce(func.sum(UsageDaily.cost_nanousd), 0).label("cost_nanousd"),
        func.coalesce(func.sum(UsageDaily.unpriced_replies), 0).label("unpriced_replies"),
    ]


TOTAL_NAMES = (
    "replies",
    *USAGE_KINDS,
    "total_tokens",
    "cost_nanousd",
    "unpriced_replies",
)


def _with_usage() -> Select[Any]:
    """Users with their all-time usage (zero for none)."""
    usage = (
        select(UsageDaily.user_id.label("user_id"), *_sums())
        .group_by(UsageDaily.user_id)
        .subquery()
    )
    return select(
        *USER_COLUMNS,
        *(func.coalesce(getattr(usage.c, name), 0).label(name) for name in TOTAL_NAMES),
    ).outerjoin(usage, usage.c.user_id == User.id)


async def list_users(
    db: AsyncSession,
    *,
    query: str | None,
    role: str | None,
    disabled: bool | None,
    limit: int,
    before: Row[Any] | None,
) -> Sequence[Row[Any]]:
    """Return users, newest first (older than `before`), matching the filters."""
    statement = _with_usage()
    if query:
        statement = statement.where(func.lower(User.email).contains(query.lower(), autoescape=True))
    if role is not None:
        statement = statement.where(User.role == role)
    if disabled is not None:
        statement = statement.where(
            User.disabled_at.is_not(None) if disabled else User.disabled_at.is_(None)
        )
    if before is not None:
        statement = statement.where(
            or_(
                User.created_at < before.created_at,
                and_(User.created_at == before.created_at, User.id < before.id),
            )
        )
    result = await db.execute(
        statement.order_by(User.created_at.desc(), User.id.desc()).limit(limit)
    )
    rows: Sequence[Row[Any]] = result.all()
    return rows


async def user_with_usage(db: AsyncSession, user_id: uuid.UUID) -> Row[Any] | None:
    """Return one user with their all-time usage."""
    result = await db.execute(_with_usage().where(User.id == user_id))
    row: Row[Any] | None = result.one_or_none()
    return row


async def find_user(
    db: AsyncSession, *, user_id: uuid.UUID | None, email: str | None
) -> Row[Any] | None:
    """Return a user's columns by id or (lower-cased) email."""
    condition = User.id == user_id if user_id is not None else User.email == (email or "").lower()
    result = await db.execute(select(*USER_COLUMNS).where(condition))
    return cast("Row[Any] | None", result.one_or_none())


async def lock_admins(db: AsyncSession) -> None:
    """Order the changes to who is an admin, so two cannot both remove the last one.

    On SQLite every write transaction already holds the database's one write lock.
    """
    if db.get_bind().dialect.name == "postgresql":
        await db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADMINS_LOCK})


async def count_enabled_admins(db: AsyncSession, *, other_than: uuid.UUID) -> int:
    """Count the enabled admins besides one user."""
    result = await db.execute(
        select(func.count())
        .select_from(User)
        .where(User.role == UserRole.ADMIN, User.disabled_at.is_(None), User.id != other_than)
    )
    return int(result.scalar_one())


async def set_role(db: AsyncSession, user_id: uuid.UUID, role: str) -> None:
    """Give the user a role."""
    await db.execute(update(User).where(User.id == user_id).values(role=role))


async def set_disabled(db: AsyncSession, user_id: uuid.UUID, disabled: bool) -> None:
    """Disable the user now (keeping an earlier date), or enable them."""
    if disabled:
        statement = (
            update(User)
            .where(User.id == user_id, User.disabled_at.is_(None))
            .values(disabled_at=utcnow())
        )
    else:
        statement = update(User).where(User.id == user_id).values(disabled_at=None)
    await db.execute(statement)


async def usage_by_day(
    db: AsyncSession, start: date, end: date, user_id: uuid.UUID | None, model: str | None
) -> Sequence[Row[Any]]:
    """Every user's usage from `start` to `end`, a row per day and model, newest first."""
    statement = (
        select(
            UsageDaily.day,
            UsageDaily.model,
            func.count(func.distinct(UsageDaily.user_id)).label("users"),
            *_sums(),
        )
        .where(*_range(start, end, user_id, model))
        .group_by(UsageDaily.day, UsageDaily.model)
        .order_by(UsageDaily.day.desc(), UsageDaily.model)
    )
    return (await db.execute(statement)).all()


async def usage_totals(
    db: AsyncSession, start: date, end: date, user_id: uuid.UUID | None, model: str | None
) -> Row[Any]:
    """Every user's usage from `start` to `end`, summed."""
    statement = select(*_sums()).where(*_range(start, end, user_id, model))
    return (await db.execute(statement)).one()


async def top_users(
    db: AsyncSession,
    start: date,
    end: date,
    user_id: uuid.UUID | None,
    model: str | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """The users who cost the most from `start` to `end` (then used the most tokens)."""
    sums = _sums()
    cost, tokens = sums[-2], sums[-3]
    statement = (
        select(UsageDaily.user_id, User.email, *sums)
        .join(User, User.id == UsageDaily.user_id)
        .where(*_range(start, end, user_id, model))
        .group_by(UsageDaily.user_id, User.email)
        .order_by(cost.desc(), tokens.desc(), UsageDaily.user_id)
        .limit(limit)
    )
    return (await db.execute(statement)).all()


def _range(
    start: date, end: date, user_id: uuid.UUID | None, model: str | None
) -> list[ColumnElement[bool]]:
    conditions = [UsageDaily.day >= start, UsageDaily.day <= end]
    if user_id is not None:
        conditions.append(UsageDaily.user_id == user_id)
    if model is not None:
        conditions.append(UsageDaily.model == model)
    return conditions


async def override_of(db: AsyncSession, user_id: uuid.UUID) -> LimitOverride | None:
    """Return the user's overrides, if any were set."""
    return await db.get(LimitOverride, user_id)


async def save_override(
    db: AsyncSession, user_id: uuid.UUID, values: dict[str, int | None]
) -> None:
    """Set some of the user's overrides (None: back to the setting); the rest stay."""
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    now: datetime = utcnow()
    statement = insert(LimitOverride).values(user_id=user_id, updated_at=now, **values)
    await db.execute(
        statement.on_conflict_do_update(
            index_elements=["user_id"], set_={"updated_at": now, **values}
        )
    )


async def delete_override(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Remove every override of the user."""
    await db.execute(
        delete(LimitOverride).where(LimitOverride.user_id == user_id),
        execution_options={"synchronize_session": False},
    )
