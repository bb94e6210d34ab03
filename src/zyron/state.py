"""What the application holds for its lifetime, reachable from every request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from zyron.auth.passwords import Passwords
from zyron.auth.verify import TokenVerifier
from zyron.settings import Settings

if TYPE_CHECKING:
    import uuid

    from zyron.chat.generation import Generations
    from zyron.llm.base import Provider
    from zyron.streams.redis_hub import RedisHub


@dataclass
class AppState:
    """The engine, clients and services wired once at start-up."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    hub: RedisHub | None
    http: httpx.AsyncClient
    verifier: TokenVerifier
    passwords: Passwords
    provider: Provider | None
    generations: Generations
    # (issuer, user id) of accounts whose row is known to exist: checked once per process.
    known_users: set[tuple[str, uuid.UUID]] = field(default_factory=set)


def get_state(request: Request) -> AppState:
    """Return the application's state."""
    state: AppState = request.app.state.zyron
    return state
