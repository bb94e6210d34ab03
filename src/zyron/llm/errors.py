"""The upstream_* errors every provider raises, so all of them fail alike for clients."""

from __future__ import annotations

import re

from zyron.errors import UpstreamError

# Provider keys (sk-ant-..., sk-proj-..., sk-or-v1-...) and bearer tokens, should a provider
# ever echo one back in an error message that is passed on to clients.
_API_KEY = re.compile(r"\b(sk-[A-Za-z0-9_-]{8,}|Bearer\s+\S+)", re.IGNORECASE)


def upstream_error_for_status(
    status: int,
    message: str,
    *,
    retry_after: str | None,
    key_name: str,
    overloaded: bool = False,
) -> UpstreamError:
    """Map an upstream HTTP status (or the status an in-stream error stands for) to an error.

    `message` is the provider's own explanation, shown only where it helps the client fix its
    request; anything shaped like an API key is masked first. `key_name` names the setting the
    operator must fix when the provider rejects the API key; the key itself is never shown.
    """
    message = _API_KEY.sub("[redacted]", message)
    if overloaded:
        return UpstreamError(
            "upstream_overloaded",
            f"The model provider is overloaded; try again shortly. ({message})",
            status_code=503,
            retryable=True,
            retry_after=retry_after,
        )
    if status == 429:
        return UpstreamError(
            "upstream_rate_limited",
            f"The model provider is rate limiting this server; try again later. ({message})",
            status_code=429,
            retryable=True,
            retry_after=retry_after,
        )
    if status in (401, 403):
        return UpstreamError(
            "upstream_auth",
            f"The model provider rejected this server's API key; the operator must fix {key_name}.",
            status_code=502,
            retryable=False,
        )
    if 400 <= status < 500:
        return UpstreamError(
            "upstream_bad_request",
            f"The model provider rejected the request: {message}",
            status_code=400,
            retryable=False,
        )
    return UpstreamError(
        "upstream_unavailable",
        f"The model provider failed ({status}); try again shortly.",
        status_code=502,
        retryable=True,
        retry_after=retry_after,
    )


def upstream_timeout(detail: str = "The model provider timed out.") -> UpstreamError:
    """Report an upstream that took longer than the configured timeout."""
    return UpstreamError("upstream_unavailable", detail, status_code=504, retryable=True)


def upstream_disconnected(
    detail: str = "The model provider could not be reached or closed the connection.",
) -> UpstreamError:
    """Report an upstream that refused or dropped the connection."""
    return UpstreamError("upstream_unavailable", detail, status_code=502, retryable=True)


def upstream_malformed() -> UpstreamError:
    """Report a body or event that is not the JSON the protocol promises."""
    return UpstreamError(
        "upstream_unavailable",
        "The model provider sent a malformed response.",
        status_code=502,
        retryable=True,
    )


def upstream_cut_off() -> UpstreamError:
    """Report a stream that ended cleanly but before the reply said it was complete."""
    return UpstreamError(
        "upstream_unavailable",
        "The model provider ended the stream before the reply was complete.",
        status_code=502,
        retryable=True,
    )
