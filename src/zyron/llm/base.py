"""The provider protocol: stream a reply as reasoning and text deltas, then one Finished event."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NotRequired, Protocol, TypedDict
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from zyron.llm.prices import Prices

ProviderKind = Literal["anthropic", "openai", "local"]


AttachmentKind = Literal["image", "pdf", "text"]
Effort = Literal["low", "medium", "high", "xhigh", "max"]
# How a model is asked to think: Anthropic's manual budget ("enabled" with budget_tokens),
# adaptive thinking with an effort, or both; None: it does not reason on request.
ReasoningMode = Literal["budget", "adaptive", "both"]
CacheTtl = Literal["5m", "1h"]  # Anthropic's prompt cache lifetimes


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that goes to the model with a user turn, its bytes loaded."""

    kind: AttachmentKind
    media_type: str
    filename: str
    data: bytes
    tokens: int  # what it costs in the prompt, by the provider's documented formula
    # The file was deleted: the model is told so instead of receiving it.
    missing: bool = False
    # The model does not take this kind (an earlier turn's image, the model switched since).
    omitted: bool = False


class PromptMessage(TypedDict):
    """One turn sent to the model: its text, and what else goes with it."""

    role: Literal["user", "assistant"]
    content: str
    # A user turn's files, sent before its text.
    attachments: NotRequired[list[Attachment]]
    # An assistant turn as stored (text, reasoning with signatures): what goes back to the
    # provider that produced the reasoning, in its order.
    parts: NotRequired[list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Reasoning:
    """What a request asks of the model's thinking: a token budget, or an effort."""

    budget_tokens: int | None = None
    effort: Effort | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's thinking."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningEnd:
    """A thinking block ended: its signature, or a redacted block's data, kept server-side."""

    signature: str | None = None
    redacted: str | None = None


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """What a reply was billed, by kind, in Anthropic's meanings (docs/costs.md)."""

    input_tokens: int = 0  # input neither read from nor written to the prompt cache
    output_tokens: int = 0  # thinking included
    cache_creation_input_tokens: int = 0  # input written to the cache
    cache_read_input_tokens: int = 0  # input read from the cache
    # Of cache_creation_input_tokens, those written with the 1-hour TTL (priced higher).
    cache_creation_1h_input_tokens: int = 0
    reasoning_tokens: int | None = None  # of output_tokens, where the provider says

    @property
    def prompt_tokens(self) -> int:
        """The whole prompt, however it was billed: what quotas and calibration count."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def public(self) -> dict[str, int | None]:
        """The usage as the API shows it (`done.usage`, messages, GET /usage)."""
        return {kind: getattr(self, kind) for kind in USAGE_KINDS}


# The kinds the API shows and the tables keep, per reply and per day.
USAGE_KINDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "reasoning_tokens",
)


@dataclass(frozen=True, slots=True)
class Finished:
    """The reply ended normally."""

    stop_reason: str | None
    usage: TokenUsage
    model: str


ProviderEvent = TextDelta | ReasoningDelta | ReasoningEnd | Finished


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model this server offers: the id clients use and the limits it is used within."""

    id: str
    provider: str  # the name of the provider instance that serves it
    context_window: int  # tokens of prompt and reply together
    max_output: int  # the most tokens one reply may have
    upstream_id: str  # the provider's own name for it (usually the same as `id`)
    vision: bool = False  # takes images
    pdf: bool = False  # takes PDF documents
    reasoning: ReasoningMode | None = None  # thinks on request, and how it is asked to
    # Prompt caching with breakpoints (Claude): the smallest prompt the model caches; None
    # where the prompt is not marked (another provider, or caching switched off).
    cache_min_tokens: int | None = None
    # What its tokens cost (zyron.llm.prices); None: unpriced, reported as such, never as free.
    prices: Prices | None = None


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
        reasoning: Reasoning | None = None,
        cache_ttl: CacheTtl | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        """Yield the reply's reasoning and text deltas, then Finished; `model` is upstream's.

        `cache_ttl`: place prompt cache breakpoints with that lifetime, where the provider can.
        """
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
