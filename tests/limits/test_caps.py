"""Configurable caps on page sizes."""

from __future__ import annotations

from pathlib import Path

from tests.backends import Backend
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
