"""The provider protocol: stream a reply as text deltas, then one Finished event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict


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


class Provider(Protocol):
    """Something that streams a model's reply; failures raise zyron.errors.UpstreamError."""

    name: str

    def stream(
        self,
        *,
        model: str,
        system: str | None,
        messages: Sequence[PromptMessage],
        max_tokens: int,
    ) -> AsyncIterator[ProviderEvent]:
        """Yield the reply's text deltas, then Finished."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
