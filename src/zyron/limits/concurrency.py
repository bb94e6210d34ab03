"""How many replies one user (or guest address) may have running at once."""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from zyron.limits import redis_client
from zyron.limits.rates import RateLimited

log = logging.getLogger("zyron.limits")

ConcurrencyName = Literal["user", "guest"]

# How soon to try again after a refusal: replies take seconds, and a client should not spin.
RETRY_AFTER_SECONDS = 2

# Members are reply ids scored by when they stop counting even if never released (a process
# that died mid-reply): expired ones go first, then the count decides, all in one step.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


@dataclass(frozen=True, slots=True)
class Slot:
    """A running reply's place in its owner's count; give it back when the reply ends."""

    key: str
    member: str


class ConcurrencyLimiter:
    """Count replies in progress per owner, in this process or, with Redis, across replicas."""

    def __init__(
        self,
        *,
        enabled: bool,
        maximum: dict[ConcurrencyName, int],
        redis_url: str | None,
        hold_seconds: float,
    ) -> None:
        self.enabled = enabled
        self._maximum = maximum
        self._hold = hold_seconds  # the longest a reply may run: its slot's expiry
        self._local: dict[str, set[str]] = defaultdict(set)
        self._redis = redis_client(redis_url) if redis_url else None
        self._script = self._redis.register_script(_ACQUIRE) if self._redis else None

    async def acquire(self, name: ConcurrencyName, owner: str) -> Slot | None:
        """Take a slot for a new reply; RateLimited when the owner has the most running."""
        if not self.enabled:
            return None
        limit = self._maximum[name]
        slot = Slot(f"zyron-running:{name}:{owner}", uuid.uuid4().hex)
        taken = await self._take(slot, limit)
        if not taken:
            who = "this account" if name == "user" else "this address"
            raise RateLimited(
                f"{who.capitalize()} already has {limit} replies running; wait for one to end.",
                headers={
                    "Retry-After": str(RETRY_AFTER_SECONDS),
                    "RateLimit-Limit": str(limit),
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(RETRY_AFTER_SECONDS),
                },
            )
        return slot

    async def release(self, slot: Slot) -> None:
        """Give a slot back."""
        if self._redis is None:
            members = self._local.get(slot.key)
            if members is not None:
                members.discard(slot.member)
                if not members:
                    del self._local[slot.key]
            return
        try:
            await self._redis.zrem(slot.key, slot.member)
        except Exception as exc:  # it expires on its own
            log.warning("concurrency release failed", extra={"reason": type(exc).__name__})

    async def _take(self, slot: Slot, limit: int) -> bool:
        if self._script is None:
            members = self._local[slot.key]
            if len(members) >= limit:
                return False
            members.add(slot.member)
            return True
        now = time.time()
        try:
            result = await self._script(
                keys=[slot.key],
                args=[now, now + self._hold, limit, slot.member, int(self._hold) + 60],
            )
        except Exception as exc:  # a limiter that cannot count must not take the API down
            log.warning("concurrency limiter unavailable", extra={"reason": type(exc).__name__})
            return True
        return bool(result)

    async def aclose(self) -> None:
        """Close the Redis connection."""
        if self._redis is not None:
            await self._redis.aclose()
