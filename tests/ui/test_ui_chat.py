"""POST /ui/chat, driven by the real AI SDK client (DefaultChatTransport, readUIMessageStream)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic, HttpError, TextReply, ThinkingReply
from tests.node_client import PACKAGES, drive, node_or_skip
from tests.support import LiveServer, signup

HAIKU = "claude-haiku-4-5"  # thinks with a budget


@pytest.fixture(scope="module")
def node() -> str:
    """Node, with the AI SDK installed in tests/node."""
    return node_or_skip()


def user(text: str, message_id: str = "u1") -> dict[str, Any]:
    """A user UIMessage as useChat makes it."""
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def assistant(text: str, message_id: str = "a1") -> dict[str, Any]:
    """An assistant UIMessage as useChat keeps it."""
    return {"id": message_id, "role": "assistant", "parts": [{"type": "text", "text": text}]}


def chunk_types(result: dict[str, Any]) -> list[str]:
    """The chunks' types, in order."""
    return [chunk["type"] for chunk in result["chunks"]]


@pytest.mark.parametrize("package", PACKAGES)
def test_a_guest_reply_is_assembled_by_the_client(
    node: str, server: LiveServer, upstream: FakeAnthropic, package: str
) -> None:
    """Every chunk passes the client's strict validation; the message holds the text."""
    upstream.enqueue(TextReply(chunks=("Hello", ", ", "world")))
    history = [user("Say hi", "u0"), assistant("Hi!", "a0"), user("Again, louder.")]
    result = drive(
        node,
        {"package": package, "api": f"{server.url}/ui/chat", "chatId": "c1", "messages": history},
    )
    assert result["error"] is None
    assert chunk_types(result) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    message = result["message"]
    assert message["role"] == "assistant"
    assert [p for p in message["parts"] if p["type"] == "text"] == [
        {"type": "text", "text": "Hello, world", "state": "done"}
    ]
    assert message["metadata"]["saved"] is False
    assert message["metadata"]["finishReason"] == "stop"
    assert message["metadata"]["usage"]["output_tokens"] > 0
    # The earlier turns went to the model as the history, in order.
    sent = upstream.requests[-1].body["messages"]
    assert [(m["role"], _text(m["content"])) for m in sent] == [
        ("user", "Say hi"),
        ("assistant", "Hi!"),
        ("user", "Again, louder."),
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_thinking_arrives_as_a_reasoning_part(
    node: str, server: LiveServer, upstream: FakeAnthropic, package: str
) -> None:
    upstream.enqueue(ThinkingReply(thinking=("Let me", " think."), chunks=("Answer",)))
    result = drive(
        node,
        {
            "package": package,
            "api": f"{server.url}/ui/chat",
            "chatId": "c2",
            "messages": [user("Why?")],
            "body": {"model": HAIKU, "reasoning": {"budget_tokens": 2048}},
        },
    )
    assert result["error"] is None
    assert chunk_types(result)[2:7] == [
        "reasoning-start",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
    ]
    parts = [p for p in result["message"]["parts"] if p["type"] in ("reasoning", "text")]
    assert [(p["type"], p["text"]) for p in parts] == [
        ("reasoning", "Let me think."),
        ("text", "Answer"),
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_an_upstream_error_is_an_error_chunk(
    node: str, server: LiveServer, upstream: FakeAnthropic, package: str
) -> None:
    upstream.enqueue(HttpError(400, "invalid_request_error", "bad prompt"))
    result = drive(
        node,
        {
            "package": package,
            "api": f"{server.url}/ui/chat",
            "chatId": "c3",
            "messages": [user("x")],
        },
    )
    assert "error" in chunk_types(result)
    assert result["error"] is not None  # terminateOnError: the client raises it
    error = next(c for c in result["chunks"] if c["type"] == "error")
    assert error["errorText"]


def test_bad_bodies_are_json_errors(server: LiveServer, upstream: FakeAnthropic) -> None:
    """Before any stream: the usual JSON errors, and nothing reaches the model."""
    before = len(upstream.requests)
    with server.client() as http:
        cases = [
            ({"id": "c", "messages": []}, 422),
            ({"id": "c", "messages": [assistant("hi")]}, 422),
            ({"id": "c", "messages": [user("   ")]}, 422),
            ({"id": "c", "messages": [user("x")], "trigger": "regenerate-message"}, 422),
            ({"id": "c", "messages": [user("x")], "trigger": "nonsense"}, 422),
            (
                {
                    "id": "c",
                    "messages": [
                        {
                            "id": "u",
                            "role": "user",
                            "parts": [
                                {"type": "text", "text": "see"},
                                {"type": "file", "url": "https://example.com/a.png"},
                            ],
                        }
                    ],
                },
                422,
            ),
        ]
        for body, status in cases:
            response = http.post("/ui/chat", json=body)
            assert response.status_code == status, (body, response.text)
            assert response.json()["error"], response.text
    assert len(upstream.requests) == before


def test_signed_in_callers_are_told_to_use_chat_for_now(
    client: httpx.Client, upstream: FakeAnthropic
) -> None:
    account = signup(client)
    response = client.post(
        "/ui/chat", json={"id": "c", "messages": [user("hi")]}, headers=account.headers
    )
    assert response.status_code == 501
    assert response.json()["error"] == "not_implemented"


def _text(content: Any) -> str:
    """A message's text as the Anthropic API receives it (a string or text blocks)."""
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if block.get("type") == "text")


@pytest.mark.parametrize("package", PACKAGES)
def test_a_guest_file_part_is_an_attachment(
    node: str, server: LiveServer, upstream: FakeAnthropic, package: str
) -> None:
    """useChat's file parts are data URLs for a guest: they reach the model as the file."""
    upstream.enqueue(TextReply(chunks=("A pixel.",)))
    message = {
        "id": "u1",
        "role": "user",
        "parts": [
            {"type": "text", "text": "What is this?"},
            {"type": "file", "mediaType": "image/png", "filename": "p.png", "url": PNG_URL},
        ],
    }
    result = drive(
        node,
        {
            "package": package,
            "api": f"{server.url}/ui/chat",
            "chatId": "c4",
            "messages": [message],
            "body": {"model": HAIKU},
        },
    )
    assert result["error"] is None
    content = upstream.requests[-1].body["messages"][-1]["content"]
    images = [block for block in content if block["type"] == "image"]
    assert images[0]["source"]["media_type"] == "image/png"
    assert images[0]["source"]["data"] == PNG_URL.partition(",")[2]


def test_a_history_past_the_cap_is_refused(server: LiveServer, upstream: FakeAnthropic) -> None:
    cap = server.settings.max_history_messages
    messages = [user(f"turn {i}", f"u{i}") for i in range(cap + 1)] + [user("last", "z")]
    with server.client() as http:
        response = http.post("/ui/chat", json={"id": "c", "messages": messages})
    assert response.status_code == 422
    assert "history" in response.json()["detail"]


def test_a_cancelled_reply_ends_with_abort_and_an_error_closes_its_part() -> None:
    """The chunker alone: what a cancelled or failed reply becomes."""
    from zyron.streams.events import StreamEvent
    from zyron.ui.chunks import Chunker

    def run(*events: StreamEvent) -> list[dict[str, Any]]:
        chunker = Chunker()
        return [chunk for event in events for chunk in chunker.chunks(event)]

    session = StreamEvent(0, "session", {"assistant_message_id": "m", "saved": True})
    delta = StreamEvent(2, "delta", {"text": "Hi"})
    cancelled = run(session, delta, StreamEvent(3, "done", {"stop_reason": "cancelled"}))
    assert [c["type"] for c in cancelled][-2:] == ["text-end", "abort"]
    failed = run(session, delta, StreamEvent(3, "error", {"error": "x", "detail": "It broke."}))
    assert failed[-2:] == [
        {"type": "text-end", "id": "text-1"},
        {"type": "error", "errorText": "It broke."},
    ]


# A 1 x 1 PNG.
PNG_URL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQ"
    "DwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
