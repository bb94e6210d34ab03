"""Money budgets: what a user or a guest address may spend per day and per month (docs/costs.md).

Checked before the model is called, against the request's worst case (its prompt at the
dearest input price, and its whole reply budget), with what the owner's running replies have
reserved counted as spent, as the token quotas are.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from zyron.errors import ZyronError
from zyron.limits.overrides import UserLimits, server_limits
from zyron.limits.usage import QuotaExceeded, seconds_to_midnight
from zyron.llm.prices import NANOS_PER_USD, Prices
from zyron.settings import Settings

Period = Literal["day", "month"]


class UnpricedModel(ZyronError):
    """A money budget applies, and the model has no price: its cost cannot be counted."""

    status_code = 422
    code = "unpriced_model"
    default_detail = "This model has no price, and a money budget applies."


@dataclass(frozen=True, slots=True)
class Budget:
    """One limit: nano-dollars per period, and the setting that sets it."""

    period: Period
    nanos: int
    setting: str
    overridden: bool = False  # an administrator set it for this user (docs/admin.md)

    @property
    def source(self) -> str:
        """Where the budget comes from, for a refusal's sentence."""
        return f"{self.setting}, overridden for this account" if self.overridden else self.setting


@dataclass(frozen=True, slots=True)
class Spent:
    """What an owner's replies cost so far, this UTC day and this UTC month, in nano-dollars."""

    day: int
    month: int

    def of(self, period: Period) -> int:
        """The spend of one period."""
        return self.day if period == "day" else self.month


def budgets(
    settings: Settings, who: Literal["user", "guest"], limits: UserLimits | None = None
) -> list[Budget]:
    """The money budgets that apply to users (`limits`: one user's) or to guests; none when
    limits are off."""
    if not settings.rate_limit_enabled:
        return []
    if who == "user":
        mine = limits or server_limits(settings)
        daily, monthly, prefix = mine.daily_nanousd, mine.monthly_nanousd, "USER"
        overridden = mine.overridden
    else:
        daily = int(settings.guest_daily_usd * NANOS_PER_USD)
        monthly = int(settings.guest_monthly_usd * NANOS_PER_USD)
        prefix, overridden = "GUEST", frozenset()
    found = []
    if daily:
        found.append(Budget("day", daily, f"{prefix}_DAILY_USD", "daily_nanousd" in overridden))
    if monthly:
        found.append(
            Budget("month", monthly, f"{prefix}_MONTHLY_USD", "monthly_nanousd" in overridden)
        )
    return found


def worst_case_cost(
    prices: Prices | None, prompt_tokens: int, max_tokens: int, model: str, applying: list[Budget]
) -> int:
    """The most a request can cost: every prompt token at the dearest input price (a cache
    write costs more than plain input), and the whole reply budget at the output price."""
    if prices is None:
        settings = ", ".join(budget.setting for budget in applying)
        raise UnpricedModel(
            f"{model} has no price, and a money budget applies ({settings}): what it would "
            "cost cannot be counted. Choose a priced model (GET /models), or give it `prices` "
            "in MODELS_FILE (docs/costs.md)."
        )
    dearest = max(prices.input, prices.cache_write_5m, prices.cache_write_1h)
    return prompt_tokens * dearest + max_tokens * prices.output


def check_budgets(
    spent: Spent, needed: int, applying: list[Budget], who: str, *, reserved: int = 0
) -> None:
    """Refuse a request whose worst case would take the owner past a budget, naming it."""
    for budget in applying:
        used = spent.of(budget.period)
        if used + reserved + needed <= budget.nanos:
            continue
        reset = seconds_to_midnight() if budget.period == "day" else seconds_to_next_month()
        when = "midnight UTC" if budget.period == "day" else "the start of next month (UTC)"
        running = f", and replies running now may cost {_usd(reserved)} more" if reserved else ""
        raise QuotaExceeded(
            f"{who} has spent {_usd(used)} of its {_usd(budget.nanos)} "
            f"{'daily' if budget.period == 'day' else 'monthly'} budget ({budget.source})"
            f"{running}; this request could cost up to {_usd(needed)}. The budget resets at "
            f"{when}, in {reset} s.",
            headers={"Retry-After": str(reset)},
            limit=budget.setting.lower(),
        )


def month_start(day: date) -> date:
    """The first day of `day`'s month."""
    return day.replace(day=1)


def seconds_to_next_month() -> int:
    """Return the seconds until the budget month changes (UTC)."""
    now = datetime.now(UTC)
    days = calendar.monthrange(now.year, now.month)[1]
    start = datetime.combine(month_start(now.date()), datetime.min.time(), UTC)
    return max(1, math.ceil((start + timedelta(days=days) - now).total_seconds()))


def _usd(nanos: int) -> str:
    """Nano-dollars for a sentence: cents, or more digits where cents would say nothing."""
    dollars = nanos / NANOS_PER_USD
    return f"${dollars:.2f}" if dollars >= 0.01 or nanos == 0 else f"${dollars:.6f}"
