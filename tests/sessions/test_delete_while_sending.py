"""On Postgres, deleting a session while a message is being added to it does not deadlock.

A message sent to a session locks the session row first (touch_owned_session), then adds
rows under an existing message. Deleting the session takes the same row first, so it waits
for the send to commit instead of locking the messages the send is about to reference.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.pg import PostgresServer
from tests.support import ADMIN_URLS, LiveServer, signup, stream_chat


@pytest.fixture
def pg_server(
    postgres: PostgresServer, upstream: FakeAnthropic, tmp_path: Path
) -> Iterator[LiveServer]:
    """A server on a Postgres database of its own."""
    with Backend("postgres", postgres).claude_server(tmp_path, upstream) as server:
        yield server


async def _send_while_deleting(dsn: str, session_id: str, parent_id: str, delete: Any) -> Any:
    """Play a send's transaction by hand around a DELETE /sessions/{id} that runs meanwhile."""
    send = await asyncpg.connect(dsn)
    result: dict[str, Any] = {}
    try:
        async with send.transaction():
            # What a send does first: the session row.
            await send.execute(
                "UPDATE chat_sessions SET updated_at = now() WHERE id = $1", uuid.UUID(session_id)
            )
            thread = threading.Thread(target=lambda: result.setdefault("done", delete()))
            thread.start()
            waiting = 0
            for _ in range(400):  # up to 20 s for the deletion to reach a lock
                waiting = await send.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND pid <> pg_backend_pid()"
                )
                if waiting:
                    break
                await asyncio.sleep(0.05)
            assert waiting == 1, "the deletion never waited"
            # Then a reply under an existing message: a key-share lock on that message, which
            # a deletion that had started on the messages would hold: a deadlock.
            await send.execute(
                "INSERT INTO messages (id, session_id, user_id, parent_id, role, content, status,"
                " created_at) SELECT $1, session_id, user_id, id, 'user', 'one more', "
                "'complete', now() FROM messages WHERE id = $2",
                uuid.uuid4(),
                uuid.UUID(parent_id),
            )
        await asyncio.to_thread(thread.join, 30)
    finally:
        await send.close()
    return result["done"]


def test_deleting_a_session_while_a_message_is_added_waits_for_it(
    pg_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """The send commits, then the deletion takes the session and all its messages: 204."""
    dsn = ADMIN_URLS[pg_server.settings.resolved_database_url].replace(
        "postgresql+asyncpg://", "postgresql://"
    )
    with pg_server.client() as client:
        account = signup(client)
        upstream.enqueue(TextReply(chunks=("Hello.",)))
        started = stream_chat(client, {"message": "Hi"}, account.headers)[0].data
        session_id = started["session_id"]
        response = asyncio.run(
            _send_while_deleting(
                dsn,
                session_id,
                started["assistant_message_id"],
                lambda: client.delete(f"/sessions/{session_id}", headers=account.headers),
            )
        )
        assert response.status_code == 204, response.text
        left = pg_server.query(
            "SELECT count(*) FROM messages WHERE session_id = :id", id=pg_server.id(session_id)
        )
        assert left == [(0,)]
