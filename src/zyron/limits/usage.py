"""Token usage: recorded per user, day and model in the database; per guest address in the
limiter's store (nothing of a guest's conversation is kept). Quotas are checked against it."""

from __future__ import annotations

import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Row, case, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.models import UsageDaily
from zyron.errors import ZyronError
from zyron.limits import redis_client
from zyron.llm.base import USAGE_KINDS, TokenUsage

log = logging.getLogger("zyron.limits")

GUEST_KEY_TTL_SECONDS = 2 * 86400
GUEST_MONTH_TTL_SECONDS = 32 * 86400  # as long as the monthly budget needs


class SpendUnavailable(ZyronError):
    """A guest's spend cannot be read (Redis is away), and a money budget applies."""

    status_code = 503
    code = "budget_unavailable"
    default_detail = (
        "What this address has spent cannot be read right now, and a money budget applies; "
        "try again in a few seconds."
    )


class QuotaExceeded(ZyronError):
    """The day's token quota would be exceeded by this request."""

    status_code = 429
    code = "quota_exceeded"
    default_detail = "The daily token quota is used up; it resets at midnight UTC."


def today() -> date:
    """Return the current UTC day, the unit of quotas."""
    return datetime.now(UTC).date()


def seconds_to_midnight() -> int:
    """Return the seconds until the quota day changes."""
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, math.ceil((midnight - now).total_seconds()))


def check_quota(
    used: int, needed: int, quota: int, who: str, *, reserved: int = 0, limit: str
) -> None:
    """Refuse a request whose worst case (prompt + max reply) would pass the quota.

    `reserved` is what replies of the same owner still running may yet use; `limit` names
    the quota in /metrics (user_daily_tokens, guest_daily_tokens).
    """
    if quota and used + reserved + needed > quota:
        reset = seconds_to_midnight()
        running = f", and replies running now may use {reserved} more" if reserved else ""
        raise QuotaExceeded(
            f"{who} has used {used} of {quota} tokens today{running}; this request could use "
            f"up to {needed}. The quota resets at midnight UTC, in {reset} s.",
            headers={"Retry-After": str(reset)},
            limit=limit,
        )


async def record(
    db: AsyncSession, user_id: uuid.UUID, model: str, used: TokenUsage, cost: int | None
) -> None:
    """Add one reply's tokens, by kind, and its cost to the user's total for today and model.

    An unpriced reply (`cost` None) is counted apart: the day's cost then shows as unknown
    rather than too small, while budgets still count everything that was priced.
    """
    values = {
        "user_id": user_id,
        "day": today(),
        "model": model[:200],
        **{kind: getattr(used, kind) or 0 for kind in USAGE_KINDS},
        "cost_nanousd": cost or 0,
        "unpriced_replies": 1 if cost is None else 0,
        "replies": 1,
    }
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(UsageDaily).values(**values)
    added = {
        kind: getattr(UsageDaily, kind) + getattr(statement.excluded, kind) for kind in USAGE_KINDS
    }
    await db.execute(
        statement.on_conflict_do_update(
            index_elements=["user_id", "day", "model"],
            set_={
                **added,
                "cost_nanousd": UsageDaily.cost_nanousd + statement.excluded.cost_nanousd,
                "unpriced_replies": UsageDaily.unpriced_replies
                + statement.excluded.unpriced_replies,
                "replies": UsageDaily.replies + 1,
            },
        )
    )


async def used_today(db: AsyncSession, user_id: uuid.UUID) -> int:
    """Return the tokens the user's replies used today, all models and kinds together.

    The cache's reads and writes count as the prompt they are: caching lowers the price of a
    prompt, not its size.
    """
    total = (
        UsageDaily.input_tokens
        + UsageDaily.cache_creation_input_tokens
        + UsageDaily.cache_read_input_tokens
        + UsageDaily.output_tokens
    )
    result = await db.execute(
        select(func.coalesce(func.sum(total), 0)).where(
            UsageDaily.user_id == user_id, UsageDaily.day == today()
        )
    )
    return int(result.scalar_one())


async def spent(db: AsyncSession, user_id: uuid.UUID) -> tuple[int, int]:
    """Return the nano-dollars the user's replies cost today and this month (UTC).

    Unpriced replies count as nothing here: a money budget refuses those models before they
    run, so such replies predate the budget.
    """
    day = today()
    first = day.replace(day=1)
    cost = UsageDaily.cost_nanousd
    result = await db.execute(
        select(
            func.coalesce(func.sum(case((UsageDaily.day == day, cost), else_=0)), 0),
            func.coalesce(func.sum(cost), 0),
        ).where(UsageDaily.user_id == user_id, UsageDaily.day >= first)
    )
    today_nanos, month_nanos = result.one()
    return int(today_nanos), int(month_nanos)


async def by_day(db: AsyncSession, user_id: uuid.UUID, days: int) -> Sequence[Row[Any]]:
    """Return the user's usage for the last `days` days, newest first, a row per model."""
    since = today() - timedelta(days=days - 1)
    result = await db.execute(
        select(
            UsageDaily.day,
            UsageDaily.model,
            *(getattr(UsageDaily, kind) for kind in USAGE_KINDS),
            UsageDaily.cost_nanousd,
            UsageDaily.unpriced_replies,
            UsageDaily.replies,
        )
        .where(UsageDaily.user_id == user_id, UsageDaily.day >= since)
        .order_by(UsageDaily.day.desc(), UsageDaily.model)
    )
    return result.all()


class GuestUsage:
    """Tokens used today per guest address: in this process, or in Redis for all replicas."""

    def __init__(self, redis_url: str | None) -> None:
        self._redis = redis_client(redis_url) if redis_url else None
        # Today's counts only: a new day replaces the table, so it never outgrows one day.
        self._day = today()
        self._local: dict[str, int] = defaultdict(int)
        self._month = today().isoformat()[:7]
        self._months: dict[str, int] = defaultdict(int)  # this month's spend per address

    async def used_today(self, address: str) -> int:
        """Return the tokens this address's guest replies used today."""
        if self._redis is None:
            return self._today().get(address, 0)
        try:
            value = await self._redis.get(self._key(address))
        except Exception as exc:  # counting must not take the API down
            log.warning("guest usage unavailable", extra={"reason": type(exc).__name__})
            return 0
        return int(value or 0)

    async def spent(self, address: str) -> tuple[int, int]:
        """Return the nano-dollars this address's guest replies cost today and this month."""
        if self._redis is None:
            this_month = self._this_month().get(self._spend_key(address, month=True), 0)
            return self._today().get(self._spend_key(address), 0), this_month
        try:
            day, month = await self._redis.mget(
                self._spend_key(address), self._spend_key(address, month=True)
            )
        except Exception as exc:
            # A money budget must not go unenforced while Redis is away: refuse for now.
            log.warning("guest spend unavailable", extra={"reason": type(exc).__name__})
            raise SpendUnavailable(headers={"Retry-After": "5"}) from exc
        return int(day or 0), int(month or 0)

    async def add(self, address: str, tokens: int, cost: int | None = None) -> None:
        """Add a guest reply's tokens, and what it cost, to the address's totals.

        Kept a day for the token quota and a month for the monthly budget; nothing of the
        conversation is kept, only these counts.
        """
        cost = cost or 0
        if tokens <= 0 and cost <= 0:
            return
        if self._redis is None:
            self._today()[address] += tokens
            self._today()[self._spend_key(address)] += cost
            self._this_month()[self._spend_key(address, month=True)] += cost
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incrby(self._key(address), tokens)
                pipe.expire(self._key(address), GUEST_KEY_TTL_SECONDS)
                if cost:
                    pipe.incrby(self._spend_key(address), cost)
                    pipe.expire(self._spend_key(address), GUEST_KEY_TTL_SECONDS)
                    pipe.incrby(self._spend_key(address, month=True), cost)
                    pipe.expire(self._spend_key(address, month=True), GUEST_MONTH_TTL_SECONDS)
                await pipe.execute()
        except Exception as exc:
            log.warning("guest usage not recorded", extra={"reason": type(exc).__name__})

    def _this_month(self) -> dict[str, int]:
        if self._month != (month := today().isoformat()[:7]):
            self._month, self._months = month, defaultdict(int)  # a new month starts again
        return self._months

    def _spend_key(self, address: str, *, month: bool = False) -> str:
        period = today().isoformat()[:7] if month else today().isoformat()
        return f"zyron-spend:{period}:{address}"

    def _today(self) -> dict[str, int]:
        if self._day != (day := today()):
            self._day, self._local = day, defaultdict(int)
        return self._local

    def _key(self, address: str) -> str:
        return f"zyron-usage:{today().isoformat()}:{address}"

    async def aclose(self) -> None:
        """Close the Redis connection."""
        if self._redis is not None:
            await self._redis.aclose()
