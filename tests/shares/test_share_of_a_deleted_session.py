"""A session deleted while a link of it is being made: a clean 404, and no share is written.

On Postgres the deletion is made to commit while the share request waits on the user's file
lock (seen in pg_locks, not by timing). On both backends the service is handed a session whose
row is gone, and the repository a share whose session never existed, which its foreign key
refuses.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.files.lock import queued_behind_file_lock
from tests.pg import PostgresServer
from tests.shares.test_shares_api import say, share_rows
from tests.support import ADMIN_URLS, LiveServer, as_user, signup
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.models import ChatSession, Share
from zyron.db.types import utcnow
from zyron.errors import NotFound
from zyron.shares import repository, service


@pytest.fixture
def pg_server(
    postgres: PostgresServer, upstream: FakeAnthropic, tmp_path: Path
) -> Iterator[LiveServer]:
    """A server on a Postgres database of its own."""
    with Backend("postgres", postgres).claude_server(tmp_path, upstream) as server:
        yield server


@pytest.mark.parametrize("up_to", [False, True], ids=["active branch", "up to a message"])
def test_a_session_deleted_while_a_link_waits_to_be_made_is_404(
    pg_server: LiveServer, upstream: FakeAnthropic, up_to: bool
) -> None:
    """The share request finds the session gone behind the lock: 404 No such session."""
    admin = ADMIN_URLS[pg_server.settings.resolved_database_url]
    dsn = admin.replace("postgresql+asyncpg://", "postgresql://")
    with pg_server.client() as client:
        account = signup(client)
        sent = say(client, account, upstream, "Share me", "Shared.")
        session_id = sent["session_id"]
        body = {"up_to_message_id": sent["assistant_message_id"]} if up_to else {}

        async def delete_the_session(holder: asyncpg.Connection) -> None:
            # What DELETE /sessions/{id} does, committed while the share request waits.
            await holder.execute("DELETE FROM chat_sessions WHERE id = $1", uuid.UUID(session_id))

        response = asyncio.run(
            queued_behind_file_lock(
                dsn,
                account.id,
                lambda: client.post(
                    f"/sessions/{session_id}/shares", json=body, headers=account.headers
                ),
                meanwhile=delete_the_session,
            )
        )

        assert response.status_code == 404, response.text
        assert response.json() == {"error": "not_found", "detail": "No such session."}
        assert share_rows(pg_server, account) == []
        gone = pg_server.query(
            "SELECT count(*) FROM chat_sessions WHERE id = :id", id=pg_server.id(session_id)
        )
        assert gone == [(0,)]


def test_the_service_refuses_a_session_whose_row_is_gone(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic
) -> None:
    """Handed a session deleted since it was read: NotFound, not 'nothing to share'."""
    account = signup(client)
    session_id = uuid.UUID(say(client, account, upstream, "Share me", "Shared.")["session_id"])
    server.query("DELETE FROM chat_sessions WHERE id = :id", id=server.id(session_id))
    chat = ChatSession(id=session_id, user_id=account.id, title="New chat")

    async def share(db: Any) -> Any:
        return await service.create_share(db, chat, up_to_message_id=None)

    with pytest.raises(NotFound) as refused:
        asyncio.run(as_user(server.settings.resolved_database_url, account.id, share))
    assert refused.value.detail == "No such session."
    assert share_rows(server, account) == []


def test_a_share_its_foreign_key_refuses_is_none(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic
) -> None:
    """A session deleted between the service's check and the insert: None, so a 404, not a 500.

    On Postgres as the superuser: the policies (which check the session too) do not apply, so
    the foreign key is what refuses it, as it does for a deletion that commits mid-statement.
    """
    account = signup(client)
    say(client, account, upstream, "Share me", "Shared.")
    url = server.settings.resolved_database_url
    url = ADMIN_URLS.get(url, url)

    async def add(db: AsyncSession) -> Share | None:
        return await repository.add_share(
            db,
            user_id=account.id,
            session_id=uuid.uuid4(),
            token_hash=service.token_hash(service.new_token()),
            title="gone",
            up_to_message_id=uuid.uuid4(),
            snapshot=[],
            file_ids=[],
            now=utcnow(),
        )

    async def attempt() -> Share | None:
        engine = create_engine(url)
        try:
            async with create_sessionmaker(engine)() as db:
                try:
                    return await add(db)
                finally:
                    await db.rollback()  # as the service's NotFound makes its unit of work do
        finally:
            await engine.dispose()

    assert asyncio.run(attempt()) is None
    assert share_rows(server, account) == []
