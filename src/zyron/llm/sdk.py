"""What the official SDKs' providers share: their HTTP client, timeouts and transport errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import httpx2

from zyron.errors import UpstreamError
from zyron.llm.errors import upstream_disconnected, upstream_malformed, upstream_timeout

HttpBackend = Literal["aiohttp", "httpx"]


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


def transport_error(exc: Exception) -> UpstreamError:
    """Map a failure raised while reading a stream, which the SDKs pass on unwrapped.

    Anything but a transport error is an event that is not what the protocol promises: not
    JSON (ValueError), or JSON of another shape (KeyError, TypeError, AttributeError).
    """
    if isinstance(exc, httpx2.TimeoutException):
        return upstream_timeout("The model provider stopped sending before the reply was complete.")
    if isinstance(exc, httpx2.HTTPError):
        return upstream_disconnected(
            "The model provider closed the connection before the reply was complete."
        )
    return upstream_malformed()
