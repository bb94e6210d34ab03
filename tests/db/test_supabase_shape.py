"""Migrations on a Supabase-shaped database: Supabase's auth objects stay exactly as they were."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from tests.pg import APP_ROLE, PostgresServer, sqlalchemy_url
from tests.pg import migrate as migrate_url
from zyron.db.migrate import alembic_config

TABLES = ("users", "chat_sessions", "messages", "refresh_tokens")
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")

# Roles are cluster-wide and other tests may have made them already: create only what is
# missing (as Supabase's own init scripts define them) and never alter an existing role.
SUPABASE_ROLES = f"""
DO $roles$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'service_role') THEN
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'supabase_auth_admin') THEN
    CREATE ROLE supabase_auth_admin NOLOGIN NOINHERIT;
  END IF;
END $roles$;
GRANT anon, authenticated, service_role TO {APP_ROLE};
"""

# GoTrue migrations 20220224000811 and 20220531120530, laid out as Supabase ships them (not as
# zyron.db.rls writes them), so any rewrite by our migrations would show in the definition.
SUPABASE_AUTH = f"""
CREATE SCHEMA auth AUTHORIZATION supabase_auth_admin;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;

CREATE TABLE auth.users (
    id uuid NOT NULL PRIMARY KEY,
    email varchar(255),
    raw_user_meta_data jsonb,
    created_at timestamptz
);
ALTER TABLE auth.users OWNER TO supabase_auth_admin;

create or replace function auth.uid()
returns uuid
language sql stable
as $$
  select
  coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role()
returns text
language sql stable
as $$
  select
  coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email()
returns text
language sql stable
as $$
  select
  coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

create or replace function auth.jwt()
returns jsonb
language sql stable
as $$
  select
    coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;

comment on function auth.uid() is 'Deprecated. Use auth.jwt() -> ''sub'' instead.';
comment on function auth.role() is 'Deprecated. Use auth.jwt() -> ''role'' instead.';
comment on function auth.email() is 'Deprecated. Use auth.jwt() -> ''email'' instead.';

ALTER FUNCTION auth.uid() OWNER TO supabase_auth_admin;
ALTER FUNCTION auth.role() OWNER TO supabase_auth_admin;
ALTER FUNCTION auth.email() OWNER TO supabase_auth_admin;
ALTER FUNCTION auth.jwt() OWNER TO supabase_auth_admin;
-- Explicit grants give every function a non-default ACL, so a re-grant or revoke would show.
GRANT EXECUTE ON FUNCTION auth.uid(), auth.role(), auth.email(), auth.jwt()
    TO anon, authenticated, service_role;

-- Supabase grants every new table in public to the API roles; our migrations must undo it.
ALTER DEFAULT PRIVILEGES FOR ROLE {APP_ROLE} IN SCHEMA public
    GRANT ALL ON TABLES TO anon, authenticated, service_role;
"""


@pytest.fixture
def supabase_db(postgres: PostgresServer) -> str:
    """A fresh database shaped like a Supabase project, before any Zyron migration."""
    database = postgres.create_database()
    postgres.execute(SUPABASE_ROLES, database=database)
    postgres.execute(SUPABASE_AUTH, database=database)
    return database


def migrate(postgres: PostgresServer, database: str, *steps: str) -> None:
    """Migrate as the non-superuser app role, as a deployment would."""
    asyncio.run(migrate_url(sqlalchemy_url(postgres.dsn(database, user=APP_ROLE)), *steps))


async def _auth_state(dsn: str) -> dict[str, Any]:
    """Everything about schema auth our migrations must not change, read as the superuser."""
    conn = await asyncpg.connect(dsn)
    try:
        functions = await conn.fetch(
            "SELECT p.proname::text, pg_get_functiondef(p.oid), pg_get_userbyid(p.proowner)::text, "
            "obj_description(p.oid, 'pg_proc'), p.proacl::text "
            "FROM pg_proc p WHERE p.pronamespace = 'auth'::regnamespace ORDER BY 1"
        )
        schema = await conn.fetchrow(
            "SELECT pg_get_userbyid(nspowner)::text, nspacl::text FROM pg_namespace "
            "WHERE nspname = 'auth'"
        )
        relations = await conn.fetch(
            "SELECT relname::text, relkind::text, pg_get_userbyid(relowner)::text, relacl::text, "
            "relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relnamespace = 'auth'::regnamespace ORDER BY 1"
        )
        columns = await conn.fetch(
            "SELECT column_name::text, data_type::text, character_maximum_length "
            "FROM information_schema.columns WHERE table_schema = 'auth' "
            "AND table_name = 'users' ORDER BY ordinal_position"
        )
        users = await conn.fetch("SELECT row_to_json(u)::text FROM auth.users u ORDER BY id")
        policies = await conn.fetchval("SELECT count(*) FROM pg_policies WHERE schemaname = 'auth'")
        return {
            "functions": [tuple(r) for r in functions],
            "schema": tuple(schema),
            "relations": [tuple(r) for r in relations],
            "columns": [tuple(r) for r in columns],
            "users": [r[0] for r in users],
            "policies": policies,
        }
    finally:
        await conn.close()


def auth_state(postgres: PostgresServer, database: str) -> dict[str, Any]:
    """Snapshot schema auth: functions (definition, owner, comment, ACL), auth.users, grants."""
    return asyncio.run(_auth_state(postgres.dsn(database)))


def _seed_auth_users(postgres: PostgresServer, database: str) -> tuple[uuid.UUID, uuid.UUID]:
    a, b = uuid.uuid4(), uuid.uuid4()
    postgres.execute(
        "INSERT INTO auth.users (id, email, raw_user_meta_data, created_at) VALUES "
        f"('{a}', 'a-{a.hex[:8]}@example.com', '{{\"name\": \"A\"}}', now()), "
        f"('{b}', 'b-{b.hex[:8]}@example.com', '{{\"name\": \"B\"}}', now())",
        database=database,
    )
    return a, b


def test_the_fixture_is_shaped_like_supabase(postgres: PostgresServer, supabase_db: str) -> None:
    """The starting point has Supabase's functions, comment, owner and default privileges."""
    state = auth_state(postgres, supabase_db)
    functions = {row[0]: row for row in state["functions"]}
    assert set(functions) == {"uid", "role", "email", "jwt"}
    assert all(row[2] == "supabase_auth_admin" for row in functions.values())
    assert functions["uid"][3] == "Deprecated. Use auth.jwt() -> 'sub' instead."
    assert "request.jwt.claim.sub" in functions["uid"][1]
    assert state["schema"][0] == "supabase_auth_admin"

    async def default_acl() -> str:
        conn = await asyncpg.connect(postgres.dsn(supabase_db))
        try:
            return str(
                await conn.fetchval(
                    "SELECT defaclacl::text FROM pg_default_acl "
                    "WHERE defaclrole = $1::regrole AND defaclnamespace = 'public'::regnamespace",
                    APP_ROLE,
                )
            )
        finally:
            await conn.close()

    # Without this, "anon has nothing despite the default privileges" would prove nothing.
    assert "anon=arwdDxt" in asyncio.run(default_acl())


def test_migrations_leave_supabase_auth_untouched(
    postgres: PostgresServer, supabase_db: str
) -> None:
    """Migrating to head succeeds and schema auth is byte-for-byte what it was."""
    _seed_auth_users(postgres, supabase_db)
    before = auth_state(postgres, supabase_db)
    migrate(postgres, supabase_db, "head")
    after = auth_state(postgres, supabase_db)

    async def migrated() -> tuple[str, int]:
        conn = await asyncpg.connect(postgres.dsn(supabase_db))
        try:
            version = await conn.fetchval("SELECT version_num FROM alembic_version")
            forced = await conn.fetchval(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                "AND relrowsecurity AND relforcerowsecurity AND relname = ANY($1::text[])",
                list(TABLES),
            )
            return str(version), int(forced)
        finally:
            await conn.close()

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert asyncio.run(migrated()) == (head, len(TABLES))
    assert after == before
    assert len(after["users"]) == 2


async def _seed_public(dsn: str, a: uuid.UUID, b: uuid.UUID) -> dict[uuid.UUID, uuid.UUID]:
    conn = await asyncpg.connect(dsn)
    sessions: dict[uuid.UUID, uuid.UUID] = {}
    try:
        for user_id in (a, b):
            sessions[user_id] = uuid.uuid4()
            await conn.execute(
                "INSERT INTO users (id, email, created_at) VALUES ($1, $2, now())",
                user_id,
                f"{user_id.hex[:10]}@example.com",
            )
            await conn.execute(
                "INSERT INTO chat_sessions (id, user_id, title, created_at, updated_at) "
                "VALUES ($1, $2, 'mine', now(), now())",
                sessions[user_id],
                user_id,
            )
    finally:
        await conn.close()
    return sessions


async def _as(dsn: str, role: str, claims: str | None, sql: str, *args: Any) -> set[Any] | str:
    """Run a query as the app does (role and claims local to a transaction); rows or refusal."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
                role,
                claims or "",
            )
            try:
                if sql.lstrip().upper().startswith("SELECT"):
                    return {row[0] for row in await conn.fetch(sql, *args)}
                return str(await conn.execute(sql, *args))
            except asyncpg.exceptions.InsufficientPrivilegeError as exc:
                return "42501 policy" if "row-level security" in str(exc) else "42501 privilege"
    finally:
        await conn.close()


def test_isolation_holds_on_supabase(postgres: PostgresServer, supabase_db: str) -> None:
    """With Supabase's own auth.uid(), A sees only A's session and cannot write one for B."""
    a, b = _seed_auth_users(postgres, supabase_db)
    migrate(postgres, supabase_db, "head")
    sessions = asyncio.run(_seed_public(postgres.dsn(supabase_db), a, b))
    app_dsn = postgres.dsn(supabase_db, user=APP_ROLE)
    claims = json.dumps({"sub": str(a), "role": "authenticated"})

    async def scenario() -> dict[str, set[Any] | str]:
        return {
            "sessions": await _as(app_dsn, "authenticated", claims, "SELECT id FROM chat_sessions"),
            "b by id": await _as(
                app_dsn,
                "authenticated",
                claims,
                "SELECT id FROM chat_sessions WHERE id = $1",
                sessions[b],
            ),
            "users": await _as(app_dsn, "authenticated", claims, "SELECT id FROM users"),
            "session for B": await _as(
                app_dsn,
                "authenticated",
                claims,
                "INSERT INTO chat_sessions (id, user_id, title, created_at, updated_at) "
                "VALUES ($1, $2, 'planted', now(), now())",
                uuid.uuid4(),
                b,
            ),
            "delete B's": await _as(
                app_dsn,
                "authenticated",
                claims,
                "DELETE FROM chat_sessions WHERE id = $1",
                sessions[b],
            ),
            "refresh_tokens": await _as(
                app_dsn, "authenticated", claims, "SELECT id FROM refresh_tokens"
            ),
        }

    assert asyncio.run(scenario()) == {
        "sessions": {sessions[a]},
        "b by id": set(),
        "users": {a},
        "session for B": "42501 policy",
        "delete B's": "DELETE 0",
        "refresh_tokens": "42501 privilege",
    }


def test_anon_has_no_privilege_despite_default_privileges(
    postgres: PostgresServer, supabase_db: str
) -> None:
    """Supabase's default ALL grant to anon is revoked on every table the migrations create."""
    migrate(postgres, supabase_db, "head")

    async def granted() -> set[tuple[str, str]]:
        conn = await asyncpg.connect(postgres.dsn(supabase_db))
        try:
            rows = await conn.fetch(
                "SELECT c.relname::text, p.privilege FROM pg_class c "
                "CROSS JOIN unnest($1::text[]) AS p(privilege) "
                "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'S') "
                "AND has_table_privilege('anon', c.oid, p.privilege)",
                list(PRIVILEGES),
            )
            return {(r[0], r[1]) for r in rows}
        finally:
            await conn.close()

    async def queried() -> dict[str, set[Any] | str]:
        # The app role is a member of anon here, as Supabase's login roles are.
        app_dsn = postgres.dsn(supabase_db, user=APP_ROLE)
        return {
            table: await _as(app_dsn, "anon", None, f"SELECT * FROM {table}")
            for table in (*TABLES, "alembic_version")
        }

    # anon's only privileges are the columns a share link serves (test_shares checks them).
    assert asyncio.run(granted()) == set()
    assert asyncio.run(queried()) == dict.fromkeys((*TABLES, "alembic_version"), "42501 privilege")


def test_downgrade_leaves_supabase_auth_intact(postgres: PostgresServer, supabase_db: str) -> None:
    """head → base drops our tables only; schema auth, its functions and auth.users remain."""
    _seed_auth_users(postgres, supabase_db)
    before = auth_state(postgres, supabase_db)
    migrate(postgres, supabase_db, "head", "base")
    after = auth_state(postgres, supabase_db)

    async def public_tables() -> set[str]:
        conn = await asyncpg.connect(postgres.dsn(supabase_db))
        try:
            rows = await conn.fetch(
                "SELECT t FROM unnest($1::text[]) AS t "
                "WHERE to_regclass('public.' || t) IS NOT NULL",
                list(TABLES),
            )
            return {r[0] for r in rows}
        finally:
            await conn.close()

    assert asyncio.run(public_tables()) == set()
    assert after == before
    # And head again on the same project works.
    migrate(postgres, supabase_db, "head")
    assert asyncio.run(public_tables()) == set(TABLES)
    assert auth_state(postgres, supabase_db) == before
