"""A signed-in user's quotas and budgets: the server's settings, or an administrator's override.

An override stands for one setting, for one user, with the setting's meaning (0: that limit
is off for the user); null is the setting. Set with the admin routes (docs/admin.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.models import LimitOverride
from zyron.llm.prices import NANOS_PER_USD
from zyron.settings import Settings

LimitName = Literal["daily_tokens", "daily_nanousd", "monthly_nanousd", "storage_bytes"]
LIMIT_NAMES: tuple[LimitName, ...] = (
    "daily_tokens",
    "daily_nanousd",
    "monthly_nanousd",
    "storage_bytes",
)
# The setting each override stands for.
SETTINGS: dict[LimitName, str] = {
    "daily_tokens": "USER_DAILY_TOKENS",
    "daily_nanousd": "USER_DAILY_USD",
    "monthly_nanousd": "USER_MONTHLY_USD",
    "storage_bytes": "MAX_STORAGE_BYTES_PER_USER",
}


@dataclass(frozen=True, slots=True)
class UserLimits:
    """What one user is held to; 0: no such limit. `overridden` names the overrides applied."""

    daily_tokens: int
    daily_nanousd: int
    monthly_nanousd: int
    storage_bytes: int
    overridden: frozenset[LimitName] = frozenset()

    def setting(self, name: LimitName) -> str:
        """Name where a limit comes from, for a refusal's sentence."""
        source = SETTINGS[name]
        return f"{source}, overridden for this account" if name in self.overridden else source


def server_limits(settings: Settings) -> UserLimits:
    """The settings' limits for every signed-in user."""
    return UserLimits(
        daily_tokens=settings.user_daily_tokens,
        daily_nanousd=int(settings.user_daily_usd * NANOS_PER_USD),
        monthly_nanousd=int(settings.user_monthly_usd * NANOS_PER_USD),
        storage_bytes=settings.max_storage_bytes_per_user,
    )


def apply(defaults: UserLimits, row: LimitOverride | None) -> UserLimits:
    """The limits with a user's overrides (those not null) in place of the settings'."""
    if row is None:
        return defaults
    values = {name: getattr(defaults, name) for name in LIMIT_NAMES}
    overridden: set[LimitName] = set()
    for name in LIMIT_NAMES:
        value = getattr(row, name)
        if value is not None:
            values[name] = value
            overridden.add(name)
    return UserLimits(**values, overridden=frozenset(overridden))


async def override_of(db: AsyncSession, user_id: uuid.UUID) -> LimitOverride | None:
    """Return the user's override row (under RLS: the user's own, or an administrator's read)."""
    result = await db.execute(select(LimitOverride).where(LimitOverride.user_id == user_id))
    return result.scalar_one_or_none()


async def user_limits(db: AsyncSession, settings: Settings, user_id: uuid.UUID) -> UserLimits:
    """Return what the user is held to: the settings, with their overrides."""
    return apply(server_limits(settings), await override_of(db, user_id))
