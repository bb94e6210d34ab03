"""A Redis that stops answering: every limiter lets requests through, soon, and says so;
money budgets refuse until it is back."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import make_settings
from zyron.limits.concurrency import ConcurrencyLimiter
from zyron.limits.rates import RateLimiter
from zyron.limits.usage import GuestUsage, SpendUnavailable

# Far above the limiters' one-second socket timeouts, far below a hung connection's wait.
BOUND_SECONDS = 15


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A URL whose server accepts connections and never answers (a hung Redis)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        listener.close()


def test_every_limiter_fails_open_when_redis_hangs(
    silent_redis: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rates, concurrency and guest usage give up on Redis and let the request through."""
    settings = make_settings(tmp_path, redis_url=silent_redis, rate_limit_enabled=True)

    async def scenario() -> None:
        rates = RateLimiter(settings)
        running = ConcurrencyLimiter(
            enabled=True, maximum={"user": 1, "guest": 1}, redis_url=silent_redis, hold_seconds=60
        )
        usage = GuestUsage(silent_redis)
        try:
            async with asyncio.timeout(BOUND_SECONDS):
                await rates.hit("guest_chat", "198.51.100.1")
                await rates.clear("login_email", "a@example.com")
                slot = await running.acquire("guest", "198.51.100.1")
                assert slot is not None
                assert await running.acquire("guest", "198.51.100.1") is not None  # uncounted
                assert await running.reserve(slot, 100) == 0  # nothing known to be reserved
                assert await usage.used_today("198.51.100.1") == 0
                await usage.add("198.51.100.1", 100)
                # Money is the exception: a budget is not left unenforced, it refuses for now.
                with pytest.raises(SpendUnavailable) as refused:
                    await usage.spent("198.51.100.1")
                assert refused.value.status_code == 503
                assert refused.value.headers["Retry-After"] == "5"
                assert not await rates.check_storage()
        finally:
            await running.aclose()
            await usage.aclose()

    with caplog.at_level(logging.WARNING, logger="zyron.limits"):
        asyncio.run(scenario())
    messages = {record.getMessage() for record in caplog.records}
    assert {
        "rate limiter unavailable",
        "concurrency limiter unavailable",
        "quota reservation unavailable",
        "guest usage unavailable",
        "guest usage not recorded",
    } <= messages
