"""Counting a request against its limits, from a route."""

from __future__ import annotations

from fastapi import Request

from zyron.limits.client_ip import client_ip
from zyron.limits.rates import LimitName
from zyron.state import get_state


async def hit(request: Request, name: LimitName, key: str | None = None) -> None:
    """Count this request against `name`, keyed by `key` or else the client's IP address."""
    state = get_state(request)
    await state.limiter.hit(name, key if key is not None else client_ip(request, state.trusted))
