"""The in-process moving-window counters used when there is no Redis."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse

from zyron.limits import moving_window
from zyron.limits.moving_window import MovingWindowCounters


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_window_admits_its_amount_then_frees_each_hit_as_it_ages(clock: Clock) -> None:
    """Three per minute: the fourth is refused until the first hit is a minute old."""
    counters = MovingWindowCounters(clock)
    item = parse("3/minute")

    async def run() -> None:
        for offset in (0, 10, 20):
            clock.now = 1000.0 + offset
            assert await counters.hit(item, "guest_chat", "10.0.0.1")
        clock.now = 1030.0
        assert not await counters.hit(item, "guest_chat", "10.0.0.1")
        assert await counters.hit(item, "guest_chat", "10.0.0.2")  # another key
        stats = await counters.get_window_stats(item, "guest_chat", "10.0.0.1")
        assert stats.remaining == 0
        clock.now = 1060.5  # the first hit left the window
        assert await counters.hit(item, "guest_chat", "10.0.0.1")
        assert not await counters.hit(item, "guest_chat", "10.0.0.1")
        await counters.clear(item, "guest_chat", "10.0.0.1")
        assert await counters.hit(item, "guest_chat", "10.0.0.1")

    asyncio.run(run())


def test_keys_whose_hits_expired_are_swept(clock: Clock) -> None:
    """A client gone for longer than its window leaves nothing behind after the next sweep."""
    counters = MovingWindowCounters(clock)
    item = parse("20/hour")

    async def run() -> None:
        for n in range(100):
            await counters.hit(item, "guest_chat", f"10.0.0.{n}")
        clock.now += 3600 + moving_window.SWEEP_EVERY_SECONDS
        await counters.hit(item, "guest_chat", "10.0.1.1")
        assert len(counters._hits) == 1

    asyncio.run(run())
