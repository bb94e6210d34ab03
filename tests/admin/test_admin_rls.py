"""Postgres: admins read through role zyron_admin and its policies; forced RLS stays on.

In the database itself, as tests/db/test_rls.py does: the app's login role switches to
zyron_admin (or authenticated) with the transaction-local settings the app sends.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from tests.db.test_rls import Account, _seed, claims_of, new_account, outcome, read
from tests.pg import APP_ROLE, PostgresServer, migrate, sqlalchemy_url

ADMIN_CLAIMS = '{"role":"zyron_admin"}'


@dataclass(frozen=True)
class World:
    """A migrated database with users A and B, their usage and overrides."""

    admin_dsn: str
    app_dsn: str
    a: Account
    b: Account


async def _seed_usage(dsn: str, accounts: tuple[Account, ...]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for number, acc in enumerate(accounts, start=1):
            await conn.execute(
                "INSERT INTO usage_daily (user_id, day, model, input_tokens, output_tokens, "
                "replies) VALUES ($1, current_date, 'm', $2, 1, 1)",
                acc.user_id,
                number * 100,
            )
            await conn.execute(
                "INSERT INTO limit_overrides (user_id, daily_tokens, updated_at) "
                "VALUES ($1, $2, now())",
                acc.user_id,
                number,
            )
            await conn.execute(
                "UPDATE users SET password_hash = 'secret-hash' WHERE id = $1", acc.user_id
            )
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def world(postgres: PostgresServer) -> World:
    """A database migrated to head by the app role, seeded as the superuser."""
    database = postgres.create_database()
    asyncio.run(migrate(sqlalchemy_url(postgres.dsn(database, user=APP_ROLE)), "head"))
    a, b = new_account(), new_account()
    asyncio.run(_seed(postgres.dsn(database), (a, b)))
    asyncio.run(_seed_usage(postgres.dsn(database), (a, b)))
    return World(postgres.dsn(database), postgres.dsn(database, user=APP_ROLE), a, b)


def as_admin(world: World, sql: str, *args: Any) -> set[Any] | str:
    """Read as zyron_admin, as the app's admin transactions do."""
    return asyncio.run(read(world.app_dsn, sql, *args, role="zyron_admin", claims=ADMIN_CLAIMS))


def test_zyron_admin_reads_every_user_their_usage_and_overrides(world: World) -> None:
    """Both users, both usage rows, both overrides: across users, through its own policies."""
    both = {world.a.user_id, world.b.user_id}
    assert as_admin(world, "SELECT id FROM users") == both
    assert as_admin(world, "SELECT user_id FROM usage_daily") == both
    assert as_admin(world, "SELECT user_id FROM limit_overrides") == both
    assert as_admin(world, "SELECT role FROM users") == {"user"}


def test_zyron_admin_reads_nothing_else(world: World) -> None:
    """Not a password hash, not a conversation, not a refresh token."""
    for sql in (
        "SELECT password_hash FROM users",
        "SELECT id FROM chat_sessions",
        "SELECT id FROM messages",
        "SELECT id FROM refresh_tokens",
        "SELECT user_id FROM deleted_accounts",
        "SELECT id FROM files",
    ):
        assert as_admin(world, sql) == "42501 privilege", sql


def test_zyron_admin_changes_only_role_and_disabled_mark(world: World) -> None:
    """UPDATE of role and disabled_at passes (both users); email, and a bad role, do not."""
    a = world.a

    async def scenario() -> dict[str, str]:
        async def run(sql: str, *args: Any) -> str:
            return await outcome(world.app_dsn, sql, *args, role="zyron_admin", claims=ADMIN_CLAIMS)

        return {
            "role": await run("UPDATE users SET role = 'admin'"),
            "disabled": await run("UPDATE users SET disabled_at = now() WHERE id = $1", a.user_id),
            "email": await run("UPDATE users SET email = 'x@example.com'"),
            "bad role": await run("UPDATE users SET role = 'owner' WHERE id = $1", a.user_id),
            "insert user": await run(
                "INSERT INTO users (id, created_at) VALUES ($1, now())", uuid.uuid4()
            ),
            "delete user": await run("DELETE FROM users"),
            "set override": await run(
                "UPDATE limit_overrides SET storage_bytes = 5 WHERE user_id = $1", a.user_id
            ),
            "delete override": await run("DELETE FROM limit_overrides"),
        }

    result = asyncio.run(scenario())
    assert result["role"] == "UPDATE 2"
    assert result["disabled"] == "UPDATE 1"
    assert result["email"] == "42501 privilege"
    assert result["bad role"].startswith("23514")  # ck_users_role
    assert result["insert user"] == "42501 privilege"
    assert result["delete user"] == "42501 privilege"
    assert result["set override"] == "UPDATE 1"
    assert result["delete override"] == "DELETE 2"


def test_authenticated_still_sees_only_its_own_rows(world: World) -> None:
    """A reads its own overrides (to be held to them) and cannot change any; nothing of B's."""
    a, b = world.a, world.b
    claims = claims_of(a.user_id)
    newcomer = uuid.uuid4()

    async def scenario() -> dict[str, Any]:
        async def get(sql: str) -> set[Any] | str:
            return await read(world.app_dsn, sql, role="authenticated", claims=claims)

        async def run(sql: str, *args: Any) -> str:
            return await outcome(world.app_dsn, sql, *args, role="authenticated", claims=claims)

        async def delete_disabled() -> str:
            conn = await asyncpg.connect(world.admin_dsn)
            try:
                await conn.execute("UPDATE users SET disabled_at = now() WHERE id = $1", a.user_id)
                deleted = await run("DELETE FROM users WHERE id = $1", a.user_id)
            finally:
                await conn.execute("UPDATE users SET disabled_at = NULL WHERE id = $1", a.user_id)
                await conn.close()
            return deleted

        return {
            "users": await get("SELECT id FROM users"),
            "usage": await get("SELECT user_id FROM usage_daily"),
            "overrides": await get("SELECT user_id FROM limit_overrides"),
            "raise own": await run("UPDATE limit_overrides SET daily_tokens = 0"),
            "insert": await run(
                "INSERT INTO limit_overrides (user_id, updated_at) VALUES ($1, now())", b.user_id
            ),
            "delete": await run("DELETE FROM limit_overrides"),
            "promote self": await run("UPDATE users SET role = 'admin'"),
            # Supabase's Data API: a row made as an admin, or made again to escape a disable.
            "insert as admin": await outcome(
                world.app_dsn,
                "INSERT INTO users (id, role, created_at) VALUES ($1, 'admin', now())",
                newcomer,
                role="authenticated",
                claims=claims_of(newcomer),
            ),
            "insert disabled": await outcome(
                world.app_dsn,
                "INSERT INTO users (id, disabled_at, created_at) VALUES ($1, now(), now())",
                newcomer,
                role="authenticated",
                claims=claims_of(newcomer),
            ),
            "insert plain": await outcome(
                world.app_dsn,
                "INSERT INTO users (id, created_at) VALUES ($1, now())",
                newcomer,
                role="authenticated",
                claims=claims_of(newcomer),
            ),
            "delete while disabled": await delete_disabled(),
        }

    assert asyncio.run(scenario()) == {
        "users": {a.user_id},
        "usage": {a.user_id},
        "overrides": {a.user_id},
        "raise own": "42501 privilege",
        "insert": "42501 privilege",
        "delete": "42501 privilege",
        "promote self": "42501 privilege",
        "insert as admin": "42501 policy",
        "insert disabled": "42501 policy",
        "insert plain": "INSERT 0 1",
        "delete while disabled": "DELETE 0",
    }


def test_without_switching_role_nothing_is_seen(world: World) -> None:
    """The login role itself (the tables' owner) is under forced RLS: no policy, no rows, in
    limit_overrides too; zyron_admin's policies need the switch, not only the membership."""
    for table in ("users", "usage_daily", "limit_overrides"):
        column = "id" if table == "users" else "user_id"
        sql = f"SELECT {column} FROM {table}"
        assert asyncio.run(read(world.app_dsn, sql)) == set(), table
