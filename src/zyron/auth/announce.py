"""Tell every replica that an account changed, so none admits it from a stale cache."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from zyron.state import KNOWN_USERS_TTL_SECONDS

if TYPE_CHECKING:
    from zyron.streams.redis_hub import RedisHub

log = logging.getLogger("zyron.auth")

# What failing to announce can cost: the other replicas' caches expire on their own.
_TRANSIENT = (RedisError, OSError, TimeoutError)


async def announce_account_change(
    hub: RedisHub | None, user_id: uuid.UUID, *, also: list[uuid.UUID] | None = None
) -> bool:
    """Announce a committed change of the account (and forget the mirrors of the replies in
    `also`); False if Redis could not be told, or there is no Redis to tell."""
    if hub is None:
        return False  # one process (or no server): forgetting it here was enough
    try:
        await hub.announce_account_change(user_id)
        if also:
            await hub.forget(also)
    except _TRANSIENT as exc:
        log.warning(
            "account change not announced to other replicas",
            extra={
                "user_id": str(user_id),
                "reason": type(exc).__name__,
                "stale_for_at_most_s": KNOWN_USERS_TTL_SECONDS,
            },
        )
        return False
    return True
