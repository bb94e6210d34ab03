"""Configurable caps: page sizes, reply budgets, message, system prompt and history sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.support import live_server, signup


def test_page_caps_are_configurable(backend: Backend, tmp_path: Path) -> None:
    """MAX_SESSIONS_PAGE and MAX_MESSAGES_PAGE bound `limit`, with a 422 naming the cap."""
    settings = backend.settings(tmp_path, max_sessions_page=5, max_messages_page=7)
    with live_server(settings) as server, server.client() as http:
        alice = signup(http)
        sid = http.post("/sessions", json={}, headers=alice.headers).json()["id"]
        assert http.get("/sessions", params={"limit": 5}, headers=alice.headers).status_code == 200
        too_many = http.get("/sessions", params={"limit": 6}, headers=alice.headers)
        assert too_many.status_code == 422
        assert too_many.json() == {"error": "validation_error", "detail": "limit: at most 5"}
        path = f"/sessions/{sid}/messages"
        assert http.get(path, params={"limit": 7}, headers=alice.headers).status_code == 200
        response = http.get(path, params={"limit": 8}, headers=alice.headers)
        assert response.json()["detail"] == "limit: at most 7"


def test_health_says_whether_limits_are_on(backend: Backend, tmp_path: Path) -> None:
    """/health reports the limits' state and where their counters live."""
    settings = backend.settings(tmp_path, rate_limit_enabled=True)
    with live_server(settings) as server, server.client() as http:
        assert http.get("/health").json()["rate_limits"] == {"enabled": True, "backend": "memory"}


def test_request_caps_are_configurable(
    backend: Backend, tmp_path: Path, upstream: FakeAnthropic
) -> None:
    """MAX_TOKENS, MAX_MESSAGE_CHARS (message, system, history turns) and MAX_HISTORY_MESSAGES
    each refuse with a 422 naming the field, before anything is written or sent."""
    caps = {"max_tokens": 50, "max_message_chars": 20, "max_history_messages": 2}
    turn = {"role": "user", "content": "hi"}
    over: list[tuple[dict[str, Any], str]] = [
        ({"message": "hi", "max_tokens": 51}, "max_tokens: at most 50"),
        ({"message": "x" * 21}, "message: at most 20 characters"),
        ({"message": "hi", "system": "s" * 21}, "system: at most 20 characters"),
        ({"message": "hi", "history": [turn] * 3}, "history: at most 2 turns"),
        (
            {"message": "hi", "history": [turn, {"role": "assistant", "content": "y" * 21}]},
            "history.1.content: at most 20 characters",
        ),
    ]
    with backend.claude_server(tmp_path, upstream, **caps) as server, server.client() as http:
        alice = signup(http)
        before = server.counts()
        for body, detail in over:
            headers = {} if "history" in body else alice.headers
            response = http.post("/chat", json=body, headers=headers)
            assert response.status_code == 422, (body, response.text)
            assert response.json() == {"error": "validation_error", "detail": detail}
        assert server.counts() == before
        assert upstream.requests == []
        # Regenerate has the same reply caps.
        chat = http.post("/chat", json={"message": "hi", "stream": False}, headers=alice.headers)
        upstream_calls = len(upstream.requests)
        reply_id = chat.json()["message"]["id"]
        for body, detail in over[:1] + over[2:3]:
            response = http.post(
                f"/chat/{reply_id}/regenerate",
                json={key: value for key, value in body.items() if key != "message"},
                headers=alice.headers,
            )
            assert response.status_code == 422, (body, response.text)
            assert response.json()["detail"] == detail
        assert len(upstream.requests) == upstream_calls
