"""What the application holds for its lifetime, reachable from every request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from cachetools import TTLCache
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from zyron.auth.passwords import Passwords
from zyron.auth.verify import TokenVerifier
from zyron.settings import Settings

if TYPE_CHECKING:
    import uuid

    from zyron.auth.principal import KnownAccount
    from zyron.chat.generation import Generations
    from zyron.files.storage import Storage
    from zyron.limits.client_ip import ClientAddresses
    from zyron.limits.concurrency import ConcurrencyLimiter
    from zyron.limits.rates import RateLimiter
    from zyron.limits.usage import GuestUsage
    from zyron.llm.registry import Registry
    from zyron.streams.redis_hub import RedisHub


KNOWN_USERS_MAX = 100_000
KNOWN_USERS_TTL_SECONDS = 300


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
    models: Registry
    generations: Generations
    limiter: RateLimiter
    running: ConcurrencyLimiter
    guest_usage: GuestUsage
    clients: ClientAddresses  # trusted proxies, and how addresses are keyed
    storage: Storage  # file bytes: local directory or S3-compatible (zyron.files.storage)
    # (issuer, user id) of accounts whose row is known to exist, with the row's role and
    # disabled mark (a change is announced, and forgotten at once). Bounded, so a server that
    # sees millions of users keeps a constant size; a TTL, so an account deleted elsewhere
    # stops being admitted within minutes even while its tokens are still valid.
    known_users: TTLCache[tuple[str, uuid.UUID], KnownAccount] = field(
        default_factory=lambda: TTLCache(maxsize=KNOWN_USERS_MAX, ttl=KNOWN_USERS_TTL_SECONDS)
    )
    # Bumped whenever accounts are forgotten (a deletion, here or on another replica): a check
    # that began before must not put its now stale answer back in known_users.
    forgotten: int = 0
    # Set by zyron.serving on SIGTERM: /health answers 503 so the load balancer sends nothing
    # new, while running replies finish (docs/deploy.md).
    draining: bool = False


def get_state(request: Request) -> AppState:
    """Return the application's state."""
    state: AppState = request.app.state.zyron
    return state
