"""POST /chat over real HTTP against the fake Anthropic upstream."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import (
    Drop,
    FakeAnthropic,
    Garbage,
    HttpError,
    MidStreamError,
    Reply,
    TextReply,
    Truncated,
)
from tests.support import (
    Account,
    LiveServer,
    live_server,
    parse_sse,
    signup,
    stream_chat,
)


@pytest.fixture
def alice(client: httpx.Client) -> Account:
    """A signed-up user."""
    return signup(client)


def _messages(client: httpx.Client, account: Account, session_id: str) -> list[dict[str, object]]:
    response = client.get(f"/sessions/{session_id}/messages", headers=account.headers)
    assert response.status_code == 200, response.text
    messages: list[dict[str, object]] = response.json()
    return messages


def test_streamed_chat_is_saved_in_order_with_usage(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """signup → streamed chat → both messages saved, complete, with usage."""
    upstream.enqueue(TextReply(chunks=("Hi", " there", "!"), input_tokens=21))
    events = stream_chat(client, {"message": "Hello?", "title": "Greetings"}, alice.headers)

    assert [e.event for e in events] == ["session", "delta", "delta", "delta", "done"]
    # Ids are text offsets: session 0, each delta the length so far, done the length + 1.
    assert [e.id for e in events] == ["0", "2", "8", "9", "10"]
    session = events[0].data
    assert session["saved"] is True
    assert "".join(str(e.data["text"]) for e in events if e.event == "delta") == "Hi there!"
    done = events[-1].data
    assert done["message_id"] == session["assistant_message_id"]
    assert done["stop_reason"] == "end_turn"
    assert done["usage"] == {
        "input_tokens": 21,
        "output_tokens": 3,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "reasoning_tokens": None,
    }

    sid = str(session["session_id"])
    chat = client.get(f"/sessions/{sid}", headers=alice.headers).json()
    assert chat["title"] == "Greetings"
    messages = _messages(client, alice, sid)
    assert [(m["role"], m["content"], m["status"]) for m in messages] == [
        ("user", "Hello?", "complete"),
        ("assistant", "Hi there!", "complete"),
    ]
    assert messages[0]["id"] == session["user_message_id"]
    assert messages[1]["id"] == session["assistant_message_id"]
    assert messages[1]["usage"] == {
        "input_tokens": 21,
        "output_tokens": 3,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "reasoning_tokens": None,
    }
    assert messages[1]["model"] == "claude-sonnet-5"
    assert messages[1]["stop_reason"] == "end_turn"
    assert messages[1]["parent_id"] == messages[0]["id"]


def test_second_turn_sends_the_first_as_context(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """With session_id, earlier messages go to the model oldest first, then the new one."""
    upstream.enqueue(TextReply(chunks=("Four.",)), TextReply(chunks=("Eight.",)))
    first = stream_chat(client, {"message": "2+2?"}, alice.headers)
    sid = first[0].data["session_id"]
    stream_chat(client, {"message": "Double it.", "session_id": sid}, alice.headers)

    assert len(upstream.requests) == 2
    assert upstream.requests[0].body["messages"] == [{"role": "user", "content": "2+2?"}]
    assert upstream.requests[1].body["messages"] == [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "Four."},
        {"role": "user", "content": "Double it."},
    ]
    assert upstream.requests[1].body["stream"] is True
    assert [m["content"] for m in _messages(client, alice, str(sid))] == [
        "2+2?",
        "Four.",
        "Double it.",
        "Eight.",
    ]


def test_new_session_without_title_gets_a_placeholder(client: httpx.Client, alice: Account) -> None:
    """A chat without session_id or title creates a session titled 'New chat'."""
    events = stream_chat(client, {"message": "hi"}, alice.headers)
    chat = client.get(f"/sessions/{events[0].data['session_id']}", headers=alice.headers)
    assert chat.json()["title"] == "New chat"


def test_session_system_prompt_and_model_are_sent(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """The session's system prompt and model go upstream; the request's override them."""
    created = client.post(
        "/sessions",
        json={"system_prompt": "Answer in French.", "model": "claude-haiku-4-5"},
        headers=alice.headers,
    ).json()
    stream_chat(client, {"message": "hi", "session_id": created["id"]}, alice.headers)
    body = upstream.requests[-1].body
    assert body["system"] == "Answer in French."
    assert body["model"] == "claude-haiku-4-5"

    stream_chat(
        client,
        {
            "message": "hi",
            "session_id": created["id"],
            "system": "Answer in German.",
            "model": "claude-opus-5",
            "max_tokens": 50,
        },
        alice.headers,
    )
    body = upstream.requests[-1].body
    assert body["system"] == "Answer in German."
    assert body["model"] == "claude-opus-5"
    assert body["max_tokens"] == 50


def test_stream_false_returns_the_reply_as_json(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """stream=false answers once, with the saved assistant message and usage."""
    upstream.enqueue(TextReply(chunks=("Forty", "-two"), input_tokens=7))
    response = client.post(
        "/chat", json={"message": "Meaning?", "stream": False}, headers=alice.headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["saved"] is True
    assert body["message"]["content"] == "Forty-two"
    assert body["message"]["status"] == "complete"
    assert body["usage"] == {
        "input_tokens": 7,
        "output_tokens": 2,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "reasoning_tokens": None,
    }
    messages = _messages(client, alice, body["session_id"])
    assert [m["id"] for m in messages] == [body["user_message_id"], body["message"]["id"]]


def test_guest_chat_writes_nothing(
    server: LiveServer, client: httpx.Client, upstream: FakeAnthropic
) -> None:
    """Without Authorization nothing is written; earlier turns come from `history`."""
    before = server.counts()
    upstream.enqueue(TextReply(chunks=("Sure",)))
    events = stream_chat(
        client,
        {
            "message": "And now?",
            "history": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ],
        },
    )
    assert events[0].data == {
        "session_id": None,
        "user_message_id": None,
        "assistant_message_id": None,
        "saved": False,
    }
    assert events[-1].event == "done"
    assert events[-1].data["message_id"] is None
    assert upstream.requests[-1].body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And now?"},
    ]
    response = client.post("/chat", json={"message": "again", "stream": False})
    assert response.status_code == 200
    assert response.json()["saved"] is False
    assert response.json()["message"]["id"] is None
    assert server.counts() == before


def test_a_nul_in_the_reply_is_replaced_and_the_reply_saved(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """Postgres text refuses NUL: it becomes U+FFFD, on the stream and in the row alike."""
    upstream.enqueue(TextReply(chunks=("a\x00b", "c")))
    events = stream_chat(client, {"message": "nul?"}, alice.headers)
    assert [e.event for e in events] == ["session", "delta", "delta", "done"]
    assert [e.id for e in events] == ["0", "3", "4", "5"]  # positions unchanged
    assert events[1].data["text"] == "a\ufffdb"
    messages = _messages(client, alice, str(events[0].data["session_id"]))
    assert messages[1]["content"] == "a\ufffdbc"
    assert messages[1]["status"] == "complete"


def test_guest_cannot_continue_a_saved_session(
    server: LiveServer, client: httpx.Client, upstream: FakeAnthropic
) -> None:
    """A guest naming a session_id is told to sign in, and nothing happens."""
    before = server.counts()
    response = client.post("/chat", json={"message": "hi", "session_id": str(uuid.uuid4())})
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert upstream.requests == []
    assert server.counts() == before


@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-jwt", "Bearer", "Basic dXNlcjpwYXNz", "Bearer a.b.c", "Token abc"],
)
def test_invalid_token_is_401_never_a_guest(
    server: LiveServer, client: httpx.Client, upstream: FakeAnthropic, header: str
) -> None:
    """A present but invalid Authorization header is refused, not treated as a guest."""
    before = server.counts()
    response = client.post("/chat", json={"message": "hi"}, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert upstream.requests == []
    assert server.counts() == before


def test_other_users_session_is_404_and_untouched(
    server: LiveServer, client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """Bob cannot chat into Alice's session; nothing is written."""
    sid = stream_chat(client, {"message": "secret"}, alice.headers)[0].data["session_id"]
    bob = signup(client)
    before = server.counts()
    calls = len(upstream.requests)
    for stream in (True, False):
        response = client.post(
            "/chat",
            json={"message": "hi", "session_id": sid, "stream": stream},
            headers=bob.headers,
        )
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    assert server.counts() == before
    assert len(upstream.requests) == calls
    assert len(_messages(client, alice, str(sid))) == 2


UPSTREAM_FAILURES: list[tuple[Reply, str, int, bool]] = [
    (HttpError(429, "rate_limit_error", retry_after="7"), "upstream_rate_limited", 429, True),
    (HttpError(529, "overloaded_error"), "upstream_overloaded", 503, True),
    (HttpError(500, "api_error"), "upstream_unavailable", 502, True),
    (HttpError(503, "api_error"), "upstream_unavailable", 502, True),
    (HttpError(401, "authentication_error"), "upstream_auth", 502, False),
    (HttpError(403, "permission_error"), "upstream_auth", 502, False),
    (HttpError(400, "invalid_request_error", "bad model"), "upstream_bad_request", 400, False),
    (MidStreamError(chunks=()), "upstream_overloaded", 503, True),
    (MidStreamError(chunks=(), error_type="api_error"), "upstream_unavailable", 502, True),
    (Truncated(chunks=()), "upstream_unavailable", 502, True),
    (Garbage(chunks=()), "upstream_unavailable", 502, True),
    # JSON, but not the protocol's shapes: a delta that is not an object, one without text.
    (Garbage(chunks=(), payload=b'{"delta":"text"}'), "upstream_unavailable", 502, True),
    (
        Garbage(chunks=(), payload=b'{"delta":{"type":"text_delta"}}'),
        "upstream_unavailable",
        502,
        True,
    ),
    (Garbage(chunks=(), payload=b"[1]"), "upstream_unavailable", 502, True),
]


@pytest.mark.parametrize(("reply", "code", "status", "retryable"), UPSTREAM_FAILURES)
def test_upstream_failure_before_text_streams_an_error_and_keeps_the_question(
    client: httpx.Client,
    alice: Account,
    upstream: FakeAnthropic,
    reply: Reply,
    code: str,
    status: int,
    retryable: bool,
) -> None:
    """Each upstream failure becomes its error event; the user message stays saved."""
    upstream.enqueue(reply)
    events = stream_chat(client, {"message": "will it fail?"}, alice.headers)
    assert [e.event for e in events] == ["session", "error"]
    error = events[-1].data
    assert error["error"] == code
    assert error["retryable"] is retryable
    assert isinstance(error["detail"], str)
    assert "sk-ant" not in str(error["detail"])
    messages = _messages(client, alice, str(events[0].data["session_id"]))
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", "error"),
    ]
    assert messages[0]["content"] == "will it fail?"


@pytest.mark.parametrize(("reply", "code", "status", "retryable"), UPSTREAM_FAILURES)
def test_upstream_failure_with_stream_false_is_a_json_error(
    client: httpx.Client,
    alice: Account,
    upstream: FakeAnthropic,
    reply: Reply,
    code: str,
    status: int,
    retryable: bool,
) -> None:
    """stream=false answers the upstream failure with its status and JSON error."""
    upstream.enqueue(reply)
    sid = client.post("/sessions", json={}, headers=alice.headers).json()["id"]
    response = client.post(
        "/chat", json={"message": "q", "stream": False, "session_id": sid}, headers=alice.headers
    )
    assert response.status_code == status
    assert response.json()["error"] == code
    assert set(response.json()) == {"error", "detail"}
    if isinstance(reply, HttpError) and reply.retry_after:
        assert response.headers["retry-after"] == reply.retry_after
    assert [m["role"] for m in _messages(client, alice, sid)] == ["user", "assistant"]


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (MidStreamError(chunks=("Once", " upon")), "upstream_overloaded"),
        (Drop(chunks=("Once", " upon")), "upstream_unavailable"),
        (Truncated(chunks=("Once", " upon")), "upstream_unavailable"),
        (Garbage(chunks=("Once", " upon")), "upstream_unavailable"),
    ],
)
def test_failure_mid_reply_keeps_the_text_as_interrupted(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic, reply: Reply, code: str
) -> None:
    """Text already streamed stays on the message, with status interrupted."""
    upstream.enqueue(reply)
    events = stream_chat(client, {"message": "story?"}, alice.headers)
    assert [e.event for e in events] == ["session", "delta", "delta", "error"]
    assert events[-1].data["error"] == code
    sid = str(events[0].data["session_id"])
    reply_row = _messages(client, alice, sid)[1]
    assert reply_row["status"] == "interrupted"
    assert reply_row["content"] == "Once upon"


def test_a_failed_turn_does_not_break_the_next_request(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """After an error and an interruption, the next prompt still alternates roles."""
    upstream.enqueue(HttpError(500, "api_error"))
    sid = stream_chat(client, {"message": "one"}, alice.headers)[0].data["session_id"]
    upstream.enqueue(MidStreamError(chunks=("half",)))
    stream_chat(client, {"message": "two", "session_id": sid}, alice.headers)
    upstream.enqueue(TextReply(chunks=("ok",)))
    events = stream_chat(client, {"message": "three", "session_id": sid}, alice.headers)
    assert events[-1].event == "done"
    assert upstream.requests[-1].body["messages"] == [
        {"role": "user", "content": "one\n\ntwo"},
        {"role": "assistant", "content": "half"},
        {"role": "user", "content": "three"},
    ]


def test_reply_is_finished_and_saved_when_the_client_disconnects(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """Closing the connection mid-stream does not lose the reply."""
    upstream.enqueue(TextReply(chunks=tuple(f"w{i} " for i in range(8)), chunk_delay=0.05))
    with client.stream("POST", "/chat", json={"message": "long one"}, headers=alice.headers) as r:
        first_line_block = next(r.iter_text())
    sid = parse_sse(first_line_block)[0][0].data["session_id"]
    deadline = time.monotonic() + 15
    while True:
        reply = _messages(client, alice, str(sid))[-1]
        if reply["status"] != "streaming" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert reply["status"] == "complete"
    assert reply["content"] == "".join(f"w{i} " for i in range(8))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "message"),
        ({"message": ""}, "message"),
        ({"message": "   "}, "message"),
        ({"message": 5}, "message"),
        ({"message": "hi", "session_id": "not-a-uuid"}, "session_id"),
        ({"message": "hi", "stream": "maybe"}, "stream"),
        ({"message": "hi", "history": [{"role": "system", "content": "x"}]}, "history"),
        ({"message": "hi", "max_tokens": 0}, "max_tokens"),
        ({"message": "hi", "max_tokens": 10**9}, "max_tokens"),
        ({"message": "hi", "title": ""}, "title"),
    ],
)
def test_bad_chat_bodies_are_422_naming_the_field(
    server: LiveServer,
    client: httpx.Client,
    alice: Account,
    upstream: FakeAnthropic,
    body: dict[str, object],
    field: str,
) -> None:
    """Invalid bodies are refused before anything is written or sent upstream."""
    before = server.counts()
    response = client.post("/chat", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert field in response.json()["detail"]
    assert upstream.requests == []
    assert server.counts() == before


@pytest.fixture(scope="module")
def no_provider_server(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server with no model provider configured."""
    with live_server(backend.settings(tmp_path_factory.mktemp("noprov"))) as running:
        yield running


def test_no_provider_is_a_clear_error_that_changes_nothing(
    no_provider_server: LiveServer,
) -> None:
    """Without ANTHROPIC_API_KEY, /chat says what to set, for guests and users alike."""
    with no_provider_server.client() as http:
        account = signup(http)
        before = no_provider_server.counts()
        for headers in ({}, account.headers):
            response = http.post("/chat", json={"message": "hi"}, headers=headers)
            assert response.status_code == 503
            assert response.json()["error"] == "no_provider"
            assert "ANTHROPIC_API_KEY" in response.json()["detail"]
        assert no_provider_server.counts() == before
        health = http.get("/health").json()
        assert health["provider"] is None


@pytest.fixture(scope="module")
def pinging_server(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that pings idle streams every 50 ms."""
    settings = backend.settings(
        Path(tmp_path_factory.mktemp("ping")),
        anthropic_api_key="sk-test",
        anthropic_base_url=fake_anthropic.base_url,
        stream_ping_seconds=0.05,
    )
    with live_server(settings) as running:
        yield running


def test_idle_stream_sends_ping_comments(
    pinging_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """While the model is silent the stream carries `: ping` comments, with no-cache headers."""
    upstream.enqueue(TextReply(chunks=("late",), first_delay=0.4))
    with (
        pinging_server.client() as http,
        http.stream("POST", "/chat", json={"message": "hi"}) as response,
    ):
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        events, pings = parse_sse(response.read().decode())
    assert pings >= 2
    assert [e.event for e in events] == ["session", "delta", "done"]
