"""The provider protocol: stream a reply as text deltas, then one Finished event."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict
from urllib.parse import urlsplit, urlunsplit

ProviderKind = Literal["anthropic", "openai", "local"]


class PromptMessage(TypedDict):
    """One turn sent to the model."""

    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply's text."""

    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The reply ended normally."""

    stop_reason: str | None
    input_tokens: int
    output_tokens: int
    model: str


ProviderEvent = TextDelta | Finished


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model this server offers: the id clients use and the limits it is used within."""

    id: str
    provider: str  # the name of the provider instance that serves it
    context_window: int  # tokens of prompt and reply together
    max_output: int  # the most tokens one reply may have
    upstream_id: str  # the provider's own name for it (usually the same as `id`)


class ProviderStatus:
    """What a provider saw of its upstream lately, for /health: no call is made to find out."""

    def __init__(self) -> None:
        self.last_success_at: float | None = None
        self.last_error_at: float | None = None
        self.last_error: str | None = None

    def succeeded(self) -> None:
        """Record a reply that finished."""
        self.last_success_at = time.time()

    def failed(self, code: str) -> None:
        """Record an upstream failure by its error code."""
        self.last_error_at = time.time()
        self.last_error = code

    @property
    def state(self) -> Literal["ok", "failing", "unknown"]:
        """Tell whether the latest call succeeded, failed, or none was made yet."""
        if self.last_error_at is None:
            return "unknown" if self.last_success_at is None else "ok"
        if self.last_success_at is not None and self.last_success_at > self.last_error_at:
            return "ok"
        return "failing"

    def report(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values."""
        return {
            "state": self.state,
            "last_success_at": _iso(self.last_success_at),
            "last_error_at": _iso(self.last_error_at),
            "last_error": self.last_error,
        }


def public_url(url: str | None) -> str | None:
    """Return a URL fit for /health: no credentials, query or fragment."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


class Provider(Protocol):
    """Something that streams a model's reply; failures raise zyron.errors.UpstreamError."""

    name: str
    status: ProviderStatus

    @property
    def kind(self) -> ProviderKind:
        """Which protocol it speaks: anthropic, openai (compatible) or local."""
        ...

    def stream(
        self,
        *,
        model: str,
        system: str | None,
        messages: Sequence[PromptMessage],
        max_tokens: int,
    ) -> AsyncIterator[ProviderEvent]:
        """Yield the reply's text deltas, then Finished; `model` is the upstream id."""
        ...

    def count_tokens(self, text: str) -> int | None:
        """Count `text` in the model's tokens with a local tokenizer; None if there is none."""
        ...

    def health(self) -> dict[str, Any]:
        """Report the provider's state without calling a paid API."""
        ...

    async def aclose(self) -> None:
        """Release connections and models."""
        ...
