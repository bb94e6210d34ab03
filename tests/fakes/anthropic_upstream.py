"""Fake Anthropic Messages API: a real local HTTP server speaking the streaming protocol."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.fakes.prompt_cache import Billed, PromptCache, TooManyBreakpoints

__all__ = [
    "Drop",
    "FakeAnthropic",
    "HttpError",
    "MidStreamError",
    "RecordedRequest",
    "Reply",
    "TextReply",
    "ThinkingReply",
]

# Bounds every blocking socket operation in the server so a stuck client can never hang a test.
_SOCKET_TIMEOUT = 10.0
_MESSAGES_PATH = "/v1/messages"
_DEFAULT_INPUT_TOKENS = 12
# The real API's floor for `thinking.budget_tokens` (type "enabled").
_MIN_THINKING_BUDGET = 1024
_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"

# Used when a stream-only failure is requested by a non-streaming call: the real API can only
# report such failures as a plain HTTP error there.
_STATUS_FOR_ERROR_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


@dataclass(frozen=True)
class TextReply:
    """A normal assistant reply, streamed as one text delta per chunk."""

    chunks: Sequence[str] = ("Hello", ", ", "world", "!")
    stop_reason: str = "end_turn"
    input_tokens: int = _DEFAULT_INPUT_TOKENS
    chunk_delay: float = 0.0
    first_delay: float = 0.0
    # Set: the reply stops after its first chunk until the test sets it (a reply that is
    # certainly still running while the test acts, however slow the machine).
    hold: threading.Event | None = None
    # Chunk n + 1 is sent only once gates[n] is set (the client received chunk n): a stream
    # buffered anywhere on its way stalls instead of arriving late in one piece.
    gates: Sequence[threading.Event] = ()


@dataclass(frozen=True)
class ThinkingReply:
    """An extended-thinking reply: a signed thinking block, maybe a redacted one, then text."""

    thinking: Sequence[str] = ("Let me", " think.")
    chunks: Sequence[str] = ("Answer",)
    signature: str = "sig-fake-EqQBCgIYAhIM"
    # True adds a `redacted_thinking` block (no deltas, only opaque data) after the thinking one.
    redacted: bool = False
    redacted_data: str = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"
    stop_reason: str = "end_turn"
    input_tokens: int = _DEFAULT_INPUT_TOKENS
    chunk_delay: float = 0.0
    # Set: the stream pauses until the test sets it, after the first thinking delta (or, with
    # hold_in_thinking False, after the first text delta), so a test can act mid-reply.
    hold: threading.Event | None = None
    hold_in_thinking: bool = True


@dataclass(frozen=True)
class MidStreamError:
    """Some text deltas followed by an SSE `event: error` and the end of the stream."""

    chunks: Sequence[str] = ("Partial",)
    error_type: str = "overloaded_error"
    message: str = "Overloaded"


@dataclass(frozen=True)
class HttpError:
    """A non-200 JSON error response sent instead of any stream."""

    status: int
    error_type: str
    message: str = "error"
    retry_after: str | None = None


@dataclass(frozen=True)
class Drop:
    """Some text deltas, then the connection is closed without finishing the response."""

    chunks: Sequence[str] = ("Partial",)


@dataclass(frozen=True)
class Truncated:
    """Some text deltas, then a cleanly finished response with no message_delta/message_stop."""

    chunks: Sequence[str] = ("Partial",)


@dataclass(frozen=True)
class Garbage:
    """Some text deltas, then an event whose data is not JSON (or `payload`: not the protocol's)."""

    chunks: Sequence[str] = ("Partial",)
    payload: bytes = b"{not json"


Reply = TextReply | ThinkingReply | MidStreamError | HttpError | Drop | Truncated | Garbage


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received by the fake, recorded before it was answered."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _thinking_refusal(body: dict[str, Any]) -> str | None:
    """Return the real API's 400 message for a request that misuses thinking, else None."""
    # Signatures are checked on every request: a missing one is a schema error in the real API
    # (signature is a required field of a thinking block param). That an empty one is refused
    # with thinking off too is the fake's assumption; the real check verifies the signature.
    messages = body.get("messages")
    for m_index, message in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for c_index, block in enumerate(content):
            if not isinstance(block, dict) or block.get("type") != "thinking":
                continue
            where = f"messages.{m_index}.content.{c_index}"
            if "signature" not in block:
                return f"{where}.thinking.signature: Field required"
            if not isinstance(block["signature"], str) or not block["signature"]:
                return f"{where}: Invalid `signature` in `thinking` block"
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    if thinking["type"] == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int):
            return "thinking.enabled.budget_tokens: Field required"
        if budget < _MIN_THINKING_BUDGET:
            return (
                "thinking.enabled.budget_tokens: Input should be greater than or equal to "
                f"{_MIN_THINKING_BUDGET}"
            )
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, int) and budget >= max_tokens:
            return (
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult "
                f"our documentation at {_DOCS}#max-tokens-and-context-window-size"
            )
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        return (
            "`temperature` may only be set to 1 when thinking is enabled or in adaptive mode. "
            f"Please consult our documentation at {_DOCS}"
            "#important-considerations-when-using-extended-thinking"
        )
    return None


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


class _StoppedError(Exception):
    """Raised inside a handler when the fake is stopped while the handler is waiting."""


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its fake and can sever live connections on stop."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, fake: FakeAnthropic) -> None:
        self.fake = fake
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup, which can stall on odd resolvers."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, conn: socket.socket) -> None:
        """Remember a live client connection."""
        with self._live_lock:
            self._live.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        """Forget a client connection once its handler is done."""
        with self._live_lock:
            self._live.discard(conn)

    def sever_all(self) -> None:
        """Shut down every live connection so blocked handlers and clients return promptly."""
        with self._live_lock:
            live = list(self._live)
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that went away; report anything else."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError | _StoppedError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection; every response closes it so no handler idles on keep-alive."""

    protocol_version = "HTTP/1.1"
    timeout = _SOCKET_TIMEOUT

    @property
    def _server(self) -> _Server:
        assert isinstance(self.server, _Server)
        return self.server

    def setup(self) -> None:
        """Register the connection so stop() can sever it."""
        super().setup()
        self._server.track(self.connection)

    def finish(self) -> None:
        """Unregister the connection."""
        try:
            super().finish()
        finally:
            self._server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request logging to stderr."""

    def do_POST(self) -> None:
        """Handle POST requests."""
        self._dispatch()

    def do_GET(self) -> None:
        """Handle GET requests (always 404)."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Handle PUT requests (always 404)."""
        self._dispatch()

    def do_PATCH(self) -> None:
        """Handle PATCH requests (always 404)."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Handle DELETE requests (always 404)."""
        self._dispatch()

    def _dispatch(self) -> None:
        fake = self._server.fake
        self.close_connection = True
        raw = self._read_body()
        body: dict[str, Any] = {}
        parsed_ok = False
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            body = decoded
            parsed_ok = True
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake._record(RecordedRequest(path=self.path, headers=headers, body=body))

        try:
            if self.command != "POST" or self.path.split("?", 1)[0] != _MESSAGES_PATH:
                self._send_json(
                    404,
                    _error_body("not_found_error", f"Not found: {self.command} {self.path}"),
                )
                return
            if not parsed_ok:
                self._send_json(
                    400, _error_body("invalid_request_error", "Request body must be a JSON object")
                )
                return
            refusal = _thinking_refusal(body)
            if refusal is not None:
                # Refused before any reply is taken from the queue, as the API answers no turn.
                self._send_json(400, _error_body("invalid_request_error", refusal))
                return
            self._answer(fake._next_reply(), body)
        except OSError:
            # The client hung up mid-answer; nothing useful left to say.
            fake._hung_up()
        except _StoppedError:
            return

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _answer(self, reply: Reply, body: dict[str, Any]) -> None:
        streaming = body.get("stream") is True
        model = str(body.get("model", ""))
        fake = self._server.fake
        try:
            billed = fake.cache.bill(body)
        except TooManyBreakpoints as exc:
            self._send_json(400, _error_body("invalid_request_error", str(exc)))
            return
        prompt = billed.usage() if fake.accounting else None
        if isinstance(reply, HttpError):
            self._send_json(
                reply.status,
                _error_body(reply.error_type, reply.message),
                retry_after=reply.retry_after,
            )
        elif isinstance(reply, TextReply | ThinkingReply):
            usage = prompt or {"input_tokens": reply.input_tokens}
            if fake.accounting:
                fake._billed(billed, _output_tokens(reply))
            if streaming and isinstance(reply, TextReply):
                self._stream_text(reply, model, usage)
            elif streaming:
                assert isinstance(reply, ThinkingReply)
                self._stream_thinking(reply, model, usage)
            else:
                pieces = len(reply.chunks) + len(getattr(reply, "thinking", ()))
                self._sleep(getattr(reply, "first_delay", 0.0) + reply.chunk_delay * pieces)
                self._send_json(200, _message(reply, model, usage))
        elif isinstance(reply, MidStreamError):
            if streaming:
                self._stream_then_error(reply, model)
            else:
                status = _STATUS_FOR_ERROR_TYPE.get(reply.error_type, 500)
                self._send_json(status, _error_body(reply.error_type, reply.message))
        elif isinstance(reply, Truncated | Garbage):
            self._begin_stream()
            self._stream_prelude(model, {"input_tokens": _DEFAULT_INPUT_TOKENS})
            for chunk in reply.chunks:
                self._delta(chunk)
            if isinstance(reply, Garbage):
                payload = b"event: content_block_delta\ndata: %b\n\n" % reply.payload
                self.wfile.write(b"%x\r\n%b\r\n" % (len(payload), payload))
            self._end_stream()
        elif streaming:
            self._stream_then_drop(reply, model)
        # A non-streaming Drop sends nothing at all: the handler returns and the socket closes.

    def _wait_for(self, event: threading.Event, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while not event.wait(0.02):
            if self._server.fake._stopping.is_set() or time.monotonic() > deadline:
                raise _StoppedError

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self._server.fake._stopping.wait(seconds):
            raise _StoppedError

    def _send_json(
        self, status: int, payload: dict[str, Any], *, retry_after: str | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", _new_id("req_fake"))
        if retry_after is not None:
            self.send_header("retry-after", retry_after)
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _begin_stream(self) -> None:
        # Chunked framing, like the real API: it lets the client tell a finished stream from a
        # dropped connection, which a read-until-close body could not.
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("request-id", _new_id("req_fake"))
        self.send_header("transfer-encoding", "chunked")
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.flush()

    def _event(self, name: str, data: dict[str, Any]) -> None:
        payload = f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        self.wfile.write(b"%x\r\n%b\r\n" % (len(payload), payload))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _message_start(self, model: str, usage: dict[str, Any]) -> None:
        message: dict[str, Any] = {
            "id": _new_id("msg_fake"),
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        self._event("message_start", {"type": "message_start", "message": message})

    def _block_start(self, index: int, block: dict[str, Any]) -> None:
        self._event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )

    def _block_delta(self, index: int, delta: dict[str, Any]) -> None:
        self._event(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )

    def _block_stop(self, index: int) -> None:
        self._event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _message_end(
        self, stop_reason: str, output_tokens: int, prompt: dict[str, Any] | None = None
    ) -> None:
        # As the API does, message_delta repeats the prompt's counts (without their TTL split).
        usage = {k: v for k, v in (prompt or {}).items() if k != "cache_creation"}
        self._event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {**usage, "output_tokens": output_tokens},
            },
        )
        self._event("message_stop", {"type": "message_stop"})

    def _stream_prelude(self, model: str, usage: dict[str, Any]) -> None:
        self._message_start(model, usage)
        self._block_start(0, {"type": "text", "text": ""})

    def _delta(self, text: str, index: int = 0) -> None:
        self._block_delta(index, {"type": "text_delta", "text": text})

    def _stream_text(self, reply: TextReply, model: str, usage: dict[str, Any]) -> None:
        self._begin_stream()
        self._sleep(reply.first_delay)
        self._stream_prelude(model, usage)
        self._event("ping", {"type": "ping"})
        for index, chunk in enumerate(reply.chunks):
            self._sleep(reply.chunk_delay)
            if index == 1 and reply.hold is not None:
                self._wait_for(reply.hold)
            if 0 < index <= len(reply.gates):
                self._wait_for(reply.gates[index - 1])
            self._delta(chunk)
        self._block_stop(0)
        self._message_end(reply.stop_reason, len(reply.chunks), usage)
        self._end_stream()

    def _stream_thinking(self, reply: ThinkingReply, model: str, usage: dict[str, Any]) -> None:
        # The order of the real API with `thinking: {"type": "enabled", ...}`: the thinking block
        # starts empty, grows by thinking_delta, and is signed by one signature_delta just
        # before its content_block_stop; redacted blocks arrive whole, with no deltas.
        self._begin_stream()
        self._message_start(model, usage)
        self._block_start(0, {"type": "thinking", "thinking": "", "signature": ""})
        self._event("ping", {"type": "ping"})
        for position, piece in enumerate(reply.thinking):
            self._sleep(reply.chunk_delay)
            self._block_delta(0, {"type": "thinking_delta", "thinking": piece})
            if position == 0 and reply.hold is not None and reply.hold_in_thinking:
                self._wait_for(reply.hold)
        self._block_delta(0, {"type": "signature_delta", "signature": reply.signature})
        self._block_stop(0)
        index = 1
        if reply.redacted:
            self._block_start(index, {"type": "redacted_thinking", "data": reply.redacted_data})
            self._block_stop(index)
            index += 1
        self._block_start(index, {"type": "text", "text": ""})
        for position, chunk in enumerate(reply.chunks):
            self._sleep(reply.chunk_delay)
            self._delta(chunk, index)
            if position == 0 and reply.hold is not None and not reply.hold_in_thinking:
                self._wait_for(reply.hold)
        self._block_stop(index)
        self._message_end(reply.stop_reason, _output_tokens(reply), usage)
        self._end_stream()

    def _stream_then_error(self, reply: MidStreamError, model: str) -> None:
        self._begin_stream()
        self._stream_prelude(model, {"input_tokens": _DEFAULT_INPUT_TOKENS})
        for chunk in reply.chunks:
            self._delta(chunk)
        self._event("error", _error_body(reply.error_type, reply.message))
        self._end_stream()

    def _stream_then_drop(self, reply: Drop, model: str) -> None:
        self._begin_stream()
        self._stream_prelude(model, {"input_tokens": _DEFAULT_INPUT_TOKENS})
        for chunk in reply.chunks:
            self._delta(chunk)
        # No terminating chunk: the socket closes mid-body, which the client sees as truncation.
        self.connection.shutdown(socket.SHUT_RDWR)


def _output_tokens(reply: TextReply | ThinkingReply) -> int:
    """A reply's tokens by this fake's rule: one per chunk, of thinking and of text."""
    return len(reply.chunks) + (len(reply.thinking) if isinstance(reply, ThinkingReply) else 0)


def _message(reply: TextReply | ThinkingReply, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    output_tokens = _output_tokens(reply)
    if isinstance(reply, ThinkingReply):
        content.append(
            {"type": "thinking", "thinking": "".join(reply.thinking), "signature": reply.signature}
        )
        if reply.redacted:
            content.append({"type": "redacted_thinking", "data": reply.redacted_data})
    content.append({"type": "text", "text": "".join(reply.chunks)})
    return {
        "id": _new_id("msg_fake"),
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": model,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": output_tokens},
    }


class FakeAnthropic:
    """A local fake of the Anthropic Messages API answering from a FIFO queue of replies."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.hang_ups = 0  # answers the client cut short by closing its connection
        self.cache = PromptCache()
        # On: the prompt is counted by the fake's rule and billed as the cache has it (not
        # by the reply's input_tokens), and `billed` keeps each reply's bill.
        self.accounting = False
        self.billed: list[tuple[Billed, int]] = []  # (the prompt's bill, output tokens)
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Root URL to pass as the SDK's `base_url`; the SDK appends `/v1/messages`."""
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeAnthropic:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-anthropic-{server.server_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, sever live connections and release the port."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server, self._thread = None, None
        self._stopping.set()
        server.shutdown()
        server.sever_all()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
        """Start the fake."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the fake."""
        self.stop()

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies; each /v1/messages request takes the oldest, else a default TextReply."""
        with self._lock:
            self._replies.extend(replies)

    def reset(self) -> None:
        """Forget queued replies, recorded requests and hang-ups."""
        with self._lock:
            self._replies.clear()
            self.requests.clear()
            self.hang_ups = 0
            self.accounting = False
            self.billed.clear()
        self.cache.clear()

    def _billed(self, billed: Billed, output_tokens: int) -> None:
        with self._lock:
            self.billed.append((billed, output_tokens))

    def _hung_up(self) -> None:
        with self._lock:
            self.hang_ups += 1

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else TextReply()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
