"""A session deleted while a link of it is being made: a clean 404, and no share is written.

On Postgres the deletion is made to commit while the share request waits on the user's file
lock (seen in pg_locks, not by timing). On both backends the service is handed a session whose
row is gone, and the repository a share whose session never existed, which its foreign key
refuses.
"""

from __future__ import annotations

import asyncio
import threading
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
from tests.pg import PostgresServer
from tests.shares.test_shares_api import say, share_rows
from tests.support import ADMIN_URLS, Account, LiveServer, signup
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.models import ChatSession, Share
from zyron.db.types import utcnow
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import NotFound
from zyron.files.repository import FILES_LOCK_NAMESPACE
from zyron.shares import repository, service


@pytest.fixture
def pg_server(
    postgres: PostgresServer, upstream: FakeAnthropic, tmp_path: Path
) -> Iterator[LiveServer]:
    """A server on a Postgres database of its own."""
    with Backend("postgres", postgres).claude_server(tmp_path, upstream) as server:
        yield server


def _lock_key(user_id: uuid.UUID) -> int:
    # As zyron.files.repository.lock_files_of computes it.
    return int.from_bytes(user_id.bytes[:4], "big", signed=True)


async def _delete_while_it_waits(
    dsn: str, account: Account, session_id: str, start: Any
) -> httpx.Response:
    """Hold the user's file lock, start the request, see it wait, delete the session, commit."""
    holder = await asyncpg.connect(dsn)
    result: dict[str, httpx.Response] = {}
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(
            "SELECT pg_advisory_xact_lock($1, $2)", FILES_LOCK_NAMESPACE, _lock_key(account.id)
        )
        thread = threading.Thread(target=lambda: result.setdefault("response", start()))
        thread.start()
        waiting = 0
        for _ in range(400):  # up to 20 s for the request to reach the lock
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = $1 AND objid = $2",
                FILES_LOCK_NAMESPACE,
                _lock_key(account.id) & 0xFFFFFFFF,
            )
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert waiting == 1
        assert "response" not in result
        # What DELETE /sessions/{id} does, committed while the share request waits.
        await holder.execute("DELETE FROM chat_sessions WHERE id = $1", uuid.UUID(session_id))
        await tx.commit()
        await asyncio.to_thread(thread.join, 30)
    finally:
        await holder.close()
    return result["response"]


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

        response = asyncio.run(
            _delete_while_it_waits(
                dsn,
                account,
                session_id,
                lambda: client.post(
                    f"/sessions/{session_id}/shares", json=body, headers=account.headers
                ),
            )
        )

        assert response.status_code == 404, response.text
        assert response.json() == {"error": "not_found", "detail": "No such session."}
        assert share_rows(pg_server, account) == []
        gone = pg_server.query(
            "SELECT count(*) FROM chat_sessions WHERE id = :id", id=pg_server.id(session_id)
        )
        assert gone == [(0,)]


async def _as_user(url: str, user_id: uuid.UUID, work: Any) -> Any:
    engine = create_engine(url)
    try:
        claims = {"sub": str(user_id), "role": "authenticated"}
        async with unit_of_work(
            create_sessionmaker(engine), role="authenticated", claims=claims
        ) as db:
            return await work(db)
    finally:
        await engine.dispose()


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
        asyncio.run(_as_user(server.settings.resolved_database_url, account.id, share))
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
