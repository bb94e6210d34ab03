"""Checks that the fake OpenAI upstream speaks the protocol the official SDK expects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI, ReasoningReply, TextReply

MODEL = "gpt-fake-1"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A running fake upstream, stopped after the test."""
    with FakeOpenAI(models=("gpt-fake-1", "gpt-fake-2")) as upstream:
        yield upstream


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    """A synchronous SDK client pointed at the fake, without retries."""
    with openai.OpenAI(api_key="test", base_url=fake.base_url, max_retries=0, timeout=10.0) as sdk:
        yield sdk


def _raw_events(client: openai.OpenAI, **options: Any) -> list[Any]:
    """Stream one completion and return its data lines, decoded where they are JSON."""
    with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True, **options
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["transfer-encoding"] == "chunked"
        raw = response.read().decode()
    lines = [block.removeprefix("data: ") for block in raw.split("\n\n") if block]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


def test_stream_shape_with_usage(client: openai.OpenAI) -> None:
    """Role chunk, text chunks, finish chunk, then usage with no choices, then [DONE]."""
    events = _raw_events(client, stream_options={"include_usage": True})

    *chunks, usage, done = events
    assert done == "[DONE]"
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "Hello"},
        {"content": ", "},
        {"content": "world"},
        {"content": "!"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 5 + ["stop"]
    assert all(c["usage"] is None and c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in [*chunks, usage]}) == 1
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}


def test_stream_shape_without_usage(client: openai.OpenAI) -> None:
    """Without include_usage no chunk has a usage field and none is added at the end."""
    events = _raw_events(client)

    assert events[-1] == "[DONE]"
    assert all("usage" not in event for event in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_whole_completion(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    """A non-streaming call gets one chat.completion the SDK parses."""
    fake.enqueue(TextReply(chunks=("a", "b"), finish_reason="length", prompt_tokens=3))

    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )

    assert completion.choices[0].message.content == "ab"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 2)


def test_models_list(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    """GET /v1/models lists the fake's models and is recorded."""
    ids = [model.id for model in client.models.list()]

    assert ids == ["gpt-fake-1", "gpt-fake-2"]
    assert (fake.requests[0].method, fake.requests[0].path) == ("GET", "/v1/models")


def test_unknown_path_is_openai_404(client: openai.OpenAI) -> None:
    """Other paths answer 404 with OpenAI's error body."""
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model=MODEL, input="hi")

    assert caught.value.code == "unknown_url"


def _reasoning_and_text(client: openai.OpenAI) -> tuple[list[str], list[str], list[Any]]:
    """Stream one completion through the SDK; return reasoning pieces, text pieces, chunks."""
    reasoning: list[str] = []
    texts: list[str] = []
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    for chunk in chunks:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        extra = delta.model_extra or {}
        # The SDK has no field for either name; it keeps them as extras on the delta.
        piece = extra.get("reasoning_content") or extra.get("reasoning")
        if piece:
            reasoning.append(piece)
        if delta.content:
            texts.append(delta.content)
    return reasoning, texts, chunks


def test_reasoning_content_stream(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    """reasoning_content chunks come before content chunks, then finish and usage."""
    fake.enqueue(ReasoningReply(reasoning=("Let me", " think."), chunks=("Ans", "wer")))

    reasoning, texts, chunks = _reasoning_and_text(client)

    assert reasoning == ["Let me", " think."]
    assert texts == ["Ans", "wer"]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert getattr(deltas[1], "reasoning_content") == "Let me"  # noqa: B009
    assert deltas[1].content is None
    assert deltas[3].content == "Ans"
    assert "reasoning_content" not in (deltas[3].model_extra or {})
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 4, 16)
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 2


def test_reasoning_field_name_is_selectable(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    """field="reasoning" plays newer vLLM, which names the delta field `reasoning`."""
    fake.enqueue(ReasoningReply(reasoning=("Hm",), chunks=("Yes",), field="reasoning"))

    events = _raw_events(client)

    assert [e["choices"][0]["delta"] for e in events[:-1]] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"reasoning": "Hm"},
        {"content": "Yes"},
        {},
    ]


def test_reasoning_whole_completion(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    """A non-streaming call puts the reasoning beside content on the message."""
    fake.enqueue(ReasoningReply(reasoning=("a", "b"), chunks=("c",)))

    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )

    message = completion.choices[0].message
    assert message.content == "c"
    assert (message.model_extra or {})["reasoning_content"] == "ab"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


def test_image_parts_are_recorded(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    """The request body keeps image_url data-URL parts exactly as the SDK sent them."""
    url = "data:image/png;base64,iVBORw0KGgo="
    client.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )

    assert fake.requests[0].body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
