"""Claude's thinking over HTTP: streamed as reasoning events, saved, resumed, sent back."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply, ThinkingReply
from tests.fakes.openai_upstream import FakeOpenAI, ReasoningReply
from tests.support import (
    Account,
    LiveServer,
    live_server,
    parse_sse,
    signup,
    stream_chat,
)

HAIKU = "claude-haiku-4-5"  # thinks with a budget
SONNET = "claude-sonnet-5"  # thinks adaptively, refuses a budget


@pytest.fixture
def alice(client: httpx.Client) -> Account:
    """A signed-up user."""
    return signup(client)


def _reply_row(server: LiveServer, message_id: str) -> tuple[Any, ...]:
    rows = server.query(
        "SELECT content, parts, status FROM messages WHERE id = :id", id=server.id(message_id)
    )
    assert len(rows) == 1
    return rows[0]


def _parts(value: Any) -> list[dict[str, Any]]:
    """A JSON column as the driver returns it: parsed on Postgres, text on SQLite."""
    if isinstance(value, str):
        parsed: list[dict[str, Any]] = json.loads(value)
        return parsed
    return list(value)


def test_thinking_streams_before_the_reply_and_is_saved(
    client: httpx.Client, upstream: FakeAnthropic, server: LiveServer, alice: Account
) -> None:
    """reasoning events come first, ids count reasoning and text; the signature stays inside."""
    upstream.enqueue(
        ThinkingReply(thinking=("Let me", " think."), chunks=("Ans", "wer"), signature="sig-1")
    )
    events = stream_chat(
        client,
        {"message": "Why?", "model": HAIKU, "reasoning": {"budget_tokens": 2048}},
        alice.headers,
    )
    assert [(e.event, e.id) for e in events] == [
        ("session", "0"),
        ("reasoning", "6"),
        ("reasoning", "13"),
        ("delta", "16"),
        ("delta", "19"),
        ("done", "20"),
    ]
    assert "".join(e.data["text"] for e in events if e.event == "reasoning") == "Let me think."
    sent = upstream.requests[-1].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["max_tokens"] > 2048  # thinking counts inside max_tokens
    reply_id = events[0].data["assistant_message_id"]
    content, parts, status = _reply_row(server, reply_id)
    assert (content, status) == ("Answer", "complete")
    assert _parts(parts) == [
        {
            "type": "reasoning",
            "text": "Let me think.",
            "provider": "anthropic",
            "signature": "sig-1",
        },
        {"type": "text", "text": "Answer"},
    ]
    session_id = events[0].data["session_id"]
    page = client.get(f"/sessions/{session_id}/messages", headers=alice.headers).json()
    assert page[1]["parts"] == [
        {"type": "reasoning", "text": "Let me think."},
        {"type": "text", "text": "Answer"},
    ]
    assert page[1]["content"] == "Answer"
    assert page[0]["parts"] == [{"type": "text", "text": "Why?"}]
    assert "sig-1" not in str(page)


def test_next_turn_sends_thinking_back_with_its_signature(
    client: httpx.Client, upstream: FakeAnthropic, alice: Account
) -> None:
    """With thinking on, the earlier reply goes back as its blocks, in order, signed."""
    upstream.enqueue(
        ThinkingReply(thinking=("Hmm",), chunks=("One",), signature="sig-a", redacted=True)
    )
    first = stream_chat(
        client,
        {"message": "Count", "model": HAIKU, "reasoning": {"budget_tokens": 1024}},
        alice.headers,
    )
    session_id = first[0].data["session_id"]
    redacted = ThinkingReply().redacted_data
    upstream.enqueue(ThinkingReply(thinking=("More",), chunks=("Two",), signature="sig-b"))
    stream_chat(
        client,
        {"message": "Again", "session_id": session_id, "reasoning": {"effort": "low"}},
        alice.headers,
    )
    messages = upstream.requests[-1].body["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Hmm", "signature": "sig-a"},
            {"type": "redacted_thinking", "data": redacted},
            {"type": "text", "text": "One"},
        ],
    }
    # Without thinking asked for, earlier thinking is left out, as the API allows.
    upstream.enqueue(TextReply(chunks=("Three",)))
    stream_chat(client, {"message": "Once more", "session_id": session_id}, alice.headers)
    plain = upstream.requests[-1].body
    assert "thinking" not in plain
    assert plain["messages"][1] == {"role": "assistant", "content": "One"}
    assert plain["messages"][3] == {"role": "assistant", "content": "Two"}


def test_resume_mid_thinking_is_exact(
    client: httpx.Client, upstream: FakeAnthropic, server: LiveServer, alice: Account
) -> None:
    """Last-Event-ID inside the thinking gets the rest of it, then the text, live and later."""
    hold = threading.Event()
    upstream.enqueue(
        ThinkingReply(thinking=("abc", "def"), chunks=("xyz",), signature="s", hold=hold)
    )
    with client.stream(
        "POST",
        "/chat",
        json={"message": "Go", "model": HAIKU, "reasoning": {"budget_tokens": 1024}},
        headers=alice.headers,
    ) as response:
        lines = response.iter_lines()
        seen: list[str] = []
        for line in lines:
            seen.append(line)
            if line.startswith("event: reasoning"):
                break
        raw = "\n".join(seen)
        reply_id = raw.split('"assistant_message_id":"')[1].split('"')[0]
        # Mid-thinking: the first thinking delta ("abc") is out, the rest is held upstream.
        with client.stream(
            "GET",
            f"/chat/{reply_id}/stream",
            headers={**alice.headers, "Last-Event-ID": "2"},
        ) as resumed:
            hold.set()
            live, _ = parse_sse(resumed.read().decode())
    assert [(e.event, e.id, e.data.get("text")) for e in live] == [
        ("reasoning", "3", "c"),
        ("reasoning", "6", "def"),
        ("delta", "9", "xyz"),
        ("done", "10", None),
    ]
    # From the saved row, once the reply is over: the same positions.
    later = client.get(f"/chat/{reply_id}/stream", headers={**alice.headers, "Last-Event-ID": "4"})
    events, _ = parse_sse(later.text)
    assert [(e.event, e.id, e.data.get("text")) for e in events] == [
        ("reasoning", "6", "ef"),
        ("delta", "9", "xyz"),
        ("done", "10", None),
    ]
    assert _reply_row(server, reply_id)[2] == "complete"


def test_stream_false_and_replays_carry_parts(
    client: httpx.Client, upstream: FakeAnthropic, alice: Account
) -> None:
    """The JSON answer and an idempotent replay show the reasoning part, unsigned."""
    upstream.enqueue(ThinkingReply(thinking=("Think",), chunks=("Done",), signature="sig-x"))
    body = {"message": "Q", "model": HAIKU, "reasoning": {"budget_tokens": 1024}, "stream": False}
    headers = {**alice.headers, "Idempotency-Key": str(uuid.uuid4())}
    first = client.post("/chat", json=body, headers=headers)
    assert first.status_code == 200, first.text
    expected = [{"type": "reasoning", "text": "Think"}, {"type": "text", "text": "Done"}]
    assert first.json()["message"]["parts"] == expected
    again = client.post("/chat", json=body, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["message"]["parts"] == expected
    assert len(upstream.requests) == 1


def test_effort_is_adaptive_thinking_on_newer_claude(
    client: httpx.Client, upstream: FakeAnthropic, alice: Account
) -> None:
    """An effort goes to Claude Sonnet 5 as adaptive thinking with output_config.effort."""
    upstream.enqueue(ThinkingReply())
    events = stream_chat(
        client, {"message": "Hi", "model": SONNET, "reasoning": {"effort": "high"}}, alice.headers
    )
    assert events[-1].event == "done"
    sent = upstream.requests[-1].body
    assert sent["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert sent["output_config"] == {"effort": "high"}
    # MAX_TOKENS for the answer, plus the effort's thinking allowance.
    assert sent["max_tokens"] == 4096 + 16_384


def test_effort_on_a_budget_model_becomes_a_budget(
    client: httpx.Client, upstream: FakeAnthropic, alice: Account
) -> None:
    """Claude Haiku 4.5 takes only budgets: the effort picks one, inside max_tokens."""
    upstream.enqueue(ThinkingReply())
    stream_chat(
        client,
        {"message": "Hi", "model": HAIKU, "reasoning": {"effort": "low"}, "max_tokens": 3000},
        alice.headers,
    )
    sent = upstream.requests[-1].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["max_tokens"] == 3000


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"model": HAIKU, "reasoning": {"budget_tokens": 512}}, "validation_error", "1024"),
        (
            {"model": HAIKU, "reasoning": {"budget_tokens": 4000}, "max_tokens": 4000},
            "validation_error",
            "must be below max_tokens",
        ),
        (
            {"model": SONNET, "reasoning": {"budget_tokens": 2048}},
            "validation_error",
            "thinks adaptively",
        ),
        (
            {"model": HAIKU, "reasoning": {"budget_tokens": 2048, "effort": "low"}},
            "validation_error",
            "not both",
        ),
        (
            {"model": HAIKU, "reasoning": {"effort": "low"}, "max_tokens": 1500},
            "validation_error",
            "at least 2048 with reasoning",
        ),
        ({"model": HAIKU, "reasoning": {"effort": "extreme"}}, "validation_error", "effort"),
        (
            {"model": HAIKU, "reasoning": {"budget_tokens": 20_000}},
            "validation_error",
            "MAX_REASONING_TOKENS",
        ),
        (
            {"model": HAIKU, "reasoning": {"budget_tokens": 2048}, "max_tokens": 30_000},
            "validation_error",
            "max_tokens: at most 20480",
        ),
    ],
)
def test_reasoning_that_cannot_fit_is_refused(
    client: httpx.Client,
    upstream: FakeAnthropic,
    server: LiveServer,
    alice: Account,
    body: dict[str, Any],
    code: str,
    says: str,
) -> None:
    """A budget the API would refuse is a 422 saying why; nothing is written or sent."""
    before = server.count("messages")
    response = client.post("/chat", json={"message": "Hi", **body}, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == code
    assert says in response.json()["detail"]
    assert server.count("messages") == before
    assert upstream.requests == []


# --- OpenAI-compatible servers: reasoning_content --------------------------------------------


@pytest.fixture(scope="module")
def openai_server(
    backend: Backend, fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server on the fake OpenAI-compatible server; its models do not reason on request."""
    settings = backend.settings(
        tmp_path_factory.mktemp("openai-reasoning"),
        openai_base_url=fake_openai.base_url,
        openai_models=["deepseek-test"],
        openai_context_window=8192,
        openai_max_output=256,
        openai_capabilities=[],
    )
    with live_server(settings) as running:
        yield running


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_openai_reasoning_content_streams_as_reasoning(
    openai_server: LiveServer,
    fake_openai: FakeOpenAI,
    field: Literal["reasoning_content", "reasoning"],
) -> None:
    """vLLM, DeepSeek and Ollama stream their thinking beside content: the same events."""
    fake_openai.reset()
    fake_openai.enqueue(ReasoningReply(reasoning=("a", "b"), chunks=("c",), field=field))
    with openai_server.client() as http:
        account = signup(http)
        events = stream_chat(http, {"message": "Hi"}, account.headers)
        assert [(e.event, e.id) for e in events] == [
            ("session", "0"),
            ("reasoning", "1"),
            ("reasoning", "2"),
            ("delta", "3"),
            ("done", "4"),
        ]
        session_id = events[0].data["session_id"]
        page = http.get(f"/sessions/{session_id}/messages", headers=account.headers).json()
    assert page[1]["parts"] == [
        {"type": "reasoning", "text": "ab"},
        {"type": "text", "text": "c"},
    ]


def test_reasoning_asked_of_a_model_that_does_not_is_refused(
    openai_server: LiveServer, fake_openai: FakeOpenAI
) -> None:
    """A model not declared to reason: 422 reasoning_unsupported, nothing sent."""
    fake_openai.reset()
    with openai_server.client() as http:
        account = signup(http)
        response = http.post(
            "/chat",
            json={"message": "Hi", "reasoning": {"effort": "low"}},
            headers=account.headers,
        )
    assert response.status_code == 422
    assert response.json()["error"] == "reasoning_unsupported"
    assert "deepseek-test" in response.json()["detail"]
    assert fake_openai.requests == []
