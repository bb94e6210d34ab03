"""Row level security on files and message_files: the policies alone keep users apart."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select

from tests.db.test_rls import Account, _seed, claims_of, new_account, outcome, read
from tests.pg import APP_ROLE, PostgresServer, migrate, sqlalchemy_url
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.models import File, MessageFile
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import NotFound
from zyron.files import repository, service

INSERT_FILE = (
    "INSERT INTO files (id, user_id, filename, media_type, size, sha256, storage_key, created_at)"
    " VALUES ($1, $2, 'planted.txt', 'text/plain', 3, 'x', 'files/x/y', now())"
)
INSERT_LINK = "INSERT INTO message_files (message_id, file_id, user_id) VALUES ($1, $2, $3)"


@dataclass(frozen=True)
class Owner:
    """A seeded user, their file and the link from their first message to it."""

    account: Account
    file_id: uuid.UUID


@dataclass(frozen=True)
class FilesWorld:
    """Users A and B, each with a file attached to one of their messages."""

    admin_dsn: str
    app_dsn: str
    a: Owner
    b: Owner


async def _seed_files(admin_dsn: str, owners: tuple[Owner, ...]) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for owner in owners:
            user = owner.account.user_id
            await conn.execute(INSERT_FILE, owner.file_id, user)
            await conn.execute(INSERT_LINK, owner.account.message_ids[0], owner.file_id, user)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def world(postgres: PostgresServer) -> FilesWorld:
    """A database migrated to head, with A's and B's messages, files and links."""
    database = postgres.create_database()
    asyncio.run(migrate(sqlalchemy_url(postgres.dsn(database, user=APP_ROLE)), "head"))
    a, b = Owner(new_account(), uuid.uuid4()), Owner(new_account(), uuid.uuid4())
    asyncio.run(_seed(postgres.dsn(database), (a.account, b.account)))
    asyncio.run(_seed_files(postgres.dsn(database), (a, b)))
    return FilesWorld(postgres.dsn(database), postgres.dsn(database, user=APP_ROLE), a, b)


def test_unfiltered_queries_see_only_own_files_and_links(world: FilesWorld) -> None:
    """The app's ORM queries with their user filter removed, run for A, return A's rows only."""
    a, b = world.a, world.b
    claims = {"sub": str(a.account.user_id), "role": "authenticated"}

    async def scenario() -> dict[str, Any]:
        engine = create_engine(sqlalchemy_url(world.app_dsn))
        try:
            async with unit_of_work(
                create_sessionmaker(engine), role="authenticated", claims=claims
            ) as db:
                files = (await db.execute(select(File))).scalars().all()
                links = (await db.execute(select(MessageFile))).scalars().all()
                # Repository calls given B's ids by mistake, inside A's unit of work.
                owned = await repository.owned_file(db, b.account.user_id, b.file_id)
                listed = await repository.list_files(db, b.account.user_id, limit=50)
                used = await repository.used_bytes(db, b.account.user_id)
                try:
                    await service.owned_files(db, b.account.user_id, [b.file_id])
                    found = "found"
                except NotFound:
                    found = "not found"
        finally:
            await engine.dispose()
        return {
            "files": {row.id for row in files},
            "links": {row.file_id for row in links},
            "owned": owned,
            "listed": list(listed),
            "used": used,
            "owned_files": found,
        }

    assert asyncio.run(scenario()) == {
        "files": {a.file_id},
        "links": {a.file_id},
        "owned": None,
        "listed": [],
        "used": 0,
        "owned_files": "not found",
    }


def test_files_and_links_cannot_be_made_or_removed_for_another_user(world: FilesWorld) -> None:
    """A cannot plant a file for B, link B's file or message, or delete B's rows."""
    a, b = world.a.account, world.b.account

    async def scenario() -> dict[str, Any]:
        claims = claims_of(a.user_id)

        async def attempt(sql: str, *args: Any) -> str:
            return await outcome(world.app_dsn, sql, *args, role="authenticated", claims=claims)

        return {
            "file for B": await attempt(INSERT_FILE, uuid.uuid4(), b.user_id),
            "A's message to B's file": await attempt(
                INSERT_LINK, a.message_ids[1], world.b.file_id, a.user_id
            ),
            "B's message to A's file": await attempt(
                INSERT_LINK, b.message_ids[1], world.a.file_id, a.user_id
            ),
            "link for B": await attempt(INSERT_LINK, b.message_ids[1], world.b.file_id, b.user_id),
            "delete B's file": await attempt("DELETE FROM files WHERE id = $1", world.b.file_id),
            "delete B's links": await attempt(
                "DELETE FROM message_files WHERE user_id = $1", b.user_id
            ),
            "update a file": await attempt(
                "UPDATE files SET filename = 'x' WHERE id = $1", world.a.file_id
            ),
            "own file": await attempt(INSERT_FILE, uuid.uuid4(), a.user_id),
            "own link": await attempt(INSERT_LINK, a.message_ids[1], world.a.file_id, a.user_id),
            "B's file by id": await read(
                world.app_dsn,
                "SELECT id FROM files WHERE id = $1",
                world.b.file_id,
                role="authenticated",
                claims=claims,
            ),
        }

    assert asyncio.run(scenario()) == {
        "file for B": "42501 policy",
        "A's message to B's file": "42501 policy",
        "B's message to A's file": "42501 policy",
        "link for B": "42501 policy",
        "delete B's file": "DELETE 0",
        "delete B's links": "DELETE 0",
        "update a file": "42501 privilege",  # files are never updated: no grant at all
        "own file": "INSERT 0 1",
        "own link": "INSERT 0 1",
        "B's file by id": set(),
    }
