"""GET /usage: the caller's token usage by day and model, and today's quota."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from zyron.auth.deps import CurrentUser
from zyron.db.deps import UserDb
from zyron.errors import InvalidToken, NotAuthenticated, error_responses
from zyron.limits import usage
from zyron.limits.overrides import user_limits
from zyron.llm.base import USAGE_KINDS
from zyron.llm.prices import usd
from zyron.state import get_state

router = APIRouter(tags=["usage"])


class UsageDay(BaseModel):
    """Tokens one model used on one day (UTC) for the caller's replies."""

    day: date
    model: str
    input_tokens: int = Field(description="Input neither read from nor written to the cache.")
    output_tokens: int = Field(description="Output, thinking included.")
    cache_creation_input_tokens: int = Field(description="Input written to the prompt cache.")
    cache_read_input_tokens: int = Field(description="Input read from the prompt cache.")
    reasoning_tokens: int = Field(description="Of the output, thinking (where reported).")
    cost_usd: float | None = Field(
        description="What the replies cost in US dollars; null if any had no price."
    )
    cost_nanousd: int | None = Field(description="The same in nano-dollars, exactly.")
    unpriced_replies: int = Field(description="Replies of a model with no price.")
    replies: int


class Quota(BaseModel):
    """Today's token quota (null when there is none)."""

    daily_tokens: int | None
    used_today: int
    remaining_today: int | None
    resets_in_seconds: int


class UsageReport(BaseModel):
    """What GET /usage answers."""

    days: list[UsageDay] = Field(description="Newest day first; a row per day and model.")
    quota: Quota


@router.get("/usage", responses=error_responses(NotAuthenticated, InvalidToken))
async def get_usage(
    request: Request,
    principal: CurrentUser,
    db: UserDb,
    days: Annotated[int, Query(ge=1, le=366, description="How many days back.")] = 30,
) -> UsageReport:
    """Return the caller's token usage by day and model, and where they stand today."""
    settings = get_state(request).settings
    rows = await usage.by_day(db, principal.user_id, days)
    used = await usage.used_today(db, principal.user_id)
    limits = await user_limits(db, settings, principal.user_id)  # an override, if any
    limit = limits.daily_tokens if settings.rate_limit_enabled else 0
    return UsageReport(
        days=[
            UsageDay(
                day=row.day,
                model=row.model,
                replies=row.replies,
                cost_usd=None if row.unpriced_replies else usd(row.cost_nanousd),
                cost_nanousd=None if row.unpriced_replies else row.cost_nanousd,
                unpriced_replies=row.unpriced_replies,
                **{kind: getattr(row, kind) for kind in USAGE_KINDS},
            )
            for row in rows
        ],
        quota=Quota(
            daily_tokens=limit or None,
            used_today=used,
            remaining_today=max(0, limit - used) if limit else None,
            resets_in_seconds=usage.seconds_to_midnight(),
        ),
    )
