"""A fake Anthropic Messages API built for load: pre-encoded frames, one timer per chunk.

It speaks the real streaming protocol (message_start, content_block_*, ping, message_delta,
message_stop) over HTTP/1.1 keep-alive, so Zyron's official SDK and LiteLLM both accept it.
Pacing is set at run time with `PUT /_bench/pacing`; `GET /_bench/stats` reports how late
its own timers ran, which tells when the upstream, not the server under test, is the
bottleneck.

Run: `python -m bench.upstream --port 9100`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import uuid
from dataclasses import asdict, dataclass
from typing import Any, cast

import httptools
import uvloop

WORDS = "lorem ipsum "  # one delta: 12 characters, about a word or two of a real reply


@dataclass(slots=True)
class Pacing:
    """How replies are produced: delay to the first token, chunk count and spacing."""

    first_token_ms: float = 0.0
    chunks: int = 64
    interval_ms: float = 20.0
    text: str = WORDS


@dataclass(slots=True)
class Stats:
    """What the upstream did, and how far behind its own schedule it fell."""

    requests: int = 0
    streams_open: int = 0
    chunks_sent: int = 0
    late_over_5ms: int = 0
    max_late_ms: float = 0.0


def _frame(event: str, data: dict[str, Any]) -> bytes:
    """Encode one SSE event as one HTTP chunk."""
    body = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(body), body)


class Frames:
    """The byte strings of a reply, encoded once per pacing rather than once per chunk."""

    def __init__(self, pacing: Pacing) -> None:
        self.pacing = pacing
        self.delta = _frame(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": pacing.text},
            },
        )
        self.tail = (
            _frame("content_block_stop", {"type": "content_block_stop", "index": 0})
            + _frame(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": pacing.chunks},
                },
            )
            + _frame("message_stop", {"type": "message_stop"})
            + b"0\r\n\r\n"
        )

    def head(self, model: str, input_tokens: int) -> bytes:
        """Return the status line, headers and the events before the first text."""
        message: dict[str, Any] = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        }
        return (
            b"HTTP/1.1 200 OK\r\n"
            b"content-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n"
            b"request-id: req_bench\r\n\r\n"
            + _frame("message_start", {"type": "message_start", "message": message})
            + _frame(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            + _frame("ping", {"type": "ping"})
        )


class Upstream:
    """Shared state of all connections: the pacing and the counters."""

    def __init__(self) -> None:
        self.frames = Frames(Pacing())
        self.stats = Stats()


def _json_response(status: int, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"OK")
    return b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        reason,
        len(payload),
        payload,
    )


class Connection(asyncio.Protocol):
    """One client connection: parse requests, answer them one at a time."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (asyncio turns Nagle off, so each chunk leaves at once)."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Feed the request parser."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop a reply in progress."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.streaming:
            self.streaming = False
            self.upstream.stats.streams_open -= 1
        self.transport = None

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        """Start a request."""
        self.url = url
        self.body = []

    def on_body(self, body: bytes) -> None:
        """Collect the body."""
        self.body.append(body)

    def on_message_complete(self) -> None:
        """Route the request."""
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        body = b"".join(self.body)
        if path == b"/v1/messages" and method == b"POST":
            self._messages(body)
        elif path == b"/_bench/pacing" and method == b"PUT":
            fields = json.loads(body or b"{}")
            self.upstream.frames = Frames(Pacing(**fields))
            self._write(_json_response(200, asdict(self.upstream.frames.pacing)))
        elif path == b"/_bench/stats":
            self._write(_json_response(200, asdict(self.upstream.stats)))
        elif path == b"/_bench/reset" and method == b"POST":
            open_now = self.upstream.stats.streams_open
            self.upstream.stats = Stats(streams_open=open_now)
            self._write(_json_response(200, {}))
        else:
            self._write(_json_response(404, {"type": "error", "error": {"type": "not_found"}}))

    def _messages(self, raw: bytes) -> None:
        try:
            request = json.loads(raw)
        except ValueError:
            self._write(
                _json_response(
                    400,
                    {
                        "type": "error",
                        "error": {"type": "invalid_request_error", "message": "json"},
                    },
                )
            )
            return
        stats = self.upstream.stats
        stats.requests += 1
        frames = self.upstream.frames
        model = str(request.get("model", "claude-bench"))
        input_tokens = len(raw) // 4  # a rough count; only its presence matters here
        if not request.get("stream"):
            text = frames.pacing.text * frames.pacing.chunks
            self._write(
                _json_response(
                    200,
                    {
                        "id": f"msg_{uuid.uuid4().hex[:24]}",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [{"type": "text", "text": text}],
                        "stop_reason": "end_turn",
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": input_tokens,
                            "output_tokens": frames.pacing.chunks,
                        },
                    },
                )
            )
            return
        self.streaming = True
        stats.streams_open += 1
        self._write(frames.head(model, input_tokens))
        start = self.loop.time() + frames.pacing.first_token_ms / 1000
        self._schedule(frames, start, 0)

    def _schedule(self, frames: Frames, start: float, sent: int) -> None:
        # Absolute times, so a late timer does not push every later chunk back.
        due = start + sent * frames.pacing.interval_ms / 1000
        self.timer = self.loop.call_at(due, self._send_chunk, frames, start, sent, due)

    def _send_chunk(self, frames: Frames, start: float, sent: int, due: float) -> None:
        stats = self.upstream.stats
        late_ms = (self.loop.time() - due) * 1000
        if late_ms > 5:
            stats.late_over_5ms += 1
        if late_ms > stats.max_late_ms:
            stats.max_late_ms = late_ms
        if sent < frames.pacing.chunks:
            self._write(frames.delta)
            stats.chunks_sent += 1
            self._schedule(frames, start, sent + 1)
            return
        self.timer = None
        self._write(frames.tail)
        self.streaming = False
        stats.streams_open -= 1

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(host: str, port: int) -> None:
    """Serve until cancelled."""
    upstream = Upstream()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(upstream), host, port, backlog=4096, reuse_address=True
    )
    print(f"upstream ready on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The upstream makes no reference cycles worth collecting; a collection pause would
    # show up as a stall in whatever server is measured behind it.
    gc.disable()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
