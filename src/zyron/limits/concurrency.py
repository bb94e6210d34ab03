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
# What a running reply reserves against its owner's limits: tokens (the token quota) and
# nano-dollars (the money budgets).
Unit = Literal["tokens", "nanousd"]
UNITS: tuple[Unit, ...] = ("tokens", "nanousd")

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

# A running reply's reservation, in a hash per unit beside its owner's slots; the sum counts
# only members still in the slot set, so a dead process's reservation goes when its slot
# expires.
_RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
local others = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if member ~= ARGV[2] then
    others = others + tonumber(redis.call('HGET', KEYS[2], member) or '0')
  end
end
return others
"""


@dataclass(frozen=True, slots=True)
class Slot:
    """A running reply's place in its owner's count; give it back when the reply ends."""

    key: str
    member: str

    def reservations(self, unit: Unit) -> str:
        """Return the key of the hash of the owner's reservations in `unit`."""
        return f"{self.key}:{unit}"


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
        # Owner key -> running reply -> what it reserved against the owner's limits, by unit.
        self._local: dict[str, dict[str, dict[Unit, int]]] = defaultdict(dict)
        self._redis = redis_client(redis_url) if redis_url else None
        self._script = self._redis.register_script(_ACQUIRE) if self._redis else None
        self._reserve = self._redis.register_script(_RESERVE) if self._redis else None

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
                limit=f"{name}_concurrent",
            )
        return slot

    async def release(self, slot: Slot) -> None:
        """Give a slot back."""
        if self._redis is None:
            members = self._local.get(slot.key)
            if members is not None:
                members.pop(slot.member, None)
                if not members:
                    del self._local[slot.key]
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(slot.key, slot.member)
                for unit in UNITS:
                    pipe.hdel(slot.reservations(unit), slot.member)
                await pipe.execute()
        except Exception as exc:  # it expires on its own
            log.warning("concurrency release failed", extra={"reason": type(exc).__name__})

    async def _take(self, slot: Slot, limit: int) -> bool:
        if self._script is None:
            members = self._local[slot.key]
            if len(members) >= limit:
                return False
            members[slot.member] = {}
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

    async def reserve(self, slot: Slot, amount: int, unit: Unit = "tokens") -> int:
        """Set aside `amount` of `unit` for this reply until its slot is given back.

        Returns what the owner's other running replies have set aside: a quota check counts
        them as used, so replies started together cannot each spend the same remainder.
        """
        if self._reserve is None:
            members = self._local.get(slot.key, {})
            members.setdefault(slot.member, {})[unit] = amount
            return sum(
                held.get(unit, 0) for member, held in members.items() if member != slot.member
            )
        try:
            others = await self._reserve(
                keys=[slot.key, slot.reservations(unit)],
                args=[time.time(), slot.member, amount, int(self._hold) + 60],
            )
        except Exception as exc:  # counting must not take the API down
            log.warning("quota reservation unavailable", extra={"reason": type(exc).__name__})
            return 0
        return int(others)

    async def aclose(self) -> None:
        """Close the Redis connection."""
        if self._redis is not None:
            await self._redis.aclose()
