"""Gauges read from the process's state (pool, Redis) rather than counted as things happen."""

from __future__ import annotations

import asyncio
import logging

from zyron.ops import metrics
from zyron.state import AppState

log = logging.getLogger("zyron.ops")

# How stale a worker's pool and Redis gauges may be in a scrape another worker answers.
SAMPLE_SECONDS = 5.0


async def sample(state: AppState) -> None:
    """Read the connection pool's counters and whether Redis answers into their gauges."""
    metrics.sample_pool(state.engine.pool, state.settings.db_max_overflow)
    if state.hub is not None:
        metrics.redis_up().set(1 if await state.hub.ping() else 0)


async def sample_periodically(state: AppState) -> None:
    """Sample every few seconds, for as long as the server runs."""
    while True:
        try:
            await sample(state)
        except Exception as exc:  # a gauge left stale must never stop the server
            log.warning("metrics sample failed", extra={"reason": type(exc).__name__})
        await asyncio.sleep(SAMPLE_SECONDS)
