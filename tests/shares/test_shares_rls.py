"""Anonymous reads of share links on Postgres: the database's policies decide what anon sees.

Raw asyncpg as the app's role switching to `anon`, exactly as zyron.db.unit_of_work does: no
application filter is in the way, so what is seen is what the policies of migration 0012 allow.
Without the token's hash, or with a wrong one, anon reads no row; with one, that share and the
files it shows, and nothing else, and only the columns a link needs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select

from tests.pg import APP_ROLE, PostgresServer, migrate, sqlalchemy_url
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.models import File, Share, ShareFile
from zyron.db.unit_of_work import unit_of_work
from zyron.shares import repository
from zyron.shares.service import HELD_SHARE_SETTING, token_hash

SET_ANON = "SELECT set_config('role', 'anon', true)"
SET_HELD = f"SELECT set_config('{HELD_SHARE_SETTING}', $1, true)"


@dataclass(frozen=True)
class Owner:
    """A user with a session, two files, and a share showing only the first."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    shown_file: uuid.UUID
    other_file: uuid.UUID
    share_id: uuid.UUID
    token: str


@dataclass(frozen=True)
class World:
    """A migrated database with owners A and B; DSNs for the superuser and the app role."""

    admin_dsn: str
    app_dsn: str
    a: Owner
    b: Owner


def _owner() -> Owner:
    return Owner(
        user_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        shown_file=uuid.uuid4(),
        other_file=uuid.uuid4(),
        share_id=uuid.uuid4(),
        token=secrets.token_urlsafe(32),
    )


async def _seed(admin_dsn: str, owners: tuple[Owner, ...]) -> None:
    # As the superuser: seeding must not depend on the policies under test.
    conn = await asyncpg.connect(admin_dsn)
    try:
        async with conn.transaction():
            for o in owners:
                await conn.execute(
                    "INSERT INTO users (id, email, created_at) VALUES ($1, $2, now())",
                    o.user_id,
                    f"{o.user_id.hex[:10]}@example.com",
                )
                await conn.execute(
                    "INSERT INTO chat_sessions (id, user_id, title, created_at, updated_at) "
                    "VALUES ($1, $2, 'secret title', now(), now())",
                    o.session_id,
                    o.user_id,
                )
                for file_id in (o.shown_file, o.other_file):
                    await conn.execute(
                        "INSERT INTO files (id, user_id, filename, media_type, size, sha256, "
                        "storage_key, created_at) VALUES ($1, $2, 'f.txt', 'text/plain', 3, "
                        "$3, $4, now())",
                        file_id,
                        o.user_id,
                        "0" * 64,
                        f"files/{o.user_id.hex}/{file_id.hex}",
                    )
                await conn.execute(
                    "INSERT INTO shares (id, user_id, session_id, token_hash, title, snapshot, "
                    "created_at) VALUES ($1, $2, $3, $4, 'shared', $5::jsonb, now())",
                    o.share_id,
                    o.user_id,
                    o.session_id,
                    token_hash(o.token),
                    json.dumps([{"role": "user", "content": "hi"}]),
                )
                await conn.execute(
                    "INSERT INTO share_files (share_id, file_id, user_id) VALUES ($1, $2, $3)",
                    o.share_id,
                    o.shown_file,
                    o.user_id,
                )
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def world(postgres: PostgresServer) -> World:
    """A database migrated to head by the app role, seeded with owners A and B."""
    database = postgres.create_database()
    asyncio.run(migrate(sqlalchemy_url(postgres.dsn(database, user=APP_ROLE)), "head"))
    a, b = _owner(), _owner()
    asyncio.run(_seed(postgres.dsn(database), (a, b)))
    return World(postgres.dsn(database), postgres.dsn(database, user=APP_ROLE), a, b)


@asynccontextmanager
async def as_anon(dsn: str, held: str | None) -> AsyncIterator[asyncpg.Connection]:
    """A rolled-back transaction of the app role as anon, holding `held` as the token hash."""
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute(SET_ANON)
        if held is not None:
            await conn.execute(SET_HELD, held)
        try:
            yield conn
        finally:
            await tx.rollback()
    finally:
        await conn.close()


async def _read(dsn: str, held: str | None, sql: str, *args: Any) -> set[Any] | str:
    """The first column of every row anon reads, or the SQLSTATE that refused the query."""
    async with as_anon(dsn, held) as conn:
        try:
            return {row[0] for row in await conn.fetch(sql, *args)}
        except asyncpg.PostgresError as exc:
            return f"{exc.sqlstate}"


VISIBLE = {
    "shares": "SELECT id FROM shares",
    "share_files": "SELECT file_id FROM share_files",
    "files": "SELECT id FROM files",
}


def test_without_the_token_anon_reads_nothing(world: World) -> None:
    """No setting, an empty one, a wrong hash, the token itself instead of its hash: no row."""
    wrong = hashlib.sha256(b"not a token").hexdigest()

    async def scenario() -> dict[str, dict[str, set[Any] | str]]:
        return {
            str(held): {
                table: await _read(world.app_dsn, held, sql) for table, sql in VISIBLE.items()
            }
            for held in (None, "", wrong, world.a.token, token_hash(world.a.token).upper())
        }

    seen = asyncio.run(scenario())
    assert len(seen) == 5
    assert seen == {held: {table: set() for table in VISIBLE} for held in seen}


def test_with_a_token_anon_reads_that_share_and_its_files_only(world: World) -> None:
    """A's hash: A's share, the one file it shows; neither A's other file nor anything of B's."""
    a, b = world.a, world.b
    held = token_hash(a.token)

    async def scenario() -> dict[str, set[Any] | str]:
        reads = {table: await _read(world.app_dsn, held, sql) for table, sql in VISIBLE.items()}
        reads["a's other file, by id"] = await _read(
            world.app_dsn, held, "SELECT id FROM files WHERE id = $1", a.other_file
        )
        reads["b's files, by owner"] = await _read(
            world.app_dsn, held, "SELECT id FROM files WHERE user_id = $1", b.user_id
        )
        reads["b's share, by id"] = await _read(
            world.app_dsn, held, "SELECT id FROM shares WHERE id = $1", b.share_id
        )
        reads["b's share with b's hash in the query"] = await _read(
            world.app_dsn, held, "SELECT id FROM shares WHERE token_hash = $1", token_hash(b.token)
        )
        for table, sql in VISIBLE.items():
            reads[f"b's {table}"] = await _read(world.app_dsn, token_hash(b.token), sql)
        return reads

    assert asyncio.run(scenario()) == {
        "shares": {a.share_id},
        "share_files": {a.shown_file},
        "files": {a.shown_file},
        "a's other file, by id": set(),
        "b's files, by owner": set(),
        "b's share, by id": set(),
        "b's share with b's hash in the query": set(),
        "b's shares": {b.share_id},
        "b's share_files": {b.shown_file},
        "b's files": {b.shown_file},
    }


def test_anon_reads_only_the_columns_a_link_needs_and_writes_nothing(world: World) -> None:
    """Holding a token: owner ids, session ids, hashes of files' contents and all other tables
    are refused (42501), and so is every write."""
    a = world.a
    held = token_hash(a.token)

    async def attempt(sql: str, *args: Any) -> str:
        async with as_anon(world.app_dsn, held) as conn:
            try:
                return str(await conn.execute(sql, *args))
            except asyncpg.PostgresError as exc:
                return f"{exc.sqlstate}"

    statements = {
        "shares.user_id": "SELECT user_id FROM shares",
        "shares.session_id": "SELECT session_id FROM shares",
        "shares *": "SELECT * FROM shares",
        "share_files.user_id": "SELECT user_id FROM share_files",
        "files.sha256": "SELECT sha256 FROM files",
        "files *": "SELECT * FROM files",
        "messages": "SELECT id FROM messages",
        "chat_sessions": "SELECT id FROM chat_sessions",
        "users": "SELECT id FROM users",
        "message_files": "SELECT file_id FROM message_files",
        "delete shares": "DELETE FROM shares",
        "update shares": "UPDATE shares SET title = 'x'",
        "insert share_files": "INSERT INTO share_files (share_id, file_id, user_id) "
        f"VALUES ('{a.share_id}', '{a.other_file}', '{a.user_id}')",
        "delete files": "DELETE FROM files",
    }

    async def scenario() -> dict[str, str]:
        return {name: await attempt(sql) for name, sql in statements.items()}

    assert asyncio.run(scenario()) == dict.fromkeys(statements, "42501")
    granted = asyncio.run(_column_grants(world.admin_dsn))
    assert granted == {
        "shares": {"id", "title", "snapshot", "created_at", "token_hash"},
        "share_files": {"share_id", "file_id"},
        "files": {"id", "user_id", "filename", "media_type", "size", "storage_key"},
    }


async def _column_grants(admin_dsn: str) -> dict[str, set[str]]:
    conn = await asyncpg.connect(admin_dsn)
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.column_privileges "
            "WHERE grantee = 'anon' AND privilege_type = 'SELECT'"
        )
    finally:
        await conn.close()
    granted: dict[str, set[str]] = {}
    for row in rows:
        granted.setdefault(row["table_name"], set()).add(row["column_name"])
    return granted


def test_the_held_token_ends_with_its_transaction(world: World) -> None:
    """On one connection, the next transaction as anon holds nothing: no leak through a pool."""
    a = world.a

    async def scenario() -> tuple[set[Any], set[Any]]:
        conn = await asyncpg.connect(world.app_dsn)
        try:
            async with conn.transaction():
                await conn.execute(SET_ANON)
                await conn.execute(SET_HELD, token_hash(a.token))
                first = {row[0] for row in await conn.fetch("SELECT id FROM shares")}
            async with conn.transaction():
                await conn.execute(SET_ANON)
                second = {row[0] for row in await conn.fetch("SELECT id FROM shares")}
            return first, second
        finally:
            await conn.close()

    assert asyncio.run(scenario()) == ({a.share_id}, set())


def test_the_apps_anon_unit_of_work_is_held_to_the_policies(world: World) -> None:
    """The app's own anon transaction, unfiltered queries included: the policies still hold."""
    a = world.a

    async def scenario() -> dict[str, Any]:
        engine = create_engine(sqlalchemy_url(world.app_dsn))
        sessionmaker = create_sessionmaker(engine)
        try:
            settings = {HELD_SHARE_SETTING: token_hash(a.token)}
            async with unit_of_work(sessionmaker, role="anon", local_settings=settings) as db:
                held = await repository.held_share(db, token_hash(a.token))
                files = await repository.held_files(db, token_hash(a.token))
                # No filter at all: only the policies stand between anon and the tables.
                every_share = set((await db.execute(select(Share.id))).scalars())
                every_link = set((await db.execute(select(ShareFile.file_id))).scalars())
                every_file = set((await db.execute(select(File.id))).scalars())
                wrong_hash = await repository.held_share(db, token_hash(world.b.token))
            async with unit_of_work(sessionmaker, role="anon") as db:
                without = await repository.held_share(db, token_hash(a.token))
            return {
                "held": None if held is None else held.id,
                "files": [file.id for file in files],
                "every share": every_share,
                "every link": every_link,
                "every file": every_file,
                "b's hash": wrong_hash,
                "without the setting": without,
            }
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == {
        "held": a.share_id,
        "files": [a.shown_file],
        "every share": {a.share_id},
        "every link": {a.shown_file},
        "every file": {a.shown_file},
        "b's hash": None,
        "without the setting": None,
    }
