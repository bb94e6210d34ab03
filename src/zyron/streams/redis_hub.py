"""A stream hub on Redis Streams: replies mirrored so any replica can resume or cancel them.

Its subscriber also carries account changes (a deletion), so every replica forgets the account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from zyron.streams.events import StreamEvent

log = logging.getLogger("zyron.streams.redis")

T = TypeVar("T")

CANCEL_CHANNEL = "zyron:cancel"
# An account was deleted (or, later, disabled): every replica forgets what it cached of it.
ACCOUNTS_CHANNEL = "zyron:accounts"
_CHANNELS = (CANCEL_CHANNEL, ACCOUNTS_CHANNEL)
KEY_PREFIX = "zyron:reply:"

_BATCH_MAX = 500  # events per pipeline: large enough to keep up, small enough to bound one call
_PAGE = 500  # entries per XRANGE/XREAD page when following
_WRITE_ATTEMPTS = 4
_BACKOFF_START = 0.1
_BACKOFF_MAX = 5.0
_OP_TIMEOUT = 5.0  # seconds for one Redis round trip (on top of any BLOCK time)
_CLOSE_TIMEOUT = 5.0
_DELETE_RETRY = 1.0  # how soon the writer retries deleting mirrors that lost events
_TRANSIENT = (RedisError, OSError, TimeoutError)


class RedisHubUnavailable(RuntimeError):
    """Redis cannot be reached at start-up; the message names the server, never credentials."""


def reply_key(message_id: uuid.UUID) -> str:
    """Return the stream key of a reply."""
    return f"{KEY_PREFIX}{message_id}"


def _entry_id(event_id: int) -> str:
    # Our ids become the sequence part, so XRANGE/XREAD positions are our own offsets.
    return f"1-{event_id}"


def _location(url: str) -> str:
    """Describe where a Redis URL points, without user or password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


def _error(exc: BaseException) -> str:
    # redis-py's messages name host and port at most; URLs and passwords never reach them.
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _encode(event: StreamEvent) -> dict[FieldT, EncodableT]:
    """Return an event's stream entry fields."""
    return {name: value for name, value in event.to_fields().items()}  # noqa: C416 (widens the type)


def _decode(fields: Mapping[Any, Any] | None) -> StreamEvent:
    """Rebuild an event from a stream entry (decode_responses=True: all text)."""
    return StreamEvent.from_fields({str(k): str(v) for k, v in (fields or {}).items()})


async def _bounded(awaitable: Awaitable[T], seconds: float) -> T:
    """Await one Redis call, turning a hang into redis' own TimeoutError."""
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError as exc:
        raise RedisTimeoutError(f"Redis did not answer within {seconds:g} s") from exc


class RedisHub:
    """Mirror reply events into Redis Streams; follow them and relay cancels across replicas."""

    def __init__(
        self,
        commands: Redis,
        reader: Redis,
        *,
        location: str,
        retention_seconds: int,
        maxlen: int,
        live_ttl_seconds: int,
    ) -> None:
        self._redis = commands
        # Followers hold a connection for the whole BLOCK; a pool of their own means many
        # followers can never starve the writer or the cancel subscriber.
        self._reader = reader
        self._location = location
        self._retention = retention_seconds
        self._maxlen = maxlen
        # A reply whose producer died never gets its terminal event; this bounds how long
        # such a key lingers. It is renewed on every write, so live replies never expire.
        self._live_ttl = max(live_ttl_seconds, retention_seconds)
        self._queue: asyncio.Queue[tuple[uuid.UUID, StreamEvent]] = asyncio.Queue()
        self._callbacks: list[Callable[[uuid.UUID], None]] = []
        self._account_callbacks: list[Callable[[uuid.UUID | None], None]] = []
        self._subscribed = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._subscriber: asyncio.Task[None] | None = None
        self._closed = False
        # Replies whose mirror lost events: later events are skipped so a follower never
        # sees a gap, and the key is deleted so followers stop and fall back to the database.
        self._broken: set[uuid.UUID] = set()
        self._to_delete: set[uuid.UUID] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        retention_seconds: int = 600,
        maxlen: int = 20000,
        live_ttl_seconds: int = 3600,
        max_followers: int = 1000,
    ) -> RedisHub:
        """Configure a hub for a Redis URL; nothing connects until start()."""
        options: dict[str, Any] = {
            "decode_responses": True,
            "protocol": 2,  # the reply shapes parsed below are RESP2's
            "socket_connect_timeout": _OP_TIMEOUT,
            # No socket timeout: XREAD BLOCK waits longer than any sensible one; every call
            # here is bounded by asyncio.timeout instead.
            "socket_timeout": None,
            "socket_keepalive": True,
            "health_check_interval": 30,
            "retry": Retry(EqualJitterBackoff(cap=1.0, base=0.05), 3),
        }
        commands = Redis.from_url(url, **options)
        reader = Redis.from_url(url, max_connections=max_followers, **options)
        return cls(
            commands,
            reader,
            location=_location(url),
            retention_seconds=retention_seconds,
            maxlen=maxlen,
            live_ttl_seconds=live_ttl_seconds,
        )

    async def start(self) -> None:
        """Connect and start the writer and the subscriber; raise if Redis is unreachable."""
        if self._writer is not None:
            return
        try:
            await _bounded(self._redis.ping(), _OP_TIMEOUT * 2)
        except _TRANSIENT as exc:
            raise RedisHubUnavailable(
                f"cannot reach Redis at {self._location} (REDIS_URL): {_error(exc)}"
            ) from exc
        self._writer = asyncio.create_task(self._write_loop(), name="zyron-redis-writer")
        self._subscriber = asyncio.create_task(self._subscribe_loop(), name="zyron-redis-pubsub")
        try:
            # A cancel or an account change sent right after start-up must not be missed.
            await asyncio.wait_for(self._subscribed.wait(), _OP_TIMEOUT * 2)
        except TimeoutError as exc:
            await self.close()
            raise RedisHubUnavailable(
                f"cannot subscribe to {', '.join(_CHANNELS)} on Redis at {self._location}"
            ) from exc

    def publish(self, message_id: uuid.UUID, event: StreamEvent) -> None:
        """Queue an event for the background writer; never blocks, never raises."""
        if self._closed:
            log.debug("redis hub closed; event not mirrored", extra={"message_id": str(message_id)})
            return
        self._queue.put_nowait((message_id, event))

    async def flush(self) -> None:
        """Wait until every event published so far is written (or given up on)."""
        if self._writer is not None and not self._writer.done():
            await self._queue.join()

    async def exists(self, message_id: uuid.UUID) -> bool:
        """Tell whether a reply is mirrored (in progress or recently finished)."""
        count = await _bounded(self._redis.exists(reply_key(message_id)), _OP_TIMEOUT)
        return bool(count)

    async def follow(
        self, message_id: uuid.UUID, *, after: int, idle: float
    ) -> AsyncIterator[StreamEvent | None]:
        """Yield events with id > after, backlog then live; None after `idle` quiet seconds.

        Ends after a terminal event (at once if `after` is already past it), or when the key
        does not exist (never did, or expired).
        Redis failures raise RedisError: the client reconnects with Last-Event-ID.
        """
        key = reply_key(message_id)
        last = after
        seen = False
        # The backlog in pages, so a long reply is never read into memory at once.
        while True:
            start = f"({_entry_id(last)}" if last >= 0 else "-"
            entries = await _bounded(
                self._reader.xrange(key, min=start, max="+", count=_PAGE), _OP_TIMEOUT
            )
            for _entry, fields in entries or []:
                event = _decode(fields)
                last, seen = event.id, True
                yield event
                if event.terminal:
                    return
            if len(entries or []) < _PAGE:
                break
        if not seen:
            # Nothing after `after`: stop if there is no reply, or the client already has its end.
            newest = await _bounded(self._reader.xrevrange(key, count=1), _OP_TIMEOUT)
            if not newest or _decode(newest[0][1]).terminal:
                return
        block_ms = max(1, int(idle * 1000))  # BLOCK 0 would mean "forever"
        while True:
            response = await _bounded(
                self._reader.xread({key: _entry_id(last)}, count=_PAGE, block=block_ms),
                idle + _OP_TIMEOUT,
            )
            if not response:
                if not await _bounded(self._reader.exists(key), _OP_TIMEOUT):
                    return
                yield None
                continue
            # protocol=2 fixes the shape: [[key, [(entry id, fields), ...]]]
            for _stream, stream_entries in cast(list[list[Any]], response):
                for _entry, fields in stream_entries:
                    event = _decode(fields)
                    last = event.id
                    yield event
                    if event.terminal:
                        return

    @property
    def mirror_seconds(self) -> int:
        """Return how long a reply's mirror can outlive its last write: live, then retained."""
        return self._live_ttl + self._retention

    async def forget(self, message_ids: Collection[uuid.UUID]) -> None:
        """Delete the mirrors of these replies now; raise RedisError if Redis fails."""
        keys = [reply_key(message_id) for message_id in message_ids]
        for start in range(0, len(keys), _BATCH_MAX):
            await _bounded(self._redis.delete(*keys[start : start + _BATCH_MAX]), _OP_TIMEOUT)

    async def request_cancel(self, message_id: uuid.UUID) -> None:
        """Ask whichever replica runs this reply to cancel it; raise RedisError if Redis fails."""
        await _bounded(self._redis.publish(CANCEL_CHANNEL, str(message_id)), _OP_TIMEOUT)

    def on_cancel(self, callback: Callable[[uuid.UUID], None]) -> None:
        """Register a callback for every cancel request, from any replica (this one included)."""
        self._callbacks.append(callback)

    async def announce_account_change(self, user_id: uuid.UUID) -> None:
        """Tell every replica an account changed; raise RedisError if Redis fails."""
        await _bounded(self._redis.publish(ACCOUNTS_CHANNEL, str(user_id)), _OP_TIMEOUT)

    def on_account_change(self, callback: Callable[[uuid.UUID | None], None]) -> None:
        """Register a callback for every account change, from any replica (this one included).

        None means any account may have changed: it comes after every (re)subscription, since
        pub/sub drops what is published while a replica is not subscribed.
        """
        self._account_callbacks.append(callback)

    async def ping(self) -> bool:
        """Tell whether Redis answers, for /health."""
        try:
            return bool(await _bounded(self._redis.ping(), 2.0))
        except _TRANSIENT:
            return False

    async def close(self) -> None:
        """Write what is pending (for at most a few seconds), stop the tasks, disconnect."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None and not self._writer.done():
            try:
                await asyncio.wait_for(self._queue.join(), _CLOSE_TIMEOUT)
            except TimeoutError:
                log.warning(
                    "redis hub closed with events not mirrored",
                    extra={"events": self._queue.qsize(), "redis": self._location},
                )
        for task in (self._writer, self._subscriber):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for client in (self._redis, self._reader):
            with contextlib.suppress(*_TRANSIENT):
                await client.aclose()

    # The writer -----------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            batch: list[tuple[uuid.UUID, StreamEvent]] = []
            try:
                if self._to_delete:
                    with contextlib.suppress(TimeoutError):
                        batch.append(await asyncio.wait_for(self._queue.get(), _DELETE_RETRY))
                else:
                    batch.append(await self._queue.get())
                while len(batch) < _BATCH_MAX and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                await self._write(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A dead writer would leave flush() waiting forever: log and carry on.
                log.exception("redis hub writer failed", extra={"events": len(batch)})
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[tuple[uuid.UUID, StreamEvent]]) -> None:
        events = [(mid, event) for mid, event in batch if self._keep(mid, event)]
        deletes = set(self._to_delete)
        if not events and not deletes:
            return
        delay = _BACKOFF_START
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                results, ops = await _bounded(self._send(events, deletes), _OP_TIMEOUT * 2)
            except _TRANSIENT as exc:
                if attempt == _WRITE_ATTEMPTS:
                    self._give_up(events, exc)
                    return
                log.debug("redis write failed; retrying", extra={"attempt": attempt})
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            self._to_delete -= deletes
            self._check(results, ops, finished={mid for mid, e in events if e.terminal})
            return

    def _keep(self, message_id: uuid.UUID, event: StreamEvent) -> bool:
        if message_id not in self._broken:
            return True
        if event.terminal:
            self._broken.discard(message_id)  # nothing more will come for it
        return False

    async def _send(
        self, events: list[tuple[uuid.UUID, StreamEvent]], deletes: set[uuid.UUID]
    ) -> tuple[list[Any], list[tuple[uuid.UUID, str]]]:
        """Write one batch in one pipeline; return the results and what each command was."""
        ops: list[tuple[uuid.UUID, str]] = []
        last_of: dict[uuid.UUID, StreamEvent] = {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for mid in deletes:
                pipe.delete(reply_key(mid))
                ops.append((mid, "del"))
            for mid, event in events:
                pipe.xadd(
                    reply_key(mid),
                    _encode(event),
                    id=_entry_id(event.id),
                    maxlen=self._maxlen,
                    approximate=True,
                    # Only the first event creates the stream: if it vanished (Redis restarted
                    # without persistence, a failover), later ones must not start a stream
                    # with a hole at its beginning.
                    nomkstream=event.id > 0,
                )
                ops.append((mid, "xadd"))
                last_of[mid] = event
            for mid, event in last_of.items():
                pipe.expire(reply_key(mid), self._retention if event.terminal else self._live_ttl)
                ops.append((mid, "expire"))
            # Command errors come back in the list; only connection failures raise.
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results, ops

    def _check(
        self, results: list[Any], ops: list[tuple[uuid.UUID, str]], *, finished: set[uuid.UUID]
    ) -> None:
        for result, (mid, op) in zip(results, ops, strict=True):
            if op == "xadd" and result is None:
                problem = "the stream vanished mid-reply"  # NOMKSTREAM refused to recreate it
            elif not isinstance(result, Exception):
                continue
            elif isinstance(result, ResponseError) and "equal or smaller" in str(result):
                continue  # written by an earlier attempt whose answer was lost
            else:
                problem = _error(result)
            if mid not in self._to_delete:
                log.warning(
                    "reply no longer mirrored to redis",
                    extra={"message_id": str(mid), "op": op, "error": problem},
                )
            if mid not in finished:
                self._broken.add(mid)  # skip what is still to come
            self._to_delete.add(mid)

    def _give_up(self, events: list[tuple[uuid.UUID, StreamEvent]], exc: BaseException) -> None:
        # Redis is down: everything queued now belongs to the outage too. Dropping it at once
        # keeps memory bounded and lets new replies be mirrored as soon as Redis is back.
        dropped = list(events)
        while not self._queue.empty():
            dropped.append(self._queue.get_nowait())
            self._queue.task_done()
        for mid, event in dropped:
            if event.terminal:
                self._broken.discard(mid)  # the reply is over: nothing more to skip
            else:
                self._broken.add(mid)
            self._to_delete.add(mid)
        log.warning(
            "redis unreachable; reply events not mirrored",
            extra={
                "events": len(dropped),
                "replies": len({mid for mid, _ in dropped}),
                "attempts": _WRITE_ATTEMPTS,
                "redis": self._location,
                "error": _error(exc),
            },
        )

    # The subscriber: cancels and account changes -------------------------------------

    async def _subscribe_loop(self) -> None:
        delay = _BACKOFF_START
        while True:
            pubsub = self._redis.pubsub()
            confirmed: set[str] = set()
            try:
                await _bounded(pubsub.subscribe(*_CHANNELS), _OP_TIMEOUT)
                while True:
                    # A timeout, not a blocking read, so health checks notice a dead link.
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        confirmed.add(str(message["channel"]))
                        if confirmed.issuperset(_CHANNELS):
                            # Changes published while unsubscribed are lost: forget them all.
                            self._dispatch_account(None)
                            self._subscribed.set()
                            delay = _BACKOFF_START
                    elif message["type"] == "message" and message["channel"] == ACCOUNTS_CHANNEL:
                        self._dispatch_account_change(message["data"])
                    elif message["type"] == "message":
                        self._dispatch_cancel(message["data"])
            except Exception as exc:
                # Whatever Redis or redis-py throws, cancels must keep arriving: start over.
                log.warning(
                    "redis subscriber lost its connection; resubscribing",
                    extra={"redis": self._location, "error": _error(exc), "retry_in": delay},
                )
            finally:
                self._subscribed.clear()
                with contextlib.suppress(*_TRANSIENT):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)

    def _dispatch_cancel(self, payload: object) -> None:
        try:
            message_id = uuid.UUID(str(payload))
        except ValueError:
            log.warning("ignored a malformed cancel request", extra={"channel": CANCEL_CHANNEL})
            return
        for callback in list(self._callbacks):
            try:
                callback(message_id)
            except Exception:
                # One failing callback must not stop cancels for every other reply.
                log.exception("cancel callback failed", extra={"message_id": str(message_id)})

    def _dispatch_account_change(self, payload: object) -> None:
        try:
            user_id = uuid.UUID(str(payload))
        except ValueError:
            log.warning("ignored a malformed account change", extra={"channel": ACCOUNTS_CHANNEL})
            return
        self._dispatch_account(user_id)

    def _dispatch_account(self, user_id: uuid.UUID | None) -> None:
        for callback in list(self._account_callbacks):
            try:
                callback(user_id)
            except Exception:
                # One failing callback must not keep the others from forgetting the account.
                log.exception(
                    "account change callback failed",
                    extra={"user_id": str(user_id) if user_id else None},
                )
