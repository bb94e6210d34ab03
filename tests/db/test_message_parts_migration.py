"""Migration 0007 gives every existing message its text as one part, on SQLite and under RLS."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text

from tests.pg import APP_ROLE, PostgresServer, migrate, sqlalchemy_url
from zyron.db.engine import create_engine

USER = uuid.UUID(int=1)
SESSION = uuid.UUID(int=2)
# id -> (role, content, status): a question, its reply, and a reply that failed with no text.
MESSAGES = {
    uuid.UUID(int=11): ("user", "Hello there", "complete"),
    uuid.UUID(int=12): ("assistant", "General Kenobi", "complete"),
    uuid.UUID(int=13): ("assistant", "", "error"),
}
EXPECTED = {
    uuid.UUID(int=11): [{"type": "text", "text": "Hello there"}],
    uuid.UUID(int=12): [{"type": "text", "text": "General Kenobi"}],
    uuid.UUID(int=13): [],
}


async def _seed_sqlite(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO users (id, email, created_at) VALUES (:u, 'a@x.test', 0)"),
                {"u": USER.hex},
            )
            await conn.execute(
                text(
                    "INSERT INTO chat_sessions (id, user_id, title, created_at, updated_at) "
                    "VALUES (:s, :u, 't', 0, 0)"
                ),
                {"s": SESSION.hex, "u": USER.hex},
            )
            for mid, (role, content, status) in MESSAGES.items():
                await conn.execute(
                    text(
                        "INSERT INTO messages (id, session_id, user_id, role, content, status, "
                        "created_at) VALUES (:i, :s, :u, :r, :c, :st, 0)"
                    ),
                    {
                        "i": mid.hex,
                        "s": SESSION.hex,
                        "u": USER.hex,
                        "r": role,
                        "c": content,
                        "st": status,
                    },
                )
    finally:
        await engine.dispose()


async def _read_sqlite(url: str) -> dict[uuid.UUID, Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT id, parts FROM messages"))
            return {uuid.UUID(str(row[0])): json.loads(row[1]) for row in rows}
    finally:
        await engine.dispose()


def test_every_message_gets_its_text_as_one_part_on_sqlite(tmp_path: Path) -> None:
    """Before: content only. After: one text part each, none for a reply without text."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'zyron.db'}"

    async def scenario() -> dict[uuid.UUID, Any]:
        await migrate(url, "0006")
        await _seed_sqlite(url)
        await migrate(url, "head")
        return await _read_sqlite(url)

    assert asyncio.run(scenario()) == EXPECTED


def test_the_backfill_runs_under_forced_rls(postgres: PostgresServer) -> None:
    """Run as the owning (non-superuser) role, the backfill sees every row; RLS is forced again."""
    database = postgres.create_database()
    url = sqlalchemy_url(postgres.dsn(database, user=APP_ROLE))
    admin = postgres.dsn(database)

    async def scenario() -> tuple[dict[uuid.UUID, Any], bool]:
        await migrate(url, "0006")
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(
                "INSERT INTO users (id, email, created_at) VALUES ($1, 'a@x.test', now())", USER
            )
            await conn.execute(
                "INSERT INTO chat_sessions (id, user_id, title, created_at, updated_at) "
                "VALUES ($1, $2, 't', now(), now())",
                SESSION,
                USER,
            )
            for mid, (role, content, status) in MESSAGES.items():
                await conn.execute(
                    "INSERT INTO messages (id, session_id, user_id, role, content, status, "
                    "created_at) VALUES ($1, $2, $3, $4, $5, $6, now())",
                    mid,
                    SESSION,
                    USER,
                    role,
                    content,
                    status,
                )
        finally:
            await conn.close()
        await migrate(url, "head")
        conn = await asyncpg.connect(admin)
        try:
            rows = await conn.fetch("SELECT id, parts::text FROM messages")
            forced = await conn.fetchval(
                "SELECT relforcerowsecurity FROM pg_class WHERE relname = 'messages'"
            )
        finally:
            await conn.close()
        return {row["id"]: json.loads(row["parts"]) for row in rows}, bool(forced)

    parts, forced = asyncio.run(scenario())
    assert parts == EXPECTED
    assert forced is True
