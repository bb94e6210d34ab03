"""Migration 0006 marks sessions still on the placeholder title, on SQLite and under forced RLS."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy import text

from tests.pg import APP_ROLE, PostgresServer, migrate, sqlalchemy_url
from zyron.db.engine import create_engine

USER = uuid.UUID(int=1)
SESSIONS = {"New chat": uuid.UUID(int=11), "Trip to Rome": uuid.UUID(int=12)}


async def _seed_and_read(url: str, admin: str | None) -> tuple[dict[str, bool], bool | None]:
    """Migrate to 0005, add two sessions, migrate to head; return title_pending per title."""
    await migrate(url, "0005")
    if admin is None:  # SQLite: no roles, no policies
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO users (id, email, created_at) VALUES (:u, 'a@x.test', 0)"),
                    {"u": USER.hex},
                )
                for title, sid in SESSIONS.items():
                    await conn.execute(
                        text(
                            "INSERT INTO chat_sessions (id, user_id, title, created_at, "
                            "updated_at) VALUES (:i, :u, :t, 0, 0)"
                        ),
                        {"i": sid.hex, "u": USER.hex, "t": title},
                    )
        finally:
            await engine.dispose()
    else:  # as the superuser: the seed must not depend on the policies
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(
                "INSERT INTO users (id, email, created_at) VALUES ($1, 'a@x.test', now())", USER
            )
            for title, sid in SESSIONS.items():
                await conn.execute(
                    "INSERT INTO chat_sessions (id, user_id, title, created_at, updated_at) "
                    "VALUES ($1, $2, $3, now(), now())",
                    sid,
                    USER,
                    title,
                )
        finally:
            await conn.close()
    await migrate(url, "head")
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            if admin is None:
                rows = await conn.execute(text("SELECT title, title_pending FROM chat_sessions"))
                return {row[0]: bool(row[1]) for row in rows}, None
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(admin)
    try:
        rows = await conn.fetch("SELECT title, title_pending FROM chat_sessions")
        forced = await conn.fetchval(
            "SELECT relforcerowsecurity FROM pg_class WHERE relname = 'chat_sessions'"
        )
    finally:
        await conn.close()
    return {row["title"]: row["title_pending"] for row in rows}, bool(forced)


def test_backfill_on_sqlite(tmp_path: Path) -> None:
    """A session titled "New chat" before the migration waits for a generated title."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'zyron.db'}"
    pending, _ = asyncio.run(_seed_and_read(url, None))
    assert pending == {"New chat": True, "Trip to Rome": False}


def test_backfill_under_forced_rls(postgres: PostgresServer) -> None:
    """Run as the owning (non-superuser) role, the backfill still sees every row, and RLS is
    forced again afterwards."""
    database = postgres.create_database()
    url = sqlalchemy_url(postgres.dsn(database, user=APP_ROLE))
    pending, forced = asyncio.run(_seed_and_read(url, postgres.dsn(database)))
    assert pending == {"New chat": True, "Trip to Rome": False}
    assert forced is True
