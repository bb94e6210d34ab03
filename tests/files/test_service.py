"""zyron.files.service as the chat side calls it: owned_files, link, read; store before refer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.files import samples
from tests.support import make_settings
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.migrate import upgrade
from zyron.db.models import ChatSession, File, Message, MessageFile, User
from zyron.db.types import utcnow
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import InvalidInput, NotFound
from zyron.files import deps, service
from zyron.files.deps import StorageWork
from zyron.files.storage import LocalStorage, object_key
from zyron.settings import Settings

Scenario = Callable[[AsyncSession, StorageWork, Settings, uuid.UUID], Awaitable[Any]]


def run(tmp_path: Path, scenario: Scenario) -> Any:
    """Run a scenario in a unit of work on a migrated SQLite database with local storage."""

    async def main() -> Any:
        settings = make_settings(tmp_path)
        engine = create_engine(settings.resolved_database_url)
        await upgrade(engine)
        sessionmaker = create_sessionmaker(engine)
        user_id = uuid.uuid4()
        try:
            async with unit_of_work(sessionmaker) as db:
                db.add(User(id=user_id, email=f"{user_id.hex[:8]}@example.com"))
            async with unit_of_work(sessionmaker) as db:
                return await scenario(db, StorageWork(LocalStorage(tmp_path)), settings, user_id)
        finally:
            await engine.dispose()

    return asyncio.run(main())


async def _upload(db: AsyncSession, work: StorageWork, settings: Settings, user: uuid.UUID) -> File:
    return await service.upload(
        db, work, settings, user, data=samples.png(), declared_type="image/png", filename="a.png"
    )


def test_owned_files_keeps_the_order_given(tmp_path: Path) -> None:
    """Files come back in the order of the ids, not the database's."""

    async def scenario(db: AsyncSession, work: StorageWork, s: Settings, user: uuid.UUID) -> Any:
        first, second, third = [await _upload(db, work, s, user) for _ in range(3)]
        got = await service.owned_files(db, user, [third.id, first.id, second.id])
        return [f.id for f in got] == [third.id, first.id, second.id]

    assert run(tmp_path, scenario)


@pytest.mark.parametrize("problem", ["duplicate", "unknown", "foreign"])
def test_owned_files_refusals(tmp_path: Path, problem: str) -> None:
    """A repeated id is a 422; an unknown or foreign id is a 404 that names no id."""

    async def scenario(db: AsyncSession, work: StorageWork, s: Settings, user: uuid.UUID) -> Any:
        mine = await _upload(db, work, s, user)
        other = uuid.uuid4()
        db.add(User(id=other, email=f"{other.hex[:8]}@example.com"))
        await db.flush()
        theirs = await _upload(db, work, s, other)
        ids = {
            "duplicate": [mine.id, mine.id],
            "unknown": [mine.id, uuid.uuid4()],
            "foreign": [mine.id, theirs.id],
        }[problem]
        with pytest.raises((InvalidInput, NotFound)) as caught:
            await service.owned_files(db, user, ids)
        return caught.value

    error = run(tmp_path, scenario)
    if problem == "duplicate":
        assert isinstance(error, InvalidInput)
    else:
        assert isinstance(error, NotFound)
        assert error.detail == "No such file."


def test_link_and_read(tmp_path: Path) -> None:
    """link() records message_files rows; read() returns the stored bytes."""

    async def scenario(db: AsyncSession, work: StorageWork, s: Settings, user: uuid.UUID) -> Any:
        file = await _upload(db, work, s, user)
        now = utcnow()
        chat = ChatSession(user_id=user, title="t", created_at=now, updated_at=now)
        db.add(chat)
        await db.flush()
        message = Message(
            session_id=chat.id, user_id=user, role="user", content="", status="complete"
        )
        db.add(message)
        await db.flush()
        await service.link(db, user, message.id, [file])
        links = (await db.execute(select(MessageFile.file_id))).scalars().all()
        return list(links) == [file.id] and await service.read(work.storage, file)

    assert run(tmp_path, scenario) == samples.png()


def test_read_of_bytes_lost_outside_zyron_is_not_found(tmp_path: Path) -> None:
    """A row whose object is gone reads as a 404, not a crash."""

    async def scenario(db: AsyncSession, work: StorageWork, s: Settings, user: uuid.UUID) -> Any:
        file = await _upload(db, work, s, user)
        await work.storage.delete(file.storage_key)
        with pytest.raises(NotFound, match="missing"):
            await service.read(work.storage, file)

    run(tmp_path, scenario)


def test_a_row_that_cannot_be_written_leaves_no_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored first; when the insert fails, the transaction's storage work deletes the bytes."""

    async def failing_insert(*_: Any, **__: Any) -> File:
        raise RuntimeError("insert failed")

    monkeypatch.setattr("zyron.files.repository.add_file", failing_insert)

    async def scenario(db: AsyncSession, work: StorageWork, s: Settings, user: uuid.UUID) -> Any:
        # As the request's dependency drives it: the error is thrown in at its yield.
        request = type("R", (), {})()
        monkeypatch.setattr(deps, "get_state", lambda _: type("S", (), {"storage": work.storage}))
        driver: AsyncGenerator[StorageWork, None] = deps._storage_work(request)
        request_work = await anext(driver)
        try:
            await _upload(db, request_work, s, user)
        except RuntimeError as exc:
            with pytest.raises(RuntimeError, match="insert failed"):
                await driver.athrow(exc)
        rows = (await db.execute(select(func.count()).select_from(File))).scalar_one()
        return rows, await work.storage.keys()

    assert run(tmp_path, scenario) == (0, [])


def test_keys_are_made_of_ids_only() -> None:
    """object_key uses the two ids and nothing else."""
    user, file = uuid.uuid4(), uuid.uuid4()
    assert object_key(user, file) == f"files/{user.hex}/{file.hex}"
