"""The Redis stream hub against a real Redis: mirroring, resume, expiry and cancels."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.redis_server import RedisServer, RedisUnavailable
from tests.support import free_port
from zyron.streams.events import StreamEvent
from zyron.streams.redis_hub import (
    ACCOUNTS_CHANNEL,
    CANCEL_CHANNEL,
    RedisHub,
    RedisHubUnavailable,
    reply_key,
)

WAIT = 30.0  # generous bound for anything that should happen "soon"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A throwaway Redis of this test's own, which it may stop and restart."""
    try:
        server = RedisServer.start(throwaway=True)
    except RedisUnavailable as exc:
        pytest.skip(f"no redis-server to stop and restart: {exc}")
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def running_hub(url: str, **options: Any) -> AsyncIterator[RedisHub]:
    """A started hub, closed at the end of the block."""
    hub = RedisHub.from_url(url, **options)
    await hub.start()
    try:
        yield hub
    finally:
        await asyncio.wait_for(hub.close(), WAIT)


@asynccontextmanager
async def raw_client(url: str) -> AsyncIterator[Redis]:
    """A plain client to look at what the hub wrote."""
    client = Redis.from_url(url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


def reply_events(chunks: list[str], *, end: bool = True) -> list[StreamEvent]:
    """The events of a reply made of `chunks`: session, deltas with text offsets, done."""
    events = [StreamEvent(0, "session", {"saved": True})]
    length = 0
    for chunk in chunks:
        length += len(chunk)
        events.append(StreamEvent(length, "delta", {"text": chunk}))
    if end:
        events.append(StreamEvent(length + 1, "done", {"stop_reason": "end_turn"}))
    return events


async def collect(stream: AsyncIterator[StreamEvent | None]) -> list[StreamEvent | None]:
    """Read a follow() to its end, bounded."""

    async def read() -> list[StreamEvent | None]:
        return [item async for item in stream]

    return await asyncio.wait_for(read(), WAIT)


async def eventually(check: Callable[[], bool | Awaitable[bool]], interval: float = 0.05) -> None:
    """Wait until `check` holds; fail after WAIT seconds."""
    async with asyncio.timeout(WAIT):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(interval)


def test_follow_from_the_start_gets_every_event_once_in_order(redis_server: RedisServer) -> None:
    """Many events (several pages) come back exactly once, in order."""
    events = reply_events([f"w{i} " for i in range(1200)])

    async def scenario() -> None:
        async with running_hub(redis_server.url) as hub:
            message_id = uuid.uuid4()
            for event in events:
                hub.publish(message_id, event)
            await hub.flush()
            assert await collect(hub.follow(message_id, after=-1, idle=5)) == events

    asyncio.run(scenario())


def test_follow_from_a_middle_id_gets_exactly_the_rest(redis_server: RedisServer) -> None:
    """Resuming after an event's id yields only the events after it."""
    events = reply_events(["Hello", ", ", "world", "!"])

    async def scenario() -> None:
        async with running_hub(redis_server.url) as hub:
            message_id = uuid.uuid4()
            for event in events:
                hub.publish(message_id, event)
            await hub.flush()
            for index, event in enumerate(events):
                rest = await collect(hub.follow(message_id, after=event.id, idle=5))
                assert rest == events[index + 1 :]

    asyncio.run(scenario())


def test_a_follower_gets_live_events_and_stops_at_the_terminal_event(
    redis_server: RedisServer,
) -> None:
    """A follower attached before the reply goes on sees each new event, then ends."""
    events = reply_events([f"t{i} " for i in range(50)])

    async def scenario() -> None:
        async with (
            running_hub(redis_server.url) as producer,
            running_hub(redis_server.url) as other_replica,
        ):
            message_id = uuid.uuid4()
            producer.publish(message_id, events[0])
            await producer.flush()
            received: list[StreamEvent | None] = []

            async def follow() -> None:
                async for item in other_replica.follow(message_id, after=-1, idle=5):
                    received.append(item)

            follower = asyncio.create_task(follow())
            await eventually(lambda: events[0] in received)
            for event in events[1:]:
                producer.publish(message_id, event)
                await asyncio.sleep(0.001)
            await asyncio.wait_for(follower, WAIT)
            assert [item for item in received if item is not None] == events

    asyncio.run(scenario())


def test_idle_follow_yields_none_then_the_next_event(redis_server: RedisServer) -> None:
    """With nothing new for `idle` seconds follow() yields None (the caller pings)."""
    session, delta, done = reply_events(["abc"])

    async def scenario() -> None:
        async with running_hub(redis_server.url) as hub:
            message_id = uuid.uuid4()
            hub.publish(message_id, session)
            await hub.flush()
            stream = hub.follow(message_id, after=session.id, idle=0.1)
            assert await asyncio.wait_for(anext(stream), WAIT) is None
            assert await asyncio.wait_for(anext(stream), WAIT) is None
            hub.publish(message_id, delta)
            hub.publish(message_id, done)
            rest = await collect(stream)
            assert [item for item in rest if item is not None] == [delta, done]

    asyncio.run(scenario())


def test_the_key_expires_after_the_terminal_event(redis_server: RedisServer) -> None:
    """A live reply's key has a long safety TTL; the terminal event sets the retention."""

    async def scenario() -> None:
        async with (
            running_hub(redis_server.url, retention_seconds=60, live_ttl_seconds=3600) as hub,
            raw_client(redis_server.url) as raw,
        ):
            message_id = uuid.uuid4()
            session, delta, done = reply_events(["abc"])
            hub.publish(message_id, session)
            hub.publish(message_id, delta)
            await hub.flush()
            assert 60 < await raw.ttl(reply_key(message_id)) <= 3600
            hub.publish(message_id, done)
            await hub.flush()
            assert 0 < await raw.ttl(reply_key(message_id)) <= 60

    asyncio.run(scenario())


def test_follow_ends_when_the_reply_expires(redis_server: RedisServer) -> None:
    """Once the retention has passed the reply is gone: exists() is false, follow() ends."""

    async def scenario() -> None:
        async with running_hub(redis_server.url, retention_seconds=1) as hub:
            message_id = uuid.uuid4()
            for event in reply_events(["abc"]):
                hub.publish(message_id, event)
            await hub.flush()
            assert await hub.exists(message_id)
            await eventually(lambda: _not(hub.exists(message_id)), interval=0.2)
            assert await collect(hub.follow(message_id, after=-1, idle=5)) == []

    asyncio.run(scenario())


def test_a_live_follower_stops_when_the_key_disappears(redis_server: RedisServer) -> None:
    """A follower waiting on a reply whose key vanishes ends instead of pinging forever."""

    async def scenario() -> None:
        async with running_hub(redis_server.url) as hub, raw_client(redis_server.url) as raw:
            message_id = uuid.uuid4()
            session = reply_events([], end=False)[0]
            hub.publish(message_id, session)
            await hub.flush()
            stream = hub.follow(message_id, after=-1, idle=0.1)
            assert await asyncio.wait_for(anext(stream), WAIT) == session
            assert await asyncio.wait_for(anext(stream), WAIT) is None
            await raw.delete(reply_key(message_id))
            assert all(item is None for item in await collect(stream))

    asyncio.run(scenario())


def test_follow_on_an_unknown_reply_ends_at_once(redis_server: RedisServer) -> None:
    """Nothing to follow: no events, no pings."""

    async def scenario() -> None:
        async with running_hub(redis_server.url) as hub:
            assert await collect(hub.follow(uuid.uuid4(), after=-1, idle=60)) == []
            assert await collect(hub.follow(uuid.uuid4(), after=7, idle=60)) == []

    asyncio.run(scenario())


def test_exists_tells_a_mirrored_reply(redis_server: RedisServer) -> None:
    """exists() is false before the first event is written and true after."""

    async def scenario() -> None:
        async with running_hub(redis_server.url) as hub:
            message_id = uuid.uuid4()
            assert not await hub.exists(message_id)
            hub.publish(message_id, reply_events([], end=False)[0])
            await hub.flush()
            assert await hub.exists(message_id)
            assert not await hub.exists(uuid.uuid4())
            assert await hub.ping()

    asyncio.run(scenario())


def test_a_repeated_event_id_is_written_once(redis_server: RedisServer) -> None:
    """An entry already written (a retried batch) is not duplicated and breaks nothing."""
    session, delta, done = reply_events(["abcd"])

    async def scenario() -> None:
        async with running_hub(redis_server.url) as hub:
            message_id = uuid.uuid4()
            for event in (session, delta, delta, done):
                hub.publish(message_id, event)
            await hub.flush()
            assert await collect(hub.follow(message_id, after=-1, idle=5)) == [
                session,
                delta,
                done,
            ]

    asyncio.run(scenario())


def test_a_reply_redis_refuses_is_dropped_whole_not_left_with_a_gap(
    redis_server: RedisServer,
) -> None:
    """When a write is refused the mirror is deleted and the rest skipped, so no gap shows."""
    events = reply_events(["one ", "two ", "three"])

    async def scenario() -> None:
        async with running_hub(redis_server.url) as hub, raw_client(redis_server.url) as raw:
            message_id, healthy = uuid.uuid4(), uuid.uuid4()
            await raw.set(reply_key(message_id), "not a stream")  # XADD now fails: WRONGTYPE
            hub.publish(message_id, events[0])
            hub.publish(healthy, events[0])
            await hub.flush()
            for event in events[1:]:
                hub.publish(message_id, event)
                hub.publish(healthy, event)
            await hub.flush()
            assert not await hub.exists(message_id)
            assert await collect(hub.follow(message_id, after=-1, idle=5)) == []
            # Other replies are untouched.
            assert await collect(hub.follow(healthy, after=-1, idle=5)) == events

    asyncio.run(scenario())


def test_a_cancel_requested_on_one_replica_reaches_the_other(redis_server: RedisServer) -> None:
    """request_cancel() on one hub calls the on_cancel callbacks of every hub."""

    async def scenario() -> None:
        async with (
            running_hub(redis_server.url) as replica_a,
            running_hub(redis_server.url) as replica_b,
            raw_client(redis_server.url) as raw,
        ):
            received: list[uuid.UUID] = []

            def failing(_: uuid.UUID) -> None:
                raise RuntimeError("a broken callback must not stop the others")

            replica_b.on_cancel(failing)
            replica_b.on_cancel(received.append)
            await raw.publish(CANCEL_CHANNEL, "not-a-uuid")  # ignored
            first, second = uuid.uuid4(), uuid.uuid4()
            await replica_a.request_cancel(first)
            await eventually(lambda: first in received)
            await replica_a.request_cancel(second)
            await eventually(lambda: second in received)
            assert received.count(first) == 1

    asyncio.run(scenario())


def test_publish_never_raises_while_redis_is_down(own_redis: RedisServer) -> None:
    """With Redis gone publish() still returns, and close() gives up within its bound."""

    async def scenario() -> None:
        hub = RedisHub.from_url(own_redis.url)
        await hub.start()
        message_id = uuid.uuid4()
        events = reply_events([f"t{i} " for i in range(200)])
        hub.publish(message_id, events[0])
        await hub.flush()
        own_redis.stop()
        for event in events[1:]:
            hub.publish(message_id, event)
        assert not await hub.ping()
        await asyncio.wait_for(hub.close(), WAIT)
        hub.publish(message_id, events[-1])  # after close: dropped, still no error

    asyncio.run(scenario())


def test_start_fails_clearly_without_redis() -> None:
    """An unreachable Redis is a clear error at start-up that shows no password."""
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"

    async def scenario() -> None:
        hub = RedisHub.from_url(url)
        with pytest.raises(RedisHubUnavailable, match="cannot reach Redis") as caught:
            await hub.start()
        assert "hunter2" not in str(caught.value)
        await asyncio.wait_for(hub.close(), WAIT)

    asyncio.run(scenario())


def test_cancels_and_writes_work_after_redis_restarts(own_redis: RedisServer) -> None:
    """The cancel subscriber resubscribes after a Redis restart, and mirroring resumes."""

    async def scenario() -> None:
        async with running_hub(own_redis.url) as replica_a, running_hub(own_redis.url) as replica_b:
            received: list[uuid.UUID] = []
            replica_b.on_cancel(received.append)
            own_redis.restart()
            message_id = uuid.uuid4()

            async def cancel_arrives() -> bool:
                # Pub/sub has no backlog: ask again until replica B has resubscribed.
                try:
                    await replica_a.request_cancel(message_id)
                except RedisError:
                    return False
                await asyncio.sleep(0.2)
                return message_id in received

            await eventually(cancel_arrives)

            events = reply_events(["after ", "restart"])
            reply = uuid.uuid4()
            for event in events:
                replica_a.publish(reply, event)
            await replica_a.flush()
            assert await collect(replica_b.follow(reply, after=-1, idle=5)) == events

    asyncio.run(scenario())


def test_a_reply_cut_by_a_redis_restart_is_not_mirrored_with_a_hole(
    own_redis: RedisServer,
) -> None:
    """Redis loses a reply's first events: the rest is not written as a stream without them."""
    events = reply_events(["before ", "the ", "restart"])

    async def scenario() -> None:
        async with running_hub(own_redis.url) as hub:
            message_id = uuid.uuid4()
            hub.publish(message_id, events[0])
            hub.publish(message_id, events[1])
            await hub.flush()
            own_redis.restart()  # no persistence: the stream is gone
            await eventually(hub.ping)
            for event in events[2:]:
                hub.publish(message_id, event)
            await hub.flush()
            assert not await hub.exists(message_id)
            assert await collect(hub.follow(message_id, after=-1, idle=5)) == []

    asyncio.run(scenario())


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


def test_an_account_change_announced_on_one_replica_reaches_the_other(
    redis_server: RedisServer,
) -> None:
    """announce_account_change() on one hub calls every hub's on_account_change callbacks."""

    async def scenario() -> None:
        async with (
            running_hub(redis_server.url) as replica_a,
            running_hub(redis_server.url) as replica_b,
            raw_client(redis_server.url) as raw,
        ):
            received: list[uuid.UUID | None] = []

            def failing(_: uuid.UUID | None) -> None:
                raise RuntimeError("a broken callback must not stop the others")

            replica_b.on_account_change(failing)
            replica_b.on_account_change(received.append)
            await raw.publish(ACCOUNTS_CHANNEL, "not-a-uuid")  # ignored
            first, second = uuid.uuid4(), uuid.uuid4()
            await replica_a.announce_account_change(first)
            await eventually(lambda: first in received)
            await replica_a.announce_account_change(second)
            await eventually(lambda: second in received)
            # Cancels travel apart: an account change is no cancel, nor the other way round.
            cancels: list[uuid.UUID] = []
            replica_b.on_cancel(cancels.append)
            await replica_a.request_cancel(first)
            await eventually(lambda: first in cancels)
            assert received == [first, second]

    asyncio.run(scenario())


def test_a_resubscription_makes_every_replica_forget_every_account(
    own_redis: RedisServer,
) -> None:
    """Changes published while a hub was not subscribed are lost: after it resubscribes, its
    callbacks hear None (any account may have changed), then changes again."""

    async def scenario() -> None:
        async with running_hub(own_redis.url) as replica_a, running_hub(own_redis.url) as replica_b:
            received: list[uuid.UUID | None] = []
            replica_b.on_account_change(received.append)
            own_redis.restart()
            await eventually(lambda: None in received)
            user_id = uuid.uuid4()

            async def change_arrives() -> bool:
                try:
                    await replica_a.announce_account_change(user_id)
                except RedisError:
                    return False
                await asyncio.sleep(0.2)
                return user_id in received

            await eventually(change_arrives)
            assert received.index(None) < received.index(user_id)

    asyncio.run(scenario())
