"""Alembic migrations on a SQLite file: up, down, up again, in step with the models."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.migrate import downgrade, upgrade
from zyron.db.models import Base, ChatSession, Message, Role, Status, User
from zyron.db.types import utcnow

TABLES = {"users", "chat_sessions", "messages", "refresh_tokens"}


def database_url(db_file: Path) -> str:
    """The async SQLite URL of a file."""
    return f"sqlite+aiosqlite:///{db_file}"


def table_names(db_file: Path) -> set[str]:
    """Read the table names with the standard library, independent of the engine under test."""
    with sqlite3.connect(db_file) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(row[0]) for row in rows}


async def _with_engine(db_file: Path, *revisions: str) -> None:
    engine = create_engine(database_url(db_file))
    try:
        for revision in revisions:
            if revision == "base":
                await downgrade(engine, "base")
            else:
                await upgrade(engine, revision)
    finally:
        await engine.dispose()


def test_upgrade_creates_the_tables(tmp_path: Path) -> None:
    """Upgrading to head creates the four tables."""
    db_file = tmp_path / "zyron.db"
    asyncio.run(_with_engine(db_file, "head"))
    assert table_names(db_file) >= TABLES


def test_downgrade_removes_them_and_upgrade_again_works(tmp_path: Path) -> None:
    """Downgrading to base drops every table; a second upgrade builds them again."""
    db_file = tmp_path / "zyron.db"
    asyncio.run(_with_engine(db_file, "head", "base"))
    assert not table_names(db_file) & TABLES
    asyncio.run(_with_engine(db_file, "head"))
    assert table_names(db_file) >= TABLES


def test_upgrade_twice_is_a_no_op(tmp_path: Path) -> None:
    """Upgrading a database already at head changes nothing."""
    db_file = tmp_path / "zyron.db"
    asyncio.run(_with_engine(db_file, "head", "head"))
    with sqlite3.connect(db_file) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert len(versions) == 1


def _modelled(name: str | None, type_: str, _parents: object) -> bool:
    """Leave out the FTS5 search tables (and their shadow tables): SQL only, no models."""
    return not (type_ == "table" and name is not None and "_fts" in name)


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_name": _modelled}
    )
    diffs: list[Any] = compare_metadata(context, Base.metadata)
    return diffs


def test_models_match_migrations(tmp_path: Path) -> None:
    """After upgrading, autogenerate finds no difference between the models and the schema."""

    async def scenario() -> list[Any]:
        engine = create_engine(database_url(tmp_path / "zyron.db"))
        try:
            await upgrade(engine)
            async with engine.connect() as conn:
                return await conn.run_sync(_diff)
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == []


def test_engine_turns_on_wal_and_foreign_keys(tmp_path: Path) -> None:
    """Every connection of the engine runs in WAL mode with foreign keys enforced."""

    async def scenario() -> list[tuple[str, int]]:
        engine = create_engine(database_url(tmp_path / "zyron.db"))
        seen: list[tuple[str, int]] = []
        try:
            # Two connections at once: the pragmas must hold for each, not just the first.
            # Each commits before the next reads: transactions take SQLite's write lock.
            async with engine.connect() as first, engine.connect() as second:
                for conn in (first, second):
                    mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
                    keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
                    await conn.commit()
                    seen.append((str(mode).lower(), int(keys)))
        finally:
            await engine.dispose()
        return seen

    assert asyncio.run(scenario()) == [("wal", 1), ("wal", 1)]


async def _seed(engine: AsyncEngine) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """Insert a user with two sessions; the first has two messages, the second one."""
    sessionmaker = create_sessionmaker(engine)
    now = utcnow()
    async with sessionmaker() as db, db.begin():
        user = User(email=f"{uuid.uuid4().hex[:8]}@example.com", created_at=now)
        db.add(user)
        await db.flush()
        doomed = ChatSession(user_id=user.id, title="doomed", created_at=now, updated_at=now)
        kept = ChatSession(user_id=user.id, title="kept", created_at=now, updated_at=now)
        db.add_all([doomed, kept])
        await db.flush()
        for chat, role in ((doomed, Role.USER), (doomed, Role.ASSISTANT), (kept, Role.USER)):
            db.add(
                Message(
                    session_id=chat.id,
                    user_id=user.id,
                    role=role,
                    content="hi",
                    status=Status.COMPLETE,
                    created_at=now,
                )
            )
    return user.id, doomed.id, kept.id


def test_deleting_a_session_cascades_in_the_database(tmp_path: Path) -> None:
    """A plain SQL DELETE of a session removes its messages: the database cascades, not the ORM."""

    async def scenario() -> tuple[int, int, int]:
        engine = create_engine(database_url(tmp_path / "zyron.db"))
        try:
            await upgrade(engine)
            user_id, doomed, kept = await _seed(engine)
            async with engine.begin() as conn:
                # Core DELETE: no ORM relationship or repository code takes part.
                await conn.execute(delete(ChatSession).where(ChatSession.id == doomed))
            async with engine.connect() as conn:

                async def count(session_id: uuid.UUID) -> int:
                    query = select(func.count()).where(Message.session_id == session_id)
                    return int((await conn.execute(query)).scalar_one())

                left_doomed, left_kept = await count(doomed), await count(kept)
            async with engine.begin() as conn:
                await conn.execute(delete(User).where(User.id == user_id))
            async with engine.connect() as conn:
                everything = (await conn.execute(select(func.count()).select_from(Message))).one()
            return left_doomed, left_kept, int(everything[0])
        finally:
            await engine.dispose()

    # Deleting the user then takes the remaining session's message too.
    assert asyncio.run(scenario()) == (0, 1, 0)


def test_savepoint_rollback_keeps_the_outer_transaction_atomic(tmp_path: Path) -> None:
    """On SQLite, releasing a savepoint must not commit the transaction around it."""

    async def scenario() -> int:
        engine = create_engine(database_url(tmp_path / "zyron.db"))
        try:
            await upgrade(engine)
            sessionmaker = create_sessionmaker(engine)
            with contextlib.suppress(RuntimeError):
                async with sessionmaker() as db, db.begin():
                    async with db.begin_nested():
                        db.add(User(email="nested@example.com", created_at=utcnow()))
                    raise RuntimeError("the request fails after the savepoint")
            async with engine.connect() as conn:
                return int((await conn.execute(text("SELECT count(*) FROM users"))).scalar_one())
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == 0
