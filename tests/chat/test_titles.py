"""Unit tests of title making: cleaning a model's answer, the fallback, failures and timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import pytest

from zyron.chat.titles import (
    MAX_TITLE_CHARS,
    TitleRequest,
    clean_title,
    fallback_title,
    make_title,
)
from zyron.errors import UpstreamError
from zyron.llm.base import (
    CacheTtl,
    Finished,
    PromptMessage,
    ProviderEvent,
    ProviderStatus,
    Reasoning,
    TextDelta,
    TokenUsage,
)


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Paris travel tips", "Paris travel tips"),
        ('"Paris travel tips."', "Paris travel tips"),
        ("Title: Paris travel tips", "Paris travel tips"),
        ("**Paris   travel tips**\nHere is why…", "Paris travel tips"),
        ("\n\n  # Paris travel tips  \n", "Paris travel tips"),
        ("\u201cParis travel tips\u201d", "Paris travel tips"),
        ("", None),
        (' "" \n ** ', None),
    ],
)
def test_clean_title(answer: str, title: str | None) -> None:
    """Quotes, labels, markdown and extra lines are removed; nothing left is None."""
    assert clean_title(answer) == title


def test_an_answer_instead_of_a_title_is_refused() -> None:
    """More than ten words is a reply, not a title: None, so the fallback is used."""
    assert (
        clean_title("Baking sourdough bread is a fun and rewarding process that needs time") is None
    )
    assert clean_title("The capital of France is Paris.") == "The capital of France is Paris"


def test_long_title_is_cut_at_a_word() -> None:
    """Few but long words are cut to the limit at a word boundary."""
    title = clean_title("extraordinarily " * 8)
    assert title is not None
    assert len(title) <= MAX_TITLE_CHARS
    assert title.endswith("…")
    assert "  " not in title


def test_fallback_is_the_first_words() -> None:
    """Without a usable answer, the title is the message's first words."""
    assert fallback_title("How do I bake bread?") == "How do I bake bread?"
    assert fallback_title("one two three four five six seven eight nine ten") == (
        "one two three four five six seven eight…"
    )
    assert fallback_title("   ") == "Chat"


class _Scripted:
    """A provider that answers with fixed pieces, fails, or hangs."""

    name = "scripted"
    kind: Literal["anthropic"] = "anthropic"

    def __init__(self, pieces: Sequence[str] = (), error: bool = False, hang: bool = False):
        self.status = ProviderStatus()
        self.pieces, self.error, self.hang = pieces, error, hang
        self.calls: list[dict[str, Any]] = []

    async def stream(
        self,
        *,
        model: str,
        system: str | None,
        messages: Sequence[PromptMessage],
        max_tokens: int,
        reasoning: Reasoning | None = None,
        cache_ttl: CacheTtl | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        self.calls.append({"model": model, "system": system, "messages": list(messages)})
        if self.hang:
            await asyncio.sleep(3600)
        if self.error:
            raise UpstreamError("upstream_overloaded", "busy", status_code=503, retryable=True)
        for piece in self.pieces:
            yield TextDelta(piece)
        yield Finished("end_turn", TokenUsage(input_tokens=1, output_tokens=1), model)

    def count_tokens(self, text: str) -> int | None:
        return None

    def health(self) -> dict[str, Any]:
        return {}

    async def aclose(self) -> None:
        return None


def _request(provider: _Scripted, message: str = "Plan a weekend in Paris") -> TitleRequest:
    return TitleRequest(provider=provider, model="m", message=message)


def test_title_comes_from_the_model() -> None:
    """The model is asked with the exchange, and its answer is cleaned."""
    provider = _Scripted(['"Weekend', " in Paris", '"'])
    title = asyncio.run(make_title(_request(provider), "Day one: the Louvre", within=5))
    assert title == "Weekend in Paris"
    sent = provider.calls[0]["messages"][0]["content"]
    assert "Plan a weekend in Paris" in sent
    assert "Day one: the Louvre" in sent


def test_model_failure_falls_back_to_the_message() -> None:
    """An upstream error gives the fallback title, not an exception."""
    title = asyncio.run(make_title(_request(_Scripted(error=True)), "reply", within=5))
    assert title == "Plan a weekend in Paris"


def test_slow_model_falls_back_in_time() -> None:
    """A model that does not answer in time gives the fallback title."""
    title = asyncio.run(make_title(_request(_Scripted(hang=True)), "reply", within=0.1))
    assert title == "Plan a weekend in Paris"


def test_empty_answer_falls_back() -> None:
    """An answer with no words gives the fallback title."""
    title = asyncio.run(make_title(_request(_Scripted(['""'])), "reply", within=5))
    assert title == "Plan a weekend in Paris"
