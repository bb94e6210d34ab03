"""On Postgres, every transaction that decides whether a user's file stays takes their file lock.

Each operation below is started while the test holds the user's lock; it must wait for it
(seen in pg_locks, not by timing), then finish once the lock is released.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.files import samples
from tests.files.lock import queued_behind_file_lock
from tests.pg import PostgresServer
from tests.support import ADMIN_URLS, PASSWORD, Account, LiveServer, signup, stream_chat


@pytest.fixture
def pg_server(
    postgres: PostgresServer, upstream: FakeAnthropic, tmp_path: Path
) -> Iterator[LiveServer]:
    """A server on a Postgres database of its own."""
    with Backend("postgres", postgres).claude_server(tmp_path, upstream) as server:
        yield server


def _admin_dsn(server: LiveServer) -> str:
    url = ADMIN_URLS[server.settings.resolved_database_url]
    return url.replace("postgresql+asyncpg://", "postgresql://")


def _with_reply(client: httpx.Client, upstream: FakeAnthropic, account: Account) -> str:
    upstream.enqueue(TextReply(chunks=("Hello.",)))
    events = stream_chat(client, {"message": "Hi"}, account.headers)
    session_id: str = events[0].data["session_id"]
    return session_id


@pytest.mark.parametrize(
    "operation",
    [
        "upload",
        "attach",
        "delete file",
        "delete session",
        "share",
        "revoke",
        "delete account",
    ],
)
def test_file_decisions_queue_on_the_users_lock(
    pg_server: LiveServer, upstream: FakeAnthropic, operation: str
) -> None:
    """Upload, attaching, file and session deletion, sharing, revoking and account deletion
    all wait."""
    with pg_server.client() as client:
        account = signup(client)
        headers = account.headers
        session_id = _with_reply(client, upstream, account)
        uploaded = client.post(
            "/files", files={"file": ("a.png", samples.png(), "image/png")}, headers=headers
        ).json()
        share = client.post(f"/sessions/{session_id}/shares", headers=headers).json()
        requests: dict[str, Callable[[], httpx.Response]] = {
            "upload": lambda: client.post(
                "/files", files={"file": ("b.png", samples.png(), "image/png")}, headers=headers
            ),
            "attach": lambda: client.post(
                "/chat",
                json={"message": "See this", "stream": False, "attachments": [uploaded["id"]]},
                headers=headers,
            ),
            "delete file": lambda: client.delete(f"/files/{uploaded['id']}", headers=headers),
            "delete session": lambda: client.delete(f"/sessions/{session_id}", headers=headers),
            "share": lambda: client.post(f"/sessions/{session_id}/shares", headers=headers),
            "revoke": lambda: client.delete(f"/shares/{share['id']}", headers=headers),
            "delete account": lambda: client.request(
                "DELETE", "/auth/me", json={"password": PASSWORD}, headers=headers
            ),
        }
        upstream.enqueue(TextReply(chunks=("Seen.",)))  # for "attach"
        response = asyncio.run(
            queued_behind_file_lock(_admin_dsn(pg_server), account.id, requests[operation])
        )
    assert response.status_code in (200, 201, 204), response.text
