"""GET /models, choosing a model, unknown models, and trimming history to the window."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.support import Account, LiveServer, live_server, signup, stream_chat
from zyron.settings import DEFAULT_CLAUDE_MODELS


@pytest.fixture
def alice(client: httpx.Client) -> Account:
    """A signed-up user."""
    return signup(client)


def test_models_lists_what_the_server_offers(client: httpx.Client) -> None:
    """Every configured model with its provider and limits; the default is marked."""
    response = client.get("/models")
    assert response.status_code == 200
    body = response.json()
    assert body["default"] == DEFAULT_CLAUDE_MODELS[0]
    assert [m["id"] for m in body["models"]] == DEFAULT_CLAUDE_MODELS
    first = body["models"][0]
    assert first == {
        "id": DEFAULT_CLAUDE_MODELS[0],
        "provider": "anthropic",
        "kind": "anthropic",
        "context_window": 200_000,
        "max_output": 64_000,
        "default": True,
        "vision": True,
        "pdf": True,
        "reasoning": True,
        # Claude Sonnet 5 thinks adaptively and refuses a token budget.
        "reasoning_modes": ["effort"],
    }
    haiku = body["models"][2]
    assert haiku["id"] == "claude-haiku-4-5"
    assert haiku["reasoning_modes"] == ["budget_tokens", "effort"]


def test_health_reports_providers_without_calling_them(
    client: httpx.Client, upstream: FakeAnthropic
) -> None:
    """/health says each provider's state from what it saw; it makes no upstream call."""
    body = client.get("/health").json()
    assert body["default_model"] == DEFAULT_CLAUDE_MODELS[0]
    assert body["provider"] == "anthropic"
    assert body["providers"]["anthropic"]["kind"] == "anthropic"
    assert body["providers"]["anthropic"]["state"] in ("unknown", "ok", "failing")
    assert upstream.requests == []


def test_request_model_chooses_and_unknown_is_a_422(
    server: LiveServer, client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """A known model goes upstream; an unknown one is refused, naming the choices, unsaved."""
    upstream.enqueue(TextReply())
    stream_chat(client, {"message": "hi", "model": "claude-opus-5"}, alice.headers)
    assert upstream.requests[-1].body["model"] == "claude-opus-5"

    before = server.counts()
    for headers in ({}, alice.headers):
        response = client.post("/chat", json={"message": "hi", "model": "gpt-9"}, headers=headers)
        assert response.status_code == 422
        body = response.json()
        assert body["error"] == "unknown_model"
        assert "gpt-9" in body["detail"]
        assert all(model in body["detail"] for model in DEFAULT_CLAUDE_MODELS)
    assert server.counts() == before
    assert len(upstream.requests) == 1


def test_session_model_is_checked_on_create_and_update(
    server: LiveServer, client: httpx.Client, alice: Account
) -> None:
    """POST and PATCH /sessions refuse an unknown model and change nothing."""
    before = server.counts()
    response = client.post("/sessions", json={"model": "gpt-9"}, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["error"] == "unknown_model"
    assert server.counts() == before

    created = client.post("/sessions", json={"model": "claude-opus-5"}, headers=alice.headers)
    assert created.status_code == 201
    sid = created.json()["id"]
    response = client.patch(f"/sessions/{sid}", json={"model": "gpt-9"}, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["error"] == "unknown_model"
    assert client.get(f"/sessions/{sid}", headers=alice.headers).json()["model"] == "claude-opus-5"
    cleared = client.patch(f"/sessions/{sid}", json={"model": None}, headers=alice.headers)
    assert cleared.status_code == 200


def test_done_says_how_many_earlier_turns_were_sent(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """With a roomy window, every earlier turn is sent, and done says so."""
    upstream.enqueue(TextReply(), TextReply())
    first = stream_chat(client, {"message": "one"}, alice.headers)
    assert first[-1].data["turns_sent"] == 0
    assert first[-1].data["turns_omitted"] == 0
    sid = first[0].data["session_id"]
    second = stream_chat(client, {"message": "two", "session_id": sid}, alice.headers)
    assert second[-1].data["turns_sent"] == 2
    assert second[-1].data["turns_omitted"] == 0


@pytest.fixture(scope="module")
def tiny_window(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server whose Claude models have a 600-token window and 100-token replies."""
    settings = backend.settings(
        tmp_path_factory.mktemp("tiny"),
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=fake_anthropic.base_url,
        anthropic_models=["claude-tiny"],
        anthropic_context_window=600,
        anthropic_max_output=100,
    )
    with live_server(settings) as running:
        yield running


def test_long_history_is_trimmed_to_the_window(
    tiny_window: LiveServer, upstream: FakeAnthropic
) -> None:
    """Old turns are left out whole; the newest fit; done counts both; all stay saved."""
    with tiny_window.client() as http:
        account = signup(http)
        sid = None
        for index in range(8):
            upstream.enqueue(TextReply(chunks=(f"answer {index} " + "z" * 200,)))
            body = {"message": f"question {index} " + "y" * 200}
            if sid:
                body["session_id"] = sid
            events = stream_chat(http, body, account.headers)
            sid = events[0].data["session_id"]
        done = events[-1].data
        sent = upstream.requests[-1].body
        assert sent["max_tokens"] == 100
        messages = sent["messages"]
        assert messages[0]["role"] == "user"  # never a reply whose question was cut
        assert messages[-1]["content"].startswith("question 7")
        assert done["turns_sent"] == len(messages) - 1
        assert done["turns_sent"] % 2 == 0
        assert done["turns_omitted"] == 14 - done["turns_sent"]
        assert done["turns_omitted"] > 0
        stored = http.get(f"/sessions/{sid}/messages", headers=account.headers).json()
        assert len(stored) == 16  # trimming changes what is sent, never what is kept


def test_message_too_big_for_the_window_is_refused(
    tiny_window: LiveServer, upstream: FakeAnthropic
) -> None:
    """A message that cannot fit is a 422 context_too_long, and nothing is saved."""
    with tiny_window.client() as http:
        account = signup(http)
        before = tiny_window.counts()
        for headers in ({}, account.headers):
            response = http.post("/chat", json={"message": "x" * 5000}, headers=headers)
            assert response.status_code == 422
            assert response.json()["error"] == "context_too_long"
            assert "claude-tiny" in response.json()["detail"]
        assert tiny_window.counts() == before
        assert upstream.requests == []


def test_max_tokens_is_capped_by_the_model(
    tiny_window: LiveServer, upstream: FakeAnthropic
) -> None:
    """A request may ask for fewer tokens than the model's most, never more."""
    with tiny_window.client() as http:
        upstream.enqueue(TextReply(), TextReply())
        stream_chat(http, {"message": "hi", "max_tokens": 50})
        assert upstream.requests[-1].body["max_tokens"] == 50
        stream_chat(http, {"message": "hi", "max_tokens": 1000})
        assert upstream.requests[-1].body["max_tokens"] == 100


def test_session_with_a_model_no_longer_offered_uses_the_default(
    server: LiveServer, client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """A session stored with a retired model still chats, on the default model."""
    created = client.post("/sessions", json={"model": "claude-opus-5"}, headers=alice.headers)
    sid = created.json()["id"]
    server.query(
        "UPDATE chat_sessions SET model = 'claude-retired' WHERE id = :i", i=server.id(sid)
    )
    upstream.enqueue(TextReply())
    events = stream_chat(client, {"message": "hi", "session_id": sid}, alice.headers)
    assert events[-1].event == "done"
    assert upstream.requests[-1].body["model"] == DEFAULT_CLAUDE_MODELS[0]


@pytest.fixture(scope="module")
def no_history(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that sends no earlier turns (MAX_HISTORY_MESSAGES=0)."""
    settings = backend.settings(
        tmp_path_factory.mktemp("nohistory"),
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=fake_anthropic.base_url,
        max_history_messages=0,
    )
    with live_server(settings) as running:
        yield running


def test_no_history_still_links_messages_into_one_branch(
    no_history: LiveServer, upstream: FakeAnthropic
) -> None:
    """Only the new message is sent, but it still follows the newest reply in the tree."""
    with no_history.client() as http:
        account = signup(http)
        upstream.enqueue(TextReply(), TextReply())
        first = stream_chat(http, {"message": "one"}, account.headers)
        sid = first[0].data["session_id"]
        second = stream_chat(http, {"message": "two", "session_id": sid}, account.headers)
        assert upstream.requests[-1].body["messages"] == [{"role": "user", "content": "two"}]
        assert second[-1].data["turns_sent"] == 0
        page = http.get(f"/sessions/{sid}/messages", headers=account.headers).json()
        assert [m["content"] for m in page][::2] == ["one", "two"]
        assert page[2]["parent_id"] == first[0].data["assistant_message_id"]
