"""A replica that may have missed announcements (Redis was away) looks again at its replies."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.redis_server import RedisServer, RedisUnavailable
from tests.replicas import wait_until
from tests.support import live_server, make_settings, signup


def test_after_redis_returns_a_disabled_users_running_reply_stops(
    tmp_path: Path, upstream: FakeAnthropic
) -> None:
    """Disabled while this replica could not hear it: when its subscription comes back, the
    user's running reply is cancelled (the provider stops billing), another user's is not."""
    try:
        redis = RedisServer.start(throwaway=True)
    except RedisUnavailable as exc:
        pytest.skip(f"no redis-server to restart: {exc}")
    settings = make_settings(
        tmp_path,
        redis_url=redis.url,
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=upstream.base_url,
    )
    hold = threading.Event()
    try:
        with live_server(settings) as server, server.client() as client:
            user, other = signup(client), signup(client)
            upstream.enqueue(TextReply(chunks=("one ", "two"), hold=hold))
            upstream.enqueue(TextReply(chunks=("three ", "four"), hold=hold))
            with (
                client.stream("POST", "/chat", json={"message": "a"}, headers=user.headers) as mine,
                client.stream("POST", "/chat", json={"message": "b"}, headers=other.headers),
            ):
                lines = mine.iter_lines()
                while next(lines) != "event: delta":
                    pass
                # Straight in the database: no announcement is made.
                server.query(
                    "UPDATE users SET disabled_at = :now WHERE id = :id",
                    now=datetime.now(UTC),
                    id=server.id(user.id),
                )
                redis.restart()  # the hub resubscribes, and may have missed changes meanwhile
                rest = list(lines)  # ends once the reply is cancelled
                assert "event: done" in rest, rest

                def statuses() -> list[tuple[str, str]] | None:
                    rows = server.query(
                        "SELECT u.email, m.status FROM messages m JOIN users u ON u.id = m.user_id"
                        " WHERE m.role = 'assistant' ORDER BY u.email"
                    )
                    found = [(str(email), str(status)) for email, status in rows]
                    return found if ("cancelled" in dict(found).values()) else None

                rows = wait_until(statuses, "the disabled user's reply cancelled")
                assert rows is not None
                found = dict(rows)
                assert found[user.email] == "cancelled"
                assert found[other.email] == "streaming"  # still held, and still running
                hold.set()
    finally:
        hold.set()
        redis.stop()
