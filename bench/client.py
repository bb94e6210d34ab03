"""A lean HTTP/1.1 load client: keep-alive connections, per-event timestamps, httptools' parser.

A general client (httpx, aiohttp) costs more per event than the server under test spends, so
at a thousand streams the measurement would measure itself. This one parses responses in C
and only looks for a byte pattern in each server-sent event.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import httptools

EventTest = Callable[[bytes], bool]


@dataclass(frozen=True, slots=True)
class Dialect:
    """How to recognise the events that carry reply text, and errors, in one server's stream."""

    name: str
    is_text: EventTest
    is_error: EventTest


ZYRON = Dialect(
    "zyron",
    is_text=lambda event: event.startswith(b"id: ") and b"\nevent: delta\n" in event,
    is_error=lambda event: b"\nevent: error\n" in event,
)
ANTHROPIC = Dialect(
    "anthropic",
    is_text=lambda event: (
        event.startswith(b"event: content_block_delta\n") and b'"text_delta"' in event
    ),
    is_error=lambda event: event.startswith(b"event: error\n"),
)
# OpenAI chat-completions chunks: text is a non-empty `"content"`; the first chunk carries
# only the role, with empty or null content.
OPENAI = Dialect(
    "openai",
    is_text=lambda event: b'"content":"' in event and b'"content":""' not in event,
    is_error=lambda event: b'"error"' in event and b'"choices"' not in event,
)


@dataclass(slots=True)
class Response:
    """One response: status, body (unless streamed), and the times text events arrived."""

    status: int = 0
    body: bytearray = field(default_factory=bytearray)
    started: float = 0.0
    first_byte: float | None = None
    text_times: list[float] = field(default_factory=list)
    errors: int = 0
    ended: float | None = None
    keep_alive: bool = True


class _Protocol(asyncio.Protocol):
    """Parse responses on one connection; hand each one to a future when it ends."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.done: asyncio.Future[Response] | None = None
        self.dialect: Dialect | None = None
        self.pending = b""
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Feed the parser."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail a response in progress."""
        self._fail(exc or ConnectionResetError("server closed the connection"))
        if not self.lost.done():
            self.lost.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def on_headers_complete(self) -> None:
        """Record the status."""
        assert self.response is not None
        self.response.status = self.parser.get_status_code()
        self.response.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        """Time each complete event that carries text; keep the rest for non-streams."""
        response = self.response
        assert response is not None
        now = time.perf_counter()
        if response.first_byte is None:
            response.first_byte = now
        if self.dialect is None:
            response.body += body
            return
        data = self.pending + body if self.pending else body
        events = data.split(b"\n\n")
        self.pending = events.pop()
        dialect = self.dialect
        for event in events:
            if dialect.is_text(event):
                response.text_times.append(now)
            elif dialect.is_error(event):
                response.errors += 1
                response.body += event[:500]

    def on_message_complete(self) -> None:
        """Hand the response over."""
        response = self.response
        assert response is not None
        response.ended = time.perf_counter()
        self.pending = b""
        if self.done is not None and not self.done.done():
            self.done.set_result(response)


class Connection:
    """One keep-alive connection to a server, reopened when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._protocol: _Protocol | None = None

    async def open(self) -> None:
        """Connect now, so that a later request does not pay for it."""
        await self._open()

    async def _open(self) -> _Protocol:
        protocol = self._protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
            self._protocol = protocol
        return protocol

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        stream: Dialect | None = None,
        limit_seconds: float = 120.0,
    ) -> Response:
        """Send one request; with `stream`, time its text events instead of keeping the body."""
        started = time.perf_counter()
        protocol = await self._open()
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload)}")
        lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
        response = Response(started=started)
        protocol.response = response
        protocol.dialect = stream
        protocol.pending = b""
        protocol.done = asyncio.get_running_loop().create_future()
        assert protocol.transport is not None
        protocol.transport.write(raw)
        try:
            async with asyncio.timeout(limit_seconds):
                result = await protocol.done
        except BaseException:
            await self.close()
            raise
        if not result.keep_alive:
            await self.close()
        return result

    async def close(self) -> None:
        """Close the connection."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


@dataclass(frozen=True, slots=True)
class StreamResult:
    """What one stream looked like from the client."""

    ok: bool
    ttft: float | None
    total: float
    chunks: int
    gaps: tuple[float, ...]
    error: str | None = None


def stream_result(response: Response, *, expected_chunks: int | None = None) -> StreamResult:
    """Summarise a streamed response: TTFT, gaps between text events, and whether it ended well."""
    times = response.text_times
    ended = response.ended or time.perf_counter()
    ttft = times[0] - response.started if times else None
    gaps = tuple(b - a for a, b in itertools.pairwise(times))
    error: str | None = None
    if response.status != 200:
        error = f"HTTP {response.status}: {bytes(response.body[:200]).decode(errors='replace')}"
    elif response.errors:
        error = f"error event: {bytes(response.body[:200]).decode(errors='replace')}"
    elif expected_chunks is not None and len(times) != expected_chunks:
        error = f"{len(times)} text events, expected {expected_chunks}"
    return StreamResult(
        ok=error is None,
        ttft=ttft,
        total=ended - response.started,
        chunks=len(times),
        gaps=gaps,
        error=error,
    )
