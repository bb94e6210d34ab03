"""Request rate limits with the `limits` library: moving windows, in memory or in Redis."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from limits.util import WindowStats

from zyron.errors import ZyronError
from zyron.limits import REDIS_TIMEOUT_SECONDS
from zyron.limits.moving_window import MovingWindowCounters
from zyron.settings import Settings

log = logging.getLogger("zyron.limits")

LimitName = Literal[
    "guest_chat", "user_chat", "login_ip", "login_email", "signup_ip", "signup_email", "shared_ip"
]


class RateLimited(ZyronError):
    """Too many requests of one kind from one client within the limit's window."""

    status_code = 429
    code = "rate_limited"
    default_detail = "Too many requests; try again after the time in Retry-After."


@dataclass(frozen=True, slots=True)
class Limit:
    """A named limit, e.g. 20 guest chats per hour per IP."""

    name: LimitName
    item: RateLimitItem
    what: str  # for the error sentence, e.g. "chats as a guest from this address"


def limits_from(settings: Settings) -> dict[LimitName, Limit]:
    """Parse the configured rates (validated in Settings)."""
    return {
        "guest_chat": Limit("guest_chat", parse(settings.guest_chat_rate), "guest chats"),
        "user_chat": Limit("user_chat", parse(settings.user_chat_rate), "chats"),
        "login_ip": Limit("login_ip", parse(settings.login_ip_rate), "sign-in attempts"),
        "login_email": Limit(
            "login_email", parse(settings.login_email_rate), "sign-in attempts for this email"
        ),
        "signup_ip": Limit("signup_ip", parse(settings.signup_ip_rate), "sign-ups"),
        "signup_email": Limit(
            "signup_email", parse(settings.signup_email_rate), "sign-ups for this email"
        ),
        "shared_ip": Limit("shared_ip", parse(settings.shared_read_rate), "share link reads"),
    }


class RateLimiter:
    """Count hits per (limit, key) and refuse past the limit; shared through Redis if set."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        self.limits = limits_from(settings)
        self.backend: Literal["memory", "redis"] = "redis" if settings.redis_url else "memory"
        self._storage: Storage | None = None
        self._strategy: MovingWindowRateLimiter | MovingWindowCounters
        if settings.redis_url:
            self._storage = _storage(settings.redis_url)
            self._strategy = MovingWindowRateLimiter(self._storage)
        else:
            self._strategy = MovingWindowCounters()

    async def hit(self, name: LimitName, key: str) -> None:
        """Count one request against `name` for `key`; RateLimited if it is over the limit."""
        if not self.enabled:
            return
        limit = self.limits[name]
        try:
            # The client's own timeouts apply per step, and a hit takes several: bound them all.
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                allowed = await self._strategy.hit(limit.item, name, key)
                if allowed:
                    return
                stats = await self._strategy.get_window_stats(limit.item, name, key)
        except Exception as exc:  # a limiter that cannot count must not take the API down
            _unavailable(name, exc)
            return
        raise _refusal(name, limit, stats)

    async def clear(self, name: LimitName, key: str) -> None:
        """Forget `key`'s count for `name` (a login that proved the password)."""
        if not self.enabled:
            return
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                await self._strategy.clear(self.limits[name].item, name, key)
        except Exception as exc:
            _unavailable(name, exc)

    async def check_storage(self) -> bool:
        """Tell whether the counters can be reached (for /health)."""
        if self._storage is None:
            return True  # in this process
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                return bool(await self._storage.check())
        except Exception:
            return False

    async def reset(self) -> None:
        """Forget every counter (tests)."""
        if isinstance(self._strategy, MovingWindowCounters):
            self._strategy.reset()
        elif self._storage is not None:
            await self._storage.reset()


def _unavailable(name: LimitName, exc: Exception) -> None:
    log.warning("rate limiter unavailable", extra={"limit": name, "reason": type(exc).__name__})


def _refusal(name: LimitName, limit: Limit, stats: WindowStats) -> RateLimited:
    """Build the 429 for a key over `limit`, with the Retry-After and RateLimit-* headers."""
    reset = max(1, math.ceil(stats.reset_time - time.time()))
    log.info("rate limited", extra={"limit": name})
    return RateLimited(
        f"Too many {limit.what}: at most {limit.item.amount} per "
        f"{_window(limit.item)}. Try again in {reset} s.",
        headers={
            "Retry-After": str(reset),
            "RateLimit-Limit": str(limit.item.amount),
            "RateLimit-Remaining": str(max(0, stats.remaining)),
            "RateLimit-Reset": str(reset),
        },
        limit=name,
    )


def _storage(redis_url: str) -> Storage:
    """Counters in Redis, shared by replicas (without REDIS_URL: zyron.limits.moving_window)."""
    storage = storage_from_string(
        f"async+{redis_url}",
        key_prefix="zyron-limits",
        wrap_exceptions=True,
        # The asyncio storage talks through coredis, whose names these are.
        connect_timeout=REDIS_TIMEOUT_SECONDS,
        stream_timeout=REDIS_TIMEOUT_SECONDS,
    )
    assert isinstance(storage, Storage)  # an async+ URL gives the asyncio storage
    return storage


def _window(item: RateLimitItem) -> str:
    seconds = item.get_expiry()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"
