"""Pure ASGI middleware: they never buffer, so streamed replies flow through untouched."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zyron.ops import metrics

log = logging.getLogger("zyron.access")

# Methods counted by name; any other a client sends is `_OTHER`, so no client can make up
# label values without end.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# A share link's token is in its path (/shared/{token}...): a secret, never logged.
_SHARE_TOKEN = re.compile(r"(/shared/)[^/]+")


def loggable_path(path: str) -> str:
    """Return a request path fit for the logs: a share link's token replaced."""
    return _SHARE_TOKEN.sub(r"\1[token]", path) if "/shared/" in path else path


@dataclass(frozen=True, slots=True)
class BodyCap:
    """A cap on request bodies, and the name of the limit it comes from (said in the 413)."""

    max_bytes: int
    limit: str


class BodySizeLimit:
    """Answer 413 to request bodies over their path's cap, by Content-Length or as they stream.

    `caps` maps a path to its own cap (uploads, chat with inline attachments); every other
    path has `default`. One dict lookup per request.
    """

    def __init__(
        self, app: ASGIApp, default: BodyCap, caps: Mapping[str, BodyCap] | None = None
    ) -> None:
        self.app = app
        self.default = default
        self.caps = dict(caps or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.caps.get(scope["path"], self.default)
        max_bytes = cap.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send, cap)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise _TooLarge(cap)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send, cap)

    async def _reject(self, send: Send, cap: BodyCap) -> None:
        body = json.dumps({"error": "payload_too_large", "detail": _too_large(cap)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _too_large(cap: BodyCap) -> str:
    return f"The request body exceeds {cap.max_bytes} bytes ({cap.limit})."


class _TooLarge(HTTPException):
    """Raised inside receive() when a streamed body crosses the limit; rendered as a 413."""

    def __init__(self, cap: BodyCap) -> None:
        super().__init__(413, _too_large(cap))


class AccessLog:
    """Log one line per request (method, path without query string, status, duration), and
    count it in /metrics by route template: once per request, never per body chunk."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        streaming = False

        async def tracking_send(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                if _is_event_stream(message):
                    streaming = True
                    metrics.streams_open.inc()
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            elapsed = time.perf_counter() - start
            if streaming:
                metrics.streams_open.dec()
            route = scope.get("route")
            method = scope["method"]
            metrics.http_duration.labels(
                method if method in KNOWN_METHODS else "_OTHER",  # as OpenTelemetry does
                getattr(route, "path", ""),
                str(status),
            ).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": loggable_path(scope["path"]),
                    "status": status,
                    "ms": round(elapsed * 1000, 1),
                },
            )


def _is_event_stream(message: Message) -> bool:
    """Tell whether a response start is a Server-Sent Events stream."""
    for name, value in message.get("headers", ()):
        if name == b"content-type":
            return bytes(value).startswith(b"text/event-stream")
    return False
