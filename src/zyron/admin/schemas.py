"""Request and response bodies of the /admin routes."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field

from zyron.request_body import RequestBody, whole_float

Role = Literal["user", "admin"]

# The longest date range GET /admin/usage reads, and the default one.
MAX_USAGE_DAYS = 366
DEFAULT_USAGE_DAYS = 30
MAX_USERS_PAGE = 200
MAX_TOP_USERS = 100
# The largest override of each kind: far above any real limit, well inside a BIGINT.
MAX_TOKENS_OVERRIDE = 10**15
MAX_USD_OVERRIDE = 1_000_000
MAX_BYTES_OVERRIDE = 2**50  # a pebibyte


def _iso_day(value: object) -> object:
    """Only YYYY-MM-DD is a day: pydantic would also read `0` as the Unix epoch's."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("a day is YYYY-MM-DD")
    return value


# A day in a query: ISO 8601's calendar date only.
IsoDay = Annotated[date, BeforeValidator(_iso_day)]


class UsageTotals(BaseModel):
    """Tokens and cost of a set of replies (a user's, a day's and model's)."""

    replies: int
    input_tokens: int = Field(description="Input neither read from nor written to the cache.")
    output_tokens: int = Field(description="Output, thinking included.")
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    reasoning_tokens: int = Field(description="Of the output, thinking (where reported).")
    total_tokens: int = Field(
        description="Input (cache reads and writes included) and output: what quotas count."
    )
    cost_usd: float = Field(description="What the priced replies cost, in US dollars.")
    cost_nanousd: int = Field(description="The same in nano-dollars, exactly.")
    unpriced_replies: int = Field(
        description="Replies of a model with no price: their cost is not in `cost_usd`."
    )


class AdminUserRead(BaseModel):
    """A user as an administrator sees them: who, role, state and all-time usage."""

    id: uuid.UUID
    email: str | None
    display_name: str | None
    created_at: datetime
    role: Role = Field(
        description="From the account's row. A Supabase user may also be an administrator "
        "by their token's app_metadata, which the server does not store (docs/admin.md)."
    )
    disabled: bool
    disabled_at: datetime | None
    usage: UsageTotals = Field(description="Every reply of the account, all time.")


class UserUpdate(RequestBody):
    """What to change of a user; a field left out stays as it is."""

    role: Role | None = Field(
        default=None,
        description="`admin` or `user`. Demoting (or disabling) the last enabled admin is "
        "`409 admin_lockout`.",
    )
    disabled: bool | None = Field(
        default=None,
        description="true: the account's tokens, logins and refreshes are refused at once, on "
        "every replica (`403 account_disabled`), and its running replies stop. Disabling "
        "your own account is `409 admin_lockout`.",
    )


TokensOverride = Annotated[int, Field(ge=0, le=MAX_TOKENS_OVERRIDE), BeforeValidator(whole_float)]
BytesOverride = Annotated[int, Field(ge=0, le=MAX_BYTES_OVERRIDE), BeforeValidator(whole_float)]
UsdOverride = Annotated[float, Field(ge=0, le=MAX_USD_OVERRIDE)]


class Limits(BaseModel):
    """A user's quotas and budgets. 0: no such limit, as in the settings."""

    daily_tokens: int | None = Field(description="USER_DAILY_TOKENS: tokens per UTC day.")
    daily_usd: float | None = Field(description="USER_DAILY_USD: US dollars per UTC day.")
    monthly_usd: float | None = Field(description="USER_MONTHLY_USD: US dollars per UTC month.")
    storage_bytes: int | None = Field(
        description="MAX_STORAGE_BYTES_PER_USER: bytes of uploaded files."
    )


class LimitsRead(BaseModel):
    """A user's overrides, the server's settings, and what the user is held to."""

    user_id: uuid.UUID
    overrides: Limits = Field(description="What an administrator set; null: the setting.")
    defaults: Limits = Field(description="The server's settings, for every user.")
    effective: Limits = Field(
        description="What the user is held to: the override where set, else the setting. "
        "With RATE_LIMIT_ENABLED=false only `storage_bytes` is enforced."
    )
    updated_at: datetime | None = Field(description="When the overrides last changed.")


class LimitsUpdate(RequestBody):
    """Overrides to set; a field left out stays as it is, null goes back to the setting."""

    daily_tokens: TokensOverride | None = Field(
        default=None, description="Tokens per UTC day (0: no quota); null: USER_DAILY_TOKENS."
    )
    daily_usd: UsdOverride | None = Field(
        default=None,
        description="US dollars per UTC day, counted to the nano-dollar (0: no budget); "
        "null: USER_DAILY_USD.",
    )
    monthly_usd: UsdOverride | None = Field(
        default=None,
        description="US dollars per UTC month (0: no budget); null: USER_MONTHLY_USD.",
    )
    storage_bytes: BytesOverride | None = Field(
        default=None,
        description="Bytes of uploaded files (0: no quota); null: MAX_STORAGE_BYTES_PER_USER.",
    )


class AdminUsageRow(UsageTotals):
    """All users' replies of one model on one day (UTC)."""

    day: date
    model: str
    users: int = Field(description="How many users these replies were of.")


class UserUsage(UsageTotals):
    """One user's replies over the report's range."""

    user_id: uuid.UUID
    email: str | None


class AdminUsageReport(BaseModel):
    """Usage and cost across users, by day and model, from `start` to `end` (UTC days)."""

    start: date
    end: date
    days: list[AdminUsageRow] = Field(description="Newest day first; a row per day and model.")
    top_users: list[UserUsage] = Field(
        description="The users who cost the most over the range (then by tokens)."
    )
    totals: UsageTotals
