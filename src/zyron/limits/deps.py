"""Counting a request against its limits, from a route."""

from __future__ import annotations

from fastapi import Request

from zyron.limits.rates import LimitName
from zyron.state import get_state


async def hit(request: Request, name: LimitName, key: str | None = None) -> None:
    """Count this request against `name`, keyed by `key` or else the client's IP address."""
    state = get_state(request)
    await state.limiter.hit(name, key if key is not None else state.clients.key(request))


async def clear(request: Request, name: LimitName, key: str) -> None:
    """Forget `key`'s count for `name`."""
    await get_state(request).limiter.clear(name, key)
