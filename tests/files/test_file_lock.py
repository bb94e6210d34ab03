"""On Postgres, every transaction that decides whether a user's file stays takes their file lock.

Each operation below is started while the test holds the user's lock; it must wait for it
(seen in pg_locks, not by timing), then finish once the lock is released.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.files import samples
from tests.pg import PostgresServer
from tests.support import ADMIN_URLS, PASSWORD, Account, LiveServer, signup, stream_chat
from zyron.files.repository import FILES_LOCK_NAMESPACE


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


def _key(user_id: uuid.UUID) -> int:
    return int.from_bytes(user_id.bytes[:4], "big", signed=True)


async def _waits_behind_the_lock(dsn: str, user_id: uuid.UUID, start: Callable[[], Any]) -> Any:
    """Hold the user's lock, start the request, see it wait on the lock, release, return it."""
    holder = await asyncpg.connect(dsn)
    result: dict[str, Any] = {}
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(
            "SELECT pg_advisory_xact_lock($1, $2)", FILES_LOCK_NAMESPACE, _key(user_id)
        )
        thread = threading.Thread(target=lambda: result.setdefault("response", start()))
        thread.start()
        waiting = 0
        for _ in range(400):  # up to 20 s for the request to reach the lock
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = $1 AND objid = $2",
                FILES_LOCK_NAMESPACE,
                _key(user_id) & 0xFFFFFFFF,
            )
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert "response" not in result  # it cannot have finished past the lock
        await tx.rollback()
        await asyncio.to_thread(thread.join, 30)
    finally:
        await holder.close()
    assert waiting == 1
    return result["response"]


def _with_reply(client: httpx.Client, upstream: FakeAnthropic, account: Account) -> str:
    upstream.enqueue(TextReply(chunks=("Hello.",)))
    events = stream_chat(client, {"message": "Hi"}, account.headers)
    session_id: str = events[0].data["session_id"]
    return session_id


@pytest.mark.parametrize(
    "operation", ["upload", "delete file", "delete session", "share", "revoke", "delete account"]
)
def test_file_decisions_queue_on_the_users_lock(
    pg_server: LiveServer, upstream: FakeAnthropic, operation: str
) -> None:
    """Upload, file and session deletion, sharing, revoking and account deletion all wait."""
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
            "delete file": lambda: client.delete(f"/files/{uploaded['id']}", headers=headers),
            "delete session": lambda: client.delete(f"/sessions/{session_id}", headers=headers),
            "share": lambda: client.post(f"/sessions/{session_id}/shares", headers=headers),
            "revoke": lambda: client.delete(f"/shares/{share['id']}", headers=headers),
            "delete account": lambda: client.request(
                "DELETE", "/auth/me", json={"password": PASSWORD}, headers=headers
            ),
        }
        response = asyncio.run(
            _waits_behind_the_lock(_admin_dsn(pg_server), account.id, requests[operation])
        )
    assert response.status_code in (200, 201, 204), response.text
