"""Replies running at once per owner: in one process, and across instances through Redis."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.limits.test_rate_limits import _address, _assert_limited, _from
from tests.redis_server import RedisServer
from tests.support import LiveServer, signup, stream_chat
from zyron.limits.concurrency import ConcurrencyLimiter
from zyron.limits.rates import RateLimited


def _limiter(redis_url: str | None, hold: float = 60) -> ConcurrencyLimiter:
    return ConcurrencyLimiter(
        enabled=True, maximum={"user": 2, "guest": 1}, redis_url=redis_url, hold_seconds=hold
    )


async def _scenario(first: ConcurrencyLimiter, second: ConcurrencyLimiter) -> None:
    owner = uuid.uuid4().hex
    one = await first.acquire("user", owner)
    two = await second.acquire("user", owner)
    with pytest.raises(RateLimited) as refused:
        await first.acquire("user", owner)
    assert refused.value.headers["RateLimit-Limit"] == "2"
    assert refused.value.headers["Retry-After"] == "2"
    assert await second.acquire("user", uuid.uuid4().hex) is not None  # another owner
    assert one is not None
    assert two is not None
    await second.release(one)
    assert await first.acquire("user", owner) is not None  # a slot came back


def test_in_memory() -> None:
    """One process counts its own replies, and gives slots back."""
    limiter = _limiter(None)
    asyncio.run(_scenario(limiter, limiter))


def test_two_instances_share_the_count_through_redis(redis_server: RedisServer) -> None:
    """Two limiters on one Redis (two replicas) enforce one limit together."""

    async def run() -> None:
        first, second = _limiter(redis_server.url), _limiter(redis_server.url)
        try:
            await _scenario(first, second)
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(run())


async def _reservations(first: ConcurrencyLimiter, second: ConcurrencyLimiter) -> None:
    owner = uuid.uuid4().hex
    one = await first.acquire("user", owner)
    two = await second.acquire("user", owner)
    assert one is not None
    assert two is not None
    assert await first.reserve(one, 3000) == 0  # nothing else running for this owner
    assert await second.reserve(two, 500) == 3000  # the first holds 3,000
    other = await first.acquire("user", uuid.uuid4().hex)
    assert other is not None
    assert await first.reserve(other, 10) == 0  # another owner's are not counted
    await second.release(one)
    assert await first.reserve(two, 700) == 0  # given back with its slot


def test_reservations_in_memory() -> None:
    """A running reply's reserved tokens count for its owner's next request until it ends."""
    limiter = _limiter(None)
    asyncio.run(_reservations(limiter, limiter))


def test_reservations_shared_through_redis(redis_server: RedisServer) -> None:
    """Two replicas see each other's reservations, and a dead one's expire with its slot."""

    async def run() -> None:
        first, second = _limiter(redis_server.url), _limiter(redis_server.url, hold=0.5)
        try:
            await _reservations(first, second)
            owner = uuid.uuid4().hex
            dying = await second.acquire("user", owner)  # held 0.5 s, never given back
            assert dying is not None
            await second.reserve(dying, 4000)
            alive = await first.acquire("user", owner)
            assert alive is not None
            assert await first.reserve(alive, 1) == 4000
            await asyncio.sleep(0.7)
            assert await first.reserve(alive, 1) == 0
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(run())


def test_slots_of_a_dead_process_expire(redis_server: RedisServer) -> None:
    """A slot never given back (its process died) stops counting after the hold time."""

    async def run() -> None:
        limiter = _limiter(redis_server.url, hold=0.5)
        try:
            owner = uuid.uuid4().hex
            await limiter.acquire("guest", owner)
            with pytest.raises(RateLimited):
                await limiter.acquire("guest", owner)
            await asyncio.sleep(0.7)
            assert await limiter.acquire("guest", owner) is not None
        finally:
            await limiter.aclose()

    asyncio.run(run())


def test_running_guest_reply_blocks_a_second_from_the_address(
    limited: LiveServer, upstream: FakeAnthropic
) -> None:
    """GUEST_MAX_CONCURRENT=1: a second guest chat while one runs is refused at once."""
    address = _address()
    upstream.enqueue(TextReply(first_delay=1.5), TextReply())
    done: list[str] = []

    def slow() -> None:
        with limited.client() as http:
            events = stream_chat(http, {"message": "slow"}, _from(address))
            done.append(events[-1].event)

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 5
    while not upstream.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    with limited.client() as http:
        response = http.post("/chat", json={"message": "again"}, headers=_from(address))
        _assert_limited(response, 1)
        assert "already has 1 replies running" in response.json()["detail"]
        stream_chat(http, {"message": "other"}, _from(_address()))  # another address
    thread.join(10)
    assert done == ["done"]


def test_a_refused_request_gives_its_slot_back(
    limited: LiveServer, upstream: FakeAnthropic
) -> None:
    """USER_MAX_CONCURRENT=1: a request that fails (404) does not keep the user's slot."""
    with limited.client() as http:
        alice = signup(http)
        missing = http.post(
            "/chat",
            json={"message": "hi", "session_id": str(uuid.uuid4())},
            headers=alice.headers,
        )
        assert missing.status_code == 404
        upstream.enqueue(TextReply())
        assert stream_chat(http, {"message": "hi"}, alice.headers)[-1].event == "done"
