"""One process writes every streaming reply's progress in one statement per tick."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.pg import APP_ROLE, PostgresServer, migrate, sqlalchemy_url
from zyron.chat.progress import ProgressBatcher, WriterSettings
from zyron.chat.reply_parts import ReplyParts
from zyron.chat.writer import ReplyTarget, ReplyWriter, recover_abandoned
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.migrate import upgrade
from zyron.db.models import ChatSession, Message, Role, Status, User
from zyron.db.types import utcnow

# Ticks come fast; a heartbeat only where a test asks for one.
FAST = WriterSettings(
    flush_interval=0.05, flush_chars=10_000, lease_seconds=30, heartbeat_seconds=3600
)
PATIENCE_SECONDS = 20  # how long a condition may take to come true before the test fails


@dataclass
class Database:
    """A migrated database: the app's engine (statements counted) and one that bypasses RLS."""

    app: AsyncEngine
    admin: AsyncEngine
    statements: list[str] = field(default_factory=list)
    fail_progress: bool = False  # refuse the batch statement, as a database gone away would
    refused: int = 0

    def updates(self) -> list[str]:
        """Return the UPDATEs of messages the app sent (progress, take-backs, final writes)."""
        return [s for s in self.statements if s.lstrip().startswith("UPDATE messages")]


@asynccontextmanager
async def opened(app_url: str, admin_url: str) -> AsyncIterator[Database]:
    """Migrate the database and count what the app's engine sends."""
    app = create_engine(app_url)
    admin = create_engine(admin_url) if admin_url != app_url else app
    database = Database(app=app, admin=admin)

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        batch = "unnest(" in statement or "json_each(" in statement
        if database.fail_progress and batch:
            database.refused += 1
            raise ConnectionError("the database went away")
        database.statements.append(statement)

    try:
        if app is admin:
            await upgrade(app, "head")
        event.listen(app.sync_engine, "before_cursor_execute", before)
        yield database
    finally:
        await app.dispose()
        if admin is not app:
            await admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """URLs of an empty database of each kind: the app role's, and one that bypasses RLS."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'zyron.db'}"
        yield url, url
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    name = postgres.create_database()
    app_url = sqlalchemy_url(postgres.dsn(name, user=APP_ROLE))
    asyncio.run(migrate(app_url, "head"))
    yield app_url, sqlalchemy_url(postgres.dsn(name))


@dataclass
class Reply:
    """A placeholder reply row, its parts and its writer; cancels it was told of."""

    target: ReplyTarget
    parts: ReplyParts
    writer: ReplyWriter
    cancels: list[datetime] = field(default_factory=list)


async def seed(
    db: Database, batcher: ProgressBatcher, settings: WriterSettings, users: int, each: int
) -> list[Reply]:
    """Insert `users` users with `each` streaming replies apiece; make their writers."""
    now = utcnow()
    replies: list[Reply] = []
    async with db.admin.begin() as conn:
        for _ in range(users):
            user_id, session_id = uuid.uuid4(), uuid.uuid4()
            await conn.execute(
                insert(User).values(id=user_id, email=f"{user_id}@example.com", created_at=now)
            )
            await conn.execute(
                insert(ChatSession).values(
                    id=session_id, user_id=user_id, title="t", created_at=now, updated_at=now
                )
            )
            for _ in range(each):
                message_id = uuid.uuid4()
                await conn.execute(
                    insert(Message).values(
                        id=message_id,
                        session_id=session_id,
                        user_id=user_id,
                        role=Role.ASSISTANT,
                        content="",
                        parts=[],
                        status=Status.STREAMING,
                        model="m",
                        created_at=now,
                        lease_expires_at=now + timedelta(seconds=30),
                    )
                )
                target = ReplyTarget(
                    user_id=user_id,
                    session_id=session_id,
                    message_id=message_id,
                    claims={"sub": str(user_id), "role": "authenticated"},
                )
                parts = ReplyParts("anthropic")
                cancels: list[datetime] = []
                writer = ReplyWriter(
                    create_sessionmaker(db.app),
                    target,
                    parts,
                    settings,
                    on_cancel_requested=partial(_heard, cancels),
                    batcher=batcher,
                )
                replies.append(Reply(target, parts, writer, cancels))
    return replies


def _heard(cancels: list[datetime]) -> None:
    cancels.append(utcnow())


async def rows(db: Database) -> dict[uuid.UUID, Any]:
    """Read every message row, bypassing RLS."""
    async with db.admin.connect() as conn:
        result = await conn.execute(select(Message.__table__))
        return {row.id: row for row in result}


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait until `condition` holds; fail if it never does."""
    for _ in range(PATIENCE_SECONDS * 50):
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never came true")


async def close_all(replies: list[Reply]) -> None:
    """Save every reply as complete with the text it holds."""
    for reply in replies:
        assert await reply.writer.close(
            content=reply.parts.text,
            parts=reply.parts.parts(),
            status=Status.COMPLETE,
            model="m",
            stop_reason="end_turn",
        )


def test_many_replies_are_written_by_one_statement_per_tick(
    database_urls: tuple[str, str],
) -> None:
    """30 replies of 3 users that grew before a tick: one UPDATE writes them all, as one."""

    async def scenario() -> None:
        async with opened(*database_urls) as db:
            batcher = ProgressBatcher(create_sessionmaker(db.app), FAST)
            replies = await seed(db, batcher, FAST, users=3, each=10)
            for number, reply in enumerate(replies):
                reply.writer.start()
                if number == 0:  # one thinks first: its parts are written too
                    reply.parts.add_reasoning("hmm ")
                reply.parts.add_text(f"reply {number} ")
                reply.writer.changed()

            async def written() -> bool:
                found = await rows(db)
                return all(found[r.target.message_id].content == r.parts.text for r in replies)

            await until(written)
            assert len(db.updates()) == 1
            found = await rows(db)
            # One statement: every row got the same lease, and the thinking reply its parts.
            assert len({found[r.target.message_id].lease_expires_at for r in replies}) == 1
            assert found[replies[0].target.message_id].parts == replies[0].parts.parts()
            assert found[replies[1].target.message_id].parts == []

            # The next tick writes only those that grew, again in one statement.
            for reply in replies[::2]:
                reply.parts.add_text("more")
                reply.writer.changed()
            await until(written)
            assert len(db.updates()) == 2
            found = await rows(db)
            assert {r.target.message_id: found[r.target.message_id].status for r in replies} == (
                {r.target.message_id: Status.STREAMING for r in replies}
            )
            await close_all(replies)
            assert batcher.registered == 0
            found = await rows(db)
            assert {found[r.target.message_id].status for r in replies} == {Status.COMPLETE}

    asyncio.run(scenario())


def test_enough_pending_text_brings_the_tick_forward(database_urls: tuple[str, str]) -> None:
    """`flush_chars` pending writes before the flush interval has passed."""
    settings = WriterSettings(
        flush_interval=3600, flush_chars=10, lease_seconds=30, heartbeat_seconds=3600
    )

    async def scenario() -> None:
        async with opened(*database_urls) as db:
            batcher = ProgressBatcher(create_sessionmaker(db.app), settings)
            [small, large] = await seed(db, batcher, settings, users=1, each=2)
            for reply in (small, large):
                reply.writer.start()
            small.parts.add_text("short")
            small.writer.changed()
            large.parts.add_text("long enough to write")
            large.writer.changed()

            async def written() -> bool:
                content: str = (await rows(db))[large.target.message_id].content
                return content == large.parts.text

            await until(written)
            # The early tick takes every reply that grew, not only the one that asked.
            assert (await rows(db))[small.target.message_id].content == "short"
            assert len(db.updates()) == 1
            await close_all([small, large])

    asyncio.run(scenario())


def test_a_cancel_on_one_of_many_rows_reaches_only_that_reply(
    database_urls: tuple[str, str],
) -> None:
    """cancel_requested_at on one row, set by another replica: only its writer hears of it."""
    settings = WriterSettings(
        flush_interval=0.05, flush_chars=10_000, lease_seconds=30, heartbeat_seconds=0.05
    )

    async def scenario() -> None:
        async with opened(*database_urls) as db:
            batcher = ProgressBatcher(create_sessionmaker(db.app), settings)
            replies = await seed(db, batcher, settings, users=2, each=5)
            for reply in replies:
                reply.writer.start()
            cancelled = replies[3]
            async with db.admin.begin() as conn:
                await conn.execute(
                    update(Message)
                    .where(Message.id == cancelled.target.message_id)
                    .values(cancel_requested_at=utcnow())
                )
            seen = len(db.updates())

            async def heard() -> bool:
                return bool(cancelled.cancels) and len(db.updates()) >= seen + 3

            await until(heard)
            assert [bool(r.cancels) for r in replies] == [r is cancelled for r in replies]
            await close_all(replies)

    asyncio.run(scenario())


def test_a_row_taken_by_another_replicas_sweep_is_taken_back(
    database_urls: tuple[str, str],
) -> None:
    """A sweep marked a live reply interrupted (its lease lapsed): the next tick takes it back."""

    async def scenario() -> None:
        async with opened(*database_urls) as db:
            sessionmaker = create_sessionmaker(db.app)
            batcher = ProgressBatcher(sessionmaker, FAST)
            replies = await seed(db, batcher, FAST, users=2, each=2)
            for reply in replies:
                reply.writer.start()
            taken = replies[1]
            # The database was away for longer than the lease: another replica's sweep ran.
            async with db.admin.begin() as conn:
                await conn.execute(
                    update(Message)
                    .where(Message.id == taken.target.message_id)
                    .values(lease_expires_at=utcnow() - timedelta(seconds=1))
                )
            assert await recover_abandoned(sessionmaker) == 1
            assert (await rows(db))[taken.target.message_id].status == Status.INTERRUPTED
            seen = len(db.updates())
            for reply in replies:
                reply.parts.add_text("still going")
                reply.writer.changed()

            async def back() -> bool:
                row = (await rows(db))[taken.target.message_id]
                return bool(row.status == Status.STREAMING and row.content == "still going")

            await until(back)
            row = (await rows(db))[taken.target.message_id]
            assert row.lease_expires_at > utcnow() + timedelta(seconds=20)
            # One batch for all, then a take-back for the one row it did not find.
            assert len(db.updates()) == seen + 2
            await close_all(replies)
            assert (await rows(db))[taken.target.message_id].status == Status.COMPLETE

    asyncio.run(scenario())


def test_a_failed_batch_is_retried_and_the_final_write_lands(
    database_urls: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The database refuses a few ticks: logged without the text, retried, then saved."""

    async def scenario() -> None:
        async with opened(*database_urls) as db:
            batcher = ProgressBatcher(create_sessionmaker(db.app), FAST)
            replies = await seed(db, batcher, FAST, users=2, each=3)
            db.fail_progress = True
            for reply in replies:
                reply.writer.start()
                reply.parts.add_text("secret words")
                reply.writer.changed()

            async def refused_twice() -> bool:
                return db.refused >= 2

            await until(refused_twice)
            assert {row.content for row in (await rows(db)).values()} == {""}
            db.fail_progress = False

            async def written() -> bool:
                return {row.content for row in (await rows(db)).values()} == {"secret words"}

            await until(written)
            # The database away again: the final writes are not batched, and land.
            db.fail_progress = True
            for reply in replies:
                reply.parts.add_text(" and the end")
                reply.writer.changed()
            await close_all(replies)
            found = await rows(db)
            assert {(row.status, row.content) for row in found.values()} == {
                (Status.COMPLETE, "secret words and the end")
            }

    with caplog.at_level(logging.WARNING, logger="zyron.chat.writer"):
        asyncio.run(scenario())
    failures = [r for r in caplog.records if r.getMessage() == "reply progress not saved"]
    assert len(failures) >= 2
    # Every reply in each refused batch; fewer only once some had made their final write.
    assert failures[0].__dict__["replies"] == 6
    assert all("secret" not in str(r.__dict__) for r in failures)


def test_leases_of_idle_replies_are_renewed(database_urls: tuple[str, str]) -> None:
    """Replies with nothing new still have their leases renewed, together, by heartbeat."""
    settings = WriterSettings(
        flush_interval=0.05, flush_chars=10_000, lease_seconds=60, heartbeat_seconds=0.1
    )

    async def scenario() -> None:
        async with opened(*database_urls) as db:
            batcher = ProgressBatcher(create_sessionmaker(db.app), settings)
            replies = await seed(db, batcher, settings, users=4, each=5)
            before = {r.target.message_id: (await rows(db))[r.target.message_id] for r in replies}
            for reply in replies:
                reply.writer.start()

            async def renewed() -> bool:
                found = await rows(db)
                return all(
                    found[key].lease_expires_at > row.lease_expires_at
                    for key, row in before.items()
                )

            await until(renewed)
            found = await rows(db)
            assert len({found[key].lease_expires_at for key in before}) == 1  # one statement
            assert {found[key].content for key in before} == {""}
            # A renewal leaves the text alone: the statement sets the lease only.
            renewals = [u for u in db.updates() if "lease_expires_at" in u]
            assert renewals
            assert all("content" not in u.split("FROM")[0] for u in renewals)
            await close_all(replies)
            assert batcher.registered == 0

    asyncio.run(scenario())
