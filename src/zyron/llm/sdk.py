"""What the official SDKs' providers share: their HTTP client, timeouts and transport errors."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any, Literal

import anyio
import httpx2

from zyron.errors import UpstreamError
from zyron.llm.errors import upstream_disconnected, upstream_malformed, upstream_timeout

HttpBackend = Literal["aiohttp", "httpx"]

# What decoding an event raises when its data is not JSON (ValueError) or JSON not of the
# protocol's shape: caught around the decoding only, so a bug elsewhere is not "malformed".
SHAPE_ERRORS = (ValueError, KeyError, TypeError, AttributeError)
# Failures of reading a body that httpx2 can pass on unmapped (TLS over AnyIO); the SDKs' own
# stream readers count them as a lost connection.
UNMAPPED_READ_ERRORS = (ssl.SSLError, anyio.EndOfStream)
# Everything reading a body can fail with, for transport_error.
READ_ERRORS = (httpx2.HTTPError, ssl.SSLError, anyio.EndOfStream)


def http_client(
    aiohttp_client: Callable[..., Any],
    httpx_client: Callable[..., Any],
    *,
    backend: HttpBackend,
    max_connections: int,
) -> Any:
    """Return one of an SDK's own HTTP clients, its keep-alive cap raised with the limit.

    Both are the SDK's clients with its defaults; aiohttp is the SDKs' documented choice "for
    improved concurrency performance" and reads a stream for about half the CPU.
    """
    limits = httpx2.Limits(
        max_connections=max_connections,
        max_keepalive_connections=min(max_connections, 1000),
    )
    factory = aiohttp_client if backend == "aiohttp" else httpx_client
    return factory(limits=limits)


def timeout(total_seconds: float, connect_seconds: float) -> httpx2.Timeout:
    """Return the SDK timeout: the whole request, and connecting."""
    return httpx2.Timeout(total_seconds, connect=connect_seconds)


def text_field(value: object) -> str:
    """A string field of a streamed event; anything else is a malformed event (TypeError)."""
    if isinstance(value, str):
        return value
    raise TypeError("a text field that is not a string")


def token_count(value: object) -> int:
    """A token count of a streamed event; anything but a whole number is malformed (TypeError)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError("a token count that is not an integer")


def transport_error(exc: Exception) -> UpstreamError:
    """Map a failure raised while reading a stream, which the SDKs pass on unwrapped."""
    if isinstance(exc, UNMAPPED_READ_ERRORS):
        return upstream_disconnected(
            "The model provider closed the connection before the reply was complete."
        )
    if isinstance(exc, httpx2.TimeoutException):
        return upstream_timeout("The model provider stopped sending before the reply was complete.")
    if isinstance(exc, httpx2.HTTPError):
        return upstream_disconnected(
            "The model provider closed the connection before the reply was complete."
        )
    return upstream_malformed()
