"""Moving-window rate counters for one process, for when there is no Redis.

`limits`' asyncio memory storage sweeps every key it holds on every hit, each through a
thread hop (`asyncio.to_thread` per key): with a key per client address that is O(clients)
of work per request, which the benchmark profiled at two thirds of a guest chat's CPU
(docs/benchmarks.md). Here a hit touches only its own key, and keys whose hits have all
expired are dropped in a sweep at most once a minute. Redis counters stay on `limits`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from limits import RateLimitItem
from limits.util import WindowStats

SWEEP_EVERY_SECONDS = 60.0


class MovingWindowCounters:
    """The `limits` moving-window strategy's calls (hit, stats, clear), kept in this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._expiry: dict[str, int] = {}  # each key's window in seconds, for the sweep
        self._swept = clock()

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Count a hit unless the window is full; True if it was counted."""
        now = self._clock()
        key = item.key_for(*identifiers)
        hits = self._window(key, item, now)
        if len(hits) >= item.amount:
            return False
        hits.append(now)
        self._maybe_sweep(now)
        return True

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """Return when the oldest hit in the window expires (epoch seconds) and what is left."""
        now = self._clock()
        hits = self._window(item.key_for(*identifiers), item, now)
        oldest = hits[0] if hits else now
        reset = time.time() + (oldest + item.get_expiry() - now)
        return WindowStats(reset, item.amount - len(hits))

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        """Forget a key's hits."""
        key = item.key_for(*identifiers)
        self._hits.pop(key, None)
        self._expiry.pop(key, None)

    def reset(self) -> None:
        """Forget every key."""
        self._hits.clear()
        self._expiry.clear()

    def _window(self, key: str, item: RateLimitItem, now: float) -> deque[float]:
        """The key's hits still inside its window, the expired ones dropped."""
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
            self._expiry[key] = item.get_expiry()
        start = now - item.get_expiry()
        while hits and hits[0] <= start:
            hits.popleft()
        return hits

    def _maybe_sweep(self, now: float) -> None:
        """Drop keys with no hit left in their window, at most once a minute."""
        if now - self._swept < SWEEP_EVERY_SECONDS:
            return
        self._swept = now
        idle = [
            key
            for key, hits in self._hits.items()
            if not hits or hits[-1] <= now - self._expiry[key]
        ]
        for key in idle:
            del self._hits[key]
            del self._expiry[key]
