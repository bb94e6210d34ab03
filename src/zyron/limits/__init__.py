"""Rate limits, concurrency limits and quotas that make abuse of a public server expensive."""

import redis.asyncio as aioredis

# Every limiter fails open when Redis is away; this bounds how long each waits to learn that,
# so an unanswering Redis slows a chat request by a few seconds instead of hanging it.
REDIS_TIMEOUT_SECONDS = 1.0


def redis_client(url: str) -> "aioredis.Redis":
    """Connect to the limiters' Redis with timeouts, so a dead one fails fast."""
    return aioredis.Redis.from_url(
        url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )
