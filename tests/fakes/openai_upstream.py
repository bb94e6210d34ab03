"""Fake OpenAI chat completions API: a real local HTTP server speaking the streaming protocol."""

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
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

__all__ = [
    "Drop",
    "FakeOpenAI",
    "Garbage",
    "HttpError",
    "MidStreamError",
    "ReasoningReply",
    "RecordedRequest",
    "Reply",
    "TextReply",
    "Truncated",
]

# Bounds every blocking socket operation in the server so a stuck client can never hang a test.
_SOCKET_TIMEOUT = 10.0
_COMPLETIONS_PATH = "/v1/chat/completions"
_MODELS_PATH = "/v1/models"
_DEFAULT_PROMPT_TOKENS = 12


@dataclass(frozen=True)
class TextReply:
    """A normal reply: a role chunk, one chunk per text piece, a finish chunk, usage, [DONE]."""

    chunks: Sequence[str] = ("Hello", ", ", "world", "!")
    finish_reason: str = "stop"
    prompt_tokens: int = _DEFAULT_PROMPT_TOKENS
    # Of prompt_tokens, those the server had cached (`prompt_tokens_details.cached_tokens`, as
    # OpenAI and vLLM report them); None sends no details, as most servers do.
    cached_tokens: int | None = None
    chunk_delay: float = 0.0
    first_delay: float = 0.0
    # False plays a server that ignores stream_options.include_usage (older Ollama, llama.cpp).
    usage: bool = True
    # The model the chunks name; None echoes the requested one, as servers do.
    model: str | None = None
    # Data of one more event sent after `[DONE]`, which a client must not read as a chunk.
    after_done: str | None = None
    # True keeps the connection open for the next request instead of closing it.
    keep_alive: bool = False


@dataclass(frozen=True)
class ReasoningReply:
    """A reasoning model's reply: reasoning chunks, then text chunks, finish, usage, [DONE].

    vLLM, DeepSeek and Ollama stream the chain of thought in `delta.reasoning_content`;
    vLLM 0.11 and later name it `delta.reasoning` (`field` picks which one is sent).
    """

    reasoning: Sequence[str] = ("Let me", " think.")
    chunks: Sequence[str] = ("Answer",)
    field: Literal["reasoning_content", "reasoning"] = "reasoning_content"
    finish_reason: str = "stop"
    prompt_tokens: int = _DEFAULT_PROMPT_TOKENS
    chunk_delay: float = 0.0
    usage: bool = True
    model: str | None = None


@dataclass(frozen=True)
class HttpError:
    """A non-200 response with OpenAI's error body, sent instead of any stream."""

    status: int
    message: str = "error"
    error_type: str = "invalid_request_error"
    code: str | int | None = None
    retry_after: str | None = None
    # Sent as the whole body instead of OpenAI's shape, e.g. Ollama's {"error": "..."}.
    raw_body: dict[str, Any] | None = None


@dataclass(frozen=True)
class MidStreamError:
    """Some text chunks, then `data: {"error": {...}}` and the end of the stream.

    OpenAI sends `code` as a name; OpenRouter and vLLM send the HTTP status as a number.
    """

    chunks: Sequence[str] = ("Partial",)
    message: str = "The server had an error while processing your request."
    error_type: str | None = "server_error"
    code: str | int | None = None
    # An `event:` line before the error's data, as some proxies send (`error`); None sends none.
    event: str | None = None


@dataclass(frozen=True)
class Drop:
    """Some text chunks, then the connection is closed in the middle of the body."""

    chunks: Sequence[str] = ("Partial",)


@dataclass(frozen=True)
class Truncated:
    """Some text chunks, then a cleanly finished body in which no choice has a finish_reason."""

    chunks: Sequence[str] = ("Partial",)
    done: bool = True  # whether `data: [DONE]` still ends it


@dataclass(frozen=True)
class Garbage:
    """Some text chunks, then a data line that is not JSON (or `payload`: any other data)."""

    chunks: Sequence[str] = ("Partial",)
    payload: str = "{not json"


Reply = TextReply | ReasoningReply | HttpError | MidStreamError | Drop | Truncated | Garbage


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received by the fake, recorded before it was answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)
    client_port: int = 0  # tells requests sent on one kept-alive connection


def _error_body(
    message: str, error_type: str | None, code: str | int | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _usage(
    prompt_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int | None = None,
    cached_tokens: int | None = None,
) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    if reasoning_tokens is not None:
        # Reasoning servers count the chain of thought inside completion_tokens and say how much.
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return usage


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


class _StoppedError(Exception):
    """Raised inside a handler when the fake is stopped while the handler is waiting."""


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its fake and can sever live connections on stop."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, fake: FakeOpenAI) -> None:
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


class _Stream:
    """Writes one chat completion's chunks as chunked SSE `data:` lines."""

    def __init__(
        self, handler: _Handler, model: str, include_usage: bool, *, keep_alive: bool = False
    ) -> None:
        self._handler = handler
        self.model = model
        self.include_usage = include_usage
        self.keep_alive = keep_alive
        self._id = _new_id("chatcmpl-fake")
        self._created = int(time.time())

    def begin(self) -> None:
        """Send the headers; chunked framing tells a finished body from a dropped one."""
        handler = self._handler
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream; charset=utf-8")
        handler.send_header("cache-control", "no-cache")
        handler.send_header("x-request-id", _new_id("req_fake"))
        handler.send_header("transfer-encoding", "chunked")
        if not self.keep_alive:
            handler.send_header("connection", "close")
        handler.end_headers()
        handler.wfile.flush()

    def raw(self, data: str, event: str | None = None) -> None:
        """Send one SSE event with `data` as its data line, named `event` if given."""
        name = f"event: {event}\n" if event is not None else ""
        payload = f"{name}data: {data}\n\n".encode()
        self._handler.wfile.write(b"%x\r\n%b\r\n" % (len(payload), payload))
        self._handler.wfile.flush()

    def send(self, payload: dict[str, Any], event: str | None = None) -> None:
        """Send one JSON event."""
        self.raw(json.dumps(payload, separators=(",", ":")), event)

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> None:
        """Send a chat.completion.chunk with one choice."""
        payload: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:  # every chunk but the last carries `"usage": null` then
            payload["usage"] = None
        self.send(payload)

    def role(self) -> None:
        """Send the first chunk, which names the role and has empty content."""
        self.chunk({"role": "assistant", "content": "", "refusal": None})

    def text(self, text: str) -> None:
        """Send one piece of the reply's text."""
        self.chunk({"content": text})

    def usage(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        reasoning_tokens: int | None = None,
        cached_tokens: int | None = None,
    ) -> None:
        """Send the usage chunk that `stream_options.include_usage` asks for."""
        usage = _usage(prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens)
        self.send(
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self.model,
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": usage,
            }
        )

    def done(self) -> None:
        """Send the `[DONE]` sentinel."""
        self.raw("[DONE]")

    def end(self) -> None:
        """Finish the chunked body."""
        self._handler.wfile.write(b"0\r\n\r\n")
        self._handler.wfile.flush()


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection; every response closes it, unless a TextReply asks to keep it."""

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
        """Handle GET requests."""
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
        fake._record(
            RecordedRequest(
                method=self.command,
                path=self.path,
                headers=headers,
                body=body,
                client_port=int(self.client_address[1]),
            )
        )

        path = self.path.split("?", 1)[0]
        try:
            if self.command == "GET" and path == _MODELS_PATH:
                models = [{"id": m, "object": "model", "owned_by": "fake"} for m in fake.models]
                self._send_json(200, {"object": "list", "data": models})
            elif self.command != "POST" or path != _COMPLETIONS_PATH:
                self._send_json(
                    404,
                    _error_body(
                        f"Unknown request URL: {self.command} {path}.",
                        "invalid_request_error",
                        "unknown_url",
                    ),
                )
            elif not parsed_ok:
                self._send_json(
                    400,
                    _error_body(
                        "We could not parse the JSON body of your request.",
                        "invalid_request_error",
                    ),
                )
            else:
                self._answer(fake._next_reply(), body)
        except (OSError, _StoppedError):
            # The client hung up or the fake is stopping; nothing useful left to say.
            return

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _answer(self, reply: Reply, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        if isinstance(reply, HttpError):
            payload = reply.raw_body or _error_body(reply.message, reply.error_type, reply.code)
            self._send_json(reply.status, payload, retry_after=reply.retry_after)
            return
        if body.get("stream") is not True:
            self._answer_whole(reply, model)
            return
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        if isinstance(reply, TextReply | ReasoningReply):
            model = reply.model or model
        keep_alive = isinstance(reply, TextReply) and reply.keep_alive
        out = _Stream(self, model, include_usage, keep_alive=keep_alive)
        if isinstance(reply, ReasoningReply):
            self._stream_reasoning(reply, out)
            return
        out.begin()
        if isinstance(reply, TextReply):
            self._sleep(reply.first_delay)
        out.role()
        for text in reply.chunks:
            if isinstance(reply, TextReply):
                self._sleep(reply.chunk_delay)
            out.text(text)
        if isinstance(reply, TextReply):
            out.chunk({}, finish_reason=reply.finish_reason)
            if include_usage and reply.usage:
                out.usage(reply.prompt_tokens, len(reply.chunks), cached_tokens=reply.cached_tokens)
            out.done()
            if reply.after_done is not None:
                out.raw(reply.after_done)
        elif isinstance(reply, MidStreamError):
            out.send(_error_body(reply.message, reply.error_type, reply.code), reply.event)
        elif isinstance(reply, Garbage):
            out.raw(reply.payload)
        elif isinstance(reply, Truncated):
            if reply.done:
                out.done()
        else:
            # No terminating chunk: the socket closes mid-body, which the client sees as such.
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        out.end()
        if keep_alive:
            self.close_connection = False  # serve the connection's next request

    def _stream_reasoning(self, reply: ReasoningReply, out: _Stream) -> None:
        """Stream a ReasoningReply: reasoning deltas carry no `content` key, as vLLM sends them."""
        out.begin()
        out.role()
        for piece in reply.reasoning:
            self._sleep(reply.chunk_delay)
            out.chunk({reply.field: piece})
        for text in reply.chunks:
            self._sleep(reply.chunk_delay)
            out.text(text)
        out.chunk({}, finish_reason=reply.finish_reason)
        if out.include_usage and reply.usage:
            reasoning_tokens = len(reply.reasoning)
            out.usage(reply.prompt_tokens, reasoning_tokens + len(reply.chunks), reasoning_tokens)
        out.done()
        out.end()

    def _answer_whole(self, reply: Reply, model: str) -> None:
        """Answer a non-streaming call: a chat.completion, or an error as the real API would."""
        if isinstance(reply, TextReply | ReasoningReply):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(reply.chunks),
                "refusal": None,
            }
            completion_tokens = len(reply.chunks)
            reasoning_tokens: int | None = None
            if isinstance(reply, ReasoningReply):
                self._sleep(reply.chunk_delay * (len(reply.reasoning) + len(reply.chunks)))
                message[reply.field] = "".join(reply.reasoning)
                reasoning_tokens = len(reply.reasoning)
                completion_tokens += reasoning_tokens
            else:
                self._sleep(reply.first_delay + reply.chunk_delay * len(reply.chunks))
            self._send_json(
                200,
                {
                    "id": _new_id("chatcmpl-fake"),
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": reply.model or model,
                    "system_fingerprint": "fp_fake",
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "logprobs": None,
                            "finish_reason": reply.finish_reason,
                        }
                    ],
                    "usage": _usage(reply.prompt_tokens, completion_tokens, reasoning_tokens),
                },
            )
        elif isinstance(reply, MidStreamError):
            status = reply.code if isinstance(reply.code, int) else 500
            self._send_json(status, _error_body(reply.message, reply.error_type, reply.code))
        # Any other failure sends nothing at all: the handler returns and the socket closes.

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
        self.send_header("x-request-id", _new_id("req_fake"))
        if retry_after is not None:
            self.send_header("retry-after", retry_after)
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


class FakeOpenAI:
    """A local fake of OpenAI's chat completions API answering from a FIFO queue of replies."""

    def __init__(self, models: Sequence[str] = ("gpt-fake-1",)) -> None:
        self.requests: list[RecordedRequest] = []
        self.models = list(models)  # what GET /v1/models lists
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """URL to pass as the SDK's `base_url`; the SDK appends `/chat/completions`."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def start(self) -> FakeOpenAI:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-openai-{server.server_port}",
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

    def __enter__(self) -> FakeOpenAI:
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
        """Queue replies; each completions request takes the oldest, else a default TextReply."""
        with self._lock:
            self._replies.extend(replies)

    def reset(self) -> None:
        """Forget queued replies and recorded requests."""
        with self._lock:
            self._replies.clear()
            self.requests.clear()

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else TextReply()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
