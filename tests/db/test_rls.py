"""Row level security on Postgres, tested in the database itself, in the style of pgTAP."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import select, text

from tests.pg import APP_ROLE, PostgresServer, migrate, sqlalchemy_url
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.migrate import alembic_config
from zyron.db.models import ChatSession, Message, RefreshToken, User
from zyron.db.unit_of_work import DbRole, unit_of_work
from zyron.sessions import repository

TABLES = ("users", "chat_sessions", "messages", "refresh_tokens")
LATER_TABLES = (
    "idempotency_keys",
    "usage_daily",
    "files",
    "message_files",
    "shares",
    "share_files",
    "deleted_accounts",
    "limit_overrides",
)
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")

# Exactly what zyron.db.unit_of_work sends: both settings local to the transaction.
SET_IDENTITY = "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)"
SET_ROLE_ONLY = "SELECT set_config('role', $1, true)"

INSERT_SESSION = (
    "INSERT INTO chat_sessions (id, user_id, title, created_at, updated_at) "
    "VALUES ($1, $2, 'planted', now(), now())"
)
INSERT_MESSAGE = (
    "INSERT INTO messages (id, session_id, user_id, role, content, status, created_at) "
    "VALUES ($1, $2, $3, 'user', 'planted', 'complete', now())"
)


@dataclass(frozen=True)
class Account:
    """One seeded user and everything they own."""

    user_id: uuid.UUID
    email: str
    session_id: uuid.UUID
    message_ids: tuple[uuid.UUID, uuid.UUID]
    token_hash: str


@dataclass(frozen=True)
class World:
    """The migrated database with users A and B; DSNs for the superuser and the app role."""

    admin_dsn: str
    app_dsn: str
    a: Account
    b: Account


def claims_of(user_id: uuid.UUID) -> str:
    """The verified claims of a signed-in user, as JSON, the way the app passes them."""
    return json.dumps({"sub": str(user_id), "role": "authenticated"}, separators=(",", ":"))


def new_account() -> Account:
    """Fresh ids for a user, their session, two messages and a refresh token."""
    user_id = uuid.uuid4()
    return Account(
        user_id=user_id,
        email=f"{user_id.hex[:10]}@example.com",
        session_id=uuid.uuid4(),
        message_ids=(uuid.uuid4(), uuid.uuid4()),
        token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
    )


async def _seed(admin_dsn: str, accounts: tuple[Account, ...]) -> None:
    # As the superuser: seeding must not depend on the policies under test.
    conn = await asyncpg.connect(admin_dsn)
    try:
        async with conn.transaction():
            for acc in accounts:
                await conn.execute(
                    "INSERT INTO users (id, email, created_at) VALUES ($1, $2, now())",
                    acc.user_id,
                    acc.email,
                )
                await conn.execute(
                    "INSERT INTO chat_sessions (id, user_id, title, created_at, updated_at) "
                    "VALUES ($1, $2, 'original', now(), now())",
                    acc.session_id,
                    acc.user_id,
                )
                for message_id in acc.message_ids:
                    await conn.execute(
                        "INSERT INTO messages "
                        "(id, session_id, user_id, role, content, status, created_at) "
                        "VALUES ($1, $2, $3, 'user', 'original', 'complete', now())",
                        message_id,
                        acc.session_id,
                        acc.user_id,
                    )
                await conn.execute(
                    "INSERT INTO refresh_tokens "
                    "(id, user_id, token_hash, family, expires_at, created_at) "
                    "VALUES ($1, $2, $3, $4, now() + interval '1 day', now())",
                    uuid.uuid4(),
                    acc.user_id,
                    acc.token_hash,
                    uuid.uuid4(),
                )
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def world(postgres: PostgresServer) -> World:
    """A database migrated to head by the app role, seeded with users A and B."""
    database = postgres.create_database()
    asyncio.run(migrate(sqlalchemy_url(postgres.dsn(database, user=APP_ROLE)), "head"))
    a, b = new_account(), new_account()
    asyncio.run(_seed(postgres.dsn(database), (a, b)))
    return World(
        admin_dsn=postgres.dsn(database),
        app_dsn=postgres.dsn(database, user=APP_ROLE),
        a=a,
        b=b,
    )


@asynccontextmanager
async def acting_as(
    dsn: str, role: str | None = None, claims: str | None = None, *, commit: bool = False
) -> AsyncIterator[Any]:
    """Open a transaction that switches role (and claims) first, as the app does; roll back."""
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            if role is not None and claims is not None:
                await conn.execute(SET_IDENTITY, role, claims)
            elif role is not None:
                await conn.execute(SET_ROLE_ONLY, role)
            yield conn
        except BaseException:
            await tx.rollback()
            raise
        if commit:
            await tx.commit()
        else:
            await tx.rollback()
    finally:
        await conn.close()


def refusal(exc: asyncpg.PostgresError) -> str:
    """Name what refused a statement: a policy, or a missing privilege (both SQLSTATE 42501)."""
    if not isinstance(exc, asyncpg.exceptions.InsufficientPrivilegeError):
        return f"{exc.sqlstate} {exc}"
    if "row-level security" in str(exc):
        return "42501 policy"
    if "permission denied for table" in str(exc):
        return "42501 privilege"
    return f"42501 {exc}"


async def outcome(
    dsn: str, sql: str, *args: Any, role: str | None = None, claims: str | None = None
) -> str:
    """Run one statement in its own rolled-back transaction; return its status or refusal."""
    async with acting_as(dsn, role, claims) as conn:
        try:
            return str(await conn.execute(sql, *args))
        except asyncpg.PostgresError as exc:
            return refusal(exc)


async def read(
    dsn: str, sql: str, *args: Any, role: str | None = None, claims: str | None = None
) -> set[Any] | str:
    """Return the first column of every row a query yields, or the refusal it met."""
    async with acting_as(dsn, role, claims) as conn:
        try:
            return {row[0] for row in await conn.fetch(sql, *args)}
        except asyncpg.PostgresError as exc:
            return refusal(exc)


async def snapshot(admin_dsn: str, user_id: uuid.UUID) -> dict[str, list[str]]:
    """Every row a user owns, in every table, read as the superuser."""
    queries = {
        "users": "SELECT row_to_json(t)::text FROM users t WHERE id = $1",
        "chat_sessions": "SELECT row_to_json(t)::text FROM chat_sessions t WHERE user_id = $1",
        "messages": "SELECT row_to_json(t)::text FROM messages t WHERE user_id = $1",
        "refresh_tokens": "SELECT row_to_json(t)::text FROM refresh_tokens t WHERE user_id = $1",
    }
    conn = await asyncpg.connect(admin_dsn)
    try:
        return {
            table: sorted(str(row[0]) for row in await conn.fetch(sql, user_id))
            for table, sql in queries.items()
        }
    finally:
        await conn.close()


def test_a_sees_only_own_rows_in_every_table(world: World) -> None:
    """With A's claims, B's rows are invisible in every table and A's own rows are there."""
    a, b = world.a, world.b

    async def scenario() -> dict[str, set[Any] | str]:
        claims = claims_of(a.user_id)
        seen: dict[str, set[Any] | str] = {}
        for table in TABLES:
            seen[table] = await read(
                world.app_dsn, f"SELECT id FROM {table}", role="authenticated", claims=claims
            )
        # Asking for B's rows by id must not get around the policies either.
        seen["b_session_by_id"] = await read(
            world.app_dsn,
            "SELECT id FROM chat_sessions WHERE id = $1",
            b.session_id,
            role="authenticated",
            claims=claims,
        )
        seen["b_messages_by_session"] = await read(
            world.app_dsn,
            "SELECT id FROM messages WHERE session_id = $1",
            b.session_id,
            role="authenticated",
            claims=claims,
        )
        return seen

    assert asyncio.run(scenario()) == {
        "users": {a.user_id},
        "chat_sessions": {a.session_id},
        "messages": set(a.message_ids),
        "refresh_tokens": "42501 privilege",
        "b_session_by_id": set(),
        "b_messages_by_session": set(),
    }


def test_rows_cannot_be_written_for_another_user(world: World) -> None:
    """A cannot insert a user, session or message for B, nor a message into B's session."""
    a, b = world.a, world.b

    async def scenario() -> dict[str, str]:
        claims = claims_of(a.user_id)

        async def attempt(sql: str, *args: Any) -> str:
            return await outcome(world.app_dsn, sql, *args, role="authenticated", claims=claims)

        return {
            "user row for someone else": await attempt(
                "INSERT INTO users (id, email, created_at) VALUES ($1, $2, now())",
                uuid.uuid4(),
                f"{uuid.uuid4().hex[:10]}@example.com",
            ),
            "session for B": await attempt(INSERT_SESSION, uuid.uuid4(), b.user_id),
            "message for B in B's session": await attempt(
                INSERT_MESSAGE, uuid.uuid4(), b.session_id, b.user_id
            ),
            "message for B in A's session": await attempt(
                INSERT_MESSAGE, uuid.uuid4(), a.session_id, b.user_id
            ),
            "message as A in B's session": await attempt(
                INSERT_MESSAGE, uuid.uuid4(), b.session_id, a.user_id
            ),
            "refresh token for A": await attempt(
                "INSERT INTO refresh_tokens "
                "(id, user_id, token_hash, family, expires_at, created_at) "
                "VALUES ($1, $2, 'x', $3, now(), now())",
                uuid.uuid4(),
                a.user_id,
                uuid.uuid4(),
            ),
        }

    assert asyncio.run(scenario()) == {
        "user row for someone else": "42501 policy",
        "session for B": "42501 policy",
        "message for B in B's session": "42501 policy",
        "message for B in A's session": "42501 policy",
        "message as A in B's session": "42501 policy",
        "refresh token for A": "42501 privilege",
    }


def test_own_rows_can_be_written(world: World) -> None:
    """A writes its own session and message: the refusals above come from policies, not grants."""
    a = world.a

    async def scenario() -> list[str]:
        async with acting_as(world.app_dsn, "authenticated", claims_of(a.user_id)) as conn:
            session_id = uuid.uuid4()
            return [
                str(await conn.execute(INSERT_SESSION, session_id, a.user_id)),
                str(await conn.execute(INSERT_MESSAGE, uuid.uuid4(), session_id, a.user_id)),
                str(await conn.execute(INSERT_MESSAGE, uuid.uuid4(), a.session_id, a.user_id)),
                str(
                    await conn.execute(
                        "UPDATE chat_sessions SET title = 'renamed' WHERE id = $1", a.session_id
                    )
                ),
                str(
                    await conn.execute(
                        "UPDATE messages SET content = 'edited' WHERE id = $1", a.message_ids[0]
                    )
                ),
                str(await conn.execute("DELETE FROM messages WHERE id = $1", a.message_ids[1])),
            ]  # rolled back: the shared seed stays as it is

    assert asyncio.run(scenario()) == [
        "INSERT 0 1",
        "INSERT 0 1",
        "INSERT 0 1",
        "UPDATE 1",
        "UPDATE 1",
        "DELETE 1",
    ]


def test_updating_or_deleting_b_rows_touches_nothing(world: World) -> None:
    """UPDATE and DELETE of B's rows by A affect 0 rows, even committed; B's data is unchanged."""
    a, b = world.a, world.b

    async def scenario() -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
        before = await snapshot(world.admin_dsn, b.user_id)
        # Committed on purpose: were any row touched, the superuser would see the change.
        async with acting_as(
            world.app_dsn, "authenticated", claims_of(a.user_id), commit=True
        ) as conn:
            statuses = [
                str(
                    await conn.execute(
                        "UPDATE chat_sessions SET title = 'hijacked' WHERE user_id = $1", b.user_id
                    )
                ),
                str(
                    await conn.execute(
                        "UPDATE messages SET content = 'hijacked' WHERE session_id = $1",
                        b.session_id,
                    )
                ),
                # Unfiltered: only A's own session is in reach (a no-op change, so safe to commit).
                str(await conn.execute("UPDATE chat_sessions SET title = title")),
                str(await conn.execute("DELETE FROM messages WHERE user_id = $1", b.user_id)),
                str(await conn.execute("DELETE FROM chat_sessions WHERE id = $1", b.session_id)),
            ]
        claims = claims_of(a.user_id)
        # users is not updatable by authenticated, and refresh_tokens not writable at all; a
        # user may delete their own row (DELETE /auth/me), but never B's.
        refused = {
            "update users": await outcome(
                world.app_dsn,
                "UPDATE users SET display_name = 'x' WHERE id = $1",
                b.user_id,
                role="authenticated",
                claims=claims,
            ),
            "delete users": await outcome(
                world.app_dsn,
                "DELETE FROM users WHERE id = $1",
                b.user_id,
                role="authenticated",
                claims=claims,
            ),
            "update refresh_tokens": await outcome(
                world.app_dsn,
                "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1",
                b.user_id,
                role="authenticated",
                claims=claims,
            ),
            "delete refresh_tokens": await outcome(
                world.app_dsn,
                "DELETE FROM refresh_tokens WHERE user_id = $1",
                b.user_id,
                role="authenticated",
                claims=claims,
            ),
        }
        after = await snapshot(world.admin_dsn, b.user_id)
        assert all(before.values()), "B's seed rows must exist for this test to mean anything"
        return statuses, refused, {"changed": [t for t in before if before[t] != after[t]]}

    statuses, refused, changed = asyncio.run(scenario())
    assert statuses == ["UPDATE 0", "UPDATE 0", "UPDATE 1", "DELETE 0", "DELETE 0"]
    assert refused == {
        "update users": "42501 privilege",
        "delete users": "DELETE 0",
        "update refresh_tokens": "42501 privilege",
        "delete refresh_tokens": "42501 privilege",
    }
    assert changed == {"changed": []}


def test_moving_own_rows_to_b_is_refused(world: World) -> None:
    """A cannot hand its session or message to B, nor move its message into B's session."""
    a, b = world.a, world.b

    async def scenario() -> dict[str, str]:
        claims = claims_of(a.user_id)

        async def attempt(sql: str, *args: Any) -> str:
            return await outcome(world.app_dsn, sql, *args, role="authenticated", claims=claims)

        return {
            "session to B": await attempt(
                "UPDATE chat_sessions SET user_id = $1 WHERE id = $2", b.user_id, a.session_id
            ),
            "message to B": await attempt(
                "UPDATE messages SET user_id = $1 WHERE id = $2", b.user_id, a.message_ids[0]
            ),
            "message into B's session": await attempt(
                "UPDATE messages SET session_id = $1 WHERE id = $2", b.session_id, a.message_ids[0]
            ),
        }

    assert asyncio.run(scenario()) == {
        "session to B": "42501 policy",
        "message to B": "42501 policy",
        "message into B's session": "42501 policy",
    }


@pytest.mark.parametrize(
    "claims",
    [None, '{"role":"authenticated"}', ""],
    ids=["no-claims-setting", "claims-without-sub", "empty-claims"],
)
def test_authenticated_without_a_subject_sees_nothing(world: World, claims: str | None) -> None:
    """As authenticated with no user id in the claims, no row of any table is visible."""

    async def scenario() -> dict[str, set[Any] | str]:
        return {
            table: await read(
                world.app_dsn, f"SELECT id FROM {table}", role="authenticated", claims=claims
            )
            for table in TABLES
        }

    assert asyncio.run(scenario()) == {
        "users": set(),
        "chat_sessions": set(),
        "messages": set(),
        "refresh_tokens": "42501 privilege",
    }


def test_anon_is_refused_on_every_table(world: World) -> None:
    """The anon role has no privilege on any table, alembic_version included."""

    async def scenario() -> dict[str, set[Any] | str]:
        # As the superuser switching to anon: the migrations do not make the app role a member
        # of anon (it never acts as anon), and privileges are checked for anon either way.
        return {
            table: await read(world.admin_dsn, f"SELECT * FROM {table}", role="anon")
            for table in (*TABLES, "alembic_version")
        }

    assert asyncio.run(scenario()) == dict.fromkeys((*TABLES, "alembic_version"), "42501 privilege")


def test_role_and_claims_end_with_the_transaction(world: World) -> None:
    """After COMMIT or ROLLBACK the same connection is the app role again, with no claims."""
    a = world.a

    async def scenario() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(world.app_dsn)
        probe = (
            "SELECT current_user::text, current_setting('request.jwt.claims', true), "
            "(SELECT count(*) FROM chat_sessions)"
        )
        seen: list[tuple[Any, ...]] = []
        try:
            for end in ("COMMIT", "ROLLBACK"):
                await conn.execute("BEGIN")
                await conn.execute(SET_IDENTITY, "authenticated", claims_of(a.user_id))
                seen.append(tuple(await conn.fetchrow(probe)))
                await conn.execute(end)
                seen.append(tuple(await conn.fetchrow(probe)))
        finally:
            await conn.close()
        return seen

    inside = ("authenticated", claims_of(a.user_id), 1)
    seen = asyncio.run(scenario())
    assert seen[0] == inside
    assert seen[2] == inside
    for after in (seen[1], seen[3]):
        # The custom setting exists once set, so it reads as '' rather than NULL afterwards.
        assert after[0] == APP_ROLE
        assert after[1] in (None, "")
        assert after[2] == 0  # the owner is under forced RLS and has no policy


def test_the_unit_of_work_leaves_its_pooled_connection_clean(world: World) -> None:
    """After the app's unit of work, the next checkout of that connection is the app role."""
    a = world.a
    probe = text(
        "SELECT pg_backend_pid(), current_user::text, current_setting('request.jwt.claims', true)"
    )

    async def scenario() -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        engine = create_engine(sqlalchemy_url(world.app_dsn))
        try:
            async with unit_of_work(
                create_sessionmaker(engine),
                role="authenticated",
                claims={"sub": str(a.user_id), "role": "authenticated"},
            ) as db:
                inside = tuple((await db.execute(probe)).one())
            # The pool has made one connection only, so this checkout is the same one.
            async with engine.connect() as conn:
                after = tuple((await conn.execute(probe)).one())
        finally:
            await engine.dispose()
        return inside, after

    inside, after = asyncio.run(scenario())
    assert inside[1:] == ("authenticated", claims_of(a.user_id))
    assert after[0] == inside[0], "the check must run on the connection the unit of work used"
    assert after[1] == APP_ROLE
    assert after[2] in (None, "")


async def _visible_owners(
    url: str,
    role: DbRole | None = None,
    claims: dict[str, str] | None = None,
    *,
    with_tokens: bool = False,
) -> dict[str, set[uuid.UUID]]:
    """Run unfiltered ORM queries in the app's unit of work; return whose rows came back."""
    engine = create_engine(url)
    try:
        async with unit_of_work(create_sessionmaker(engine), role=role, claims=claims) as db:
            # No .where(): the user filter the repositories add is left out on purpose.
            sessions = (await db.execute(select(ChatSession))).scalars().all()
            messages = (await db.execute(select(Message))).scalars().all()
            users = (await db.execute(select(User))).scalars().all()
            tokens = (await db.execute(select(RefreshToken))).scalars().all() if with_tokens else []
    finally:
        await engine.dispose()
    seen = {
        "chat_sessions": {row.user_id for row in sessions},
        "messages": {row.user_id for row in messages},
        "users": {row.id for row in users},
    }
    if with_tokens:
        seen["refresh_tokens"] = {row.user_id for row in tokens}
    return seen


def test_rls_alone_isolates_an_unfiltered_application_query(world: World) -> None:
    """An ORM query with its user filter removed, run for A, returns only A's rows."""
    a, b = world.a, world.b
    url = sqlalchemy_url(world.app_dsn)
    claims = {"sub": str(a.user_id), "role": "authenticated"}
    assert asyncio.run(_visible_owners(url, "authenticated", claims)) == {
        "chat_sessions": {a.user_id},
        "messages": {a.user_id},
        "users": {a.user_id},
    }

    async def repository_asks_for_b() -> tuple[ChatSession | None, list[ChatSession]]:
        # A repository call with B's id by mistake, inside A's unit of work.
        engine = create_engine(url)
        try:
            async with unit_of_work(
                create_sessionmaker(engine), role="authenticated", claims=claims
            ) as db:
                owned = await repository.owned_session(db, b.user_id, b.session_id)
                listed = list(await repository.list_sessions(db, b.user_id, 50))
        finally:
            await engine.dispose()
        return owned, listed

    assert asyncio.run(repository_asks_for_b()) == (None, [])


def test_forced_rls_hides_everything_from_the_owner_role(world: World) -> None:
    """The same unfiltered query as the table owner without a role switch returns nothing."""
    a, b = world.a, world.b
    owner = asyncio.run(_visible_owners(sqlalchemy_url(world.app_dsn), with_tokens=True))
    superuser = asyncio.run(_visible_owners(sqlalchemy_url(world.admin_dsn), with_tokens=True))
    # The rows are there: a superuser bypasses RLS and sees both users'.
    both = {a.user_id, b.user_id}
    assert superuser == dict.fromkeys(TABLES, both)
    # No policy is written for the owner, so forced RLS must leave it nothing, in any table.
    assert owner == {table: set() for table in TABLES}


def test_service_role_reads_only_the_auth_tables(world: World) -> None:
    """service_role finds users by email and tokens by hash, but no sessions or messages."""
    b = world.b
    # What the unit of work sends for service_role when it is given no claims.
    claims = '{"role":"service_role"}'

    async def scenario() -> dict[str, set[Any] | str]:
        async def query(sql: str, *args: Any) -> set[Any] | str:
            return await read(world.app_dsn, sql, *args, role="service_role", claims=claims)

        return {
            "user by email": await query("SELECT id FROM users WHERE email = $1", b.email),
            "token by hash": await query(
                "SELECT user_id FROM refresh_tokens WHERE token_hash = $1", b.token_hash
            ),
            "chat_sessions": await query("SELECT id FROM chat_sessions"),
            # Recovery closes replies whose process died: service_role sees only rows still
            # streaming (none here), and never their text.
            "messages": await query("SELECT id FROM messages"),
            "message text": await query("SELECT content FROM messages"),
        }

    assert asyncio.run(scenario()) == {
        "user by email": {b.user_id},
        "token by hash": {b.user_id},
        "chat_sessions": "42501 privilege",
        "messages": set(),
        "message text": "42501 privilege",
    }


async def _catalog(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


def test_policies_are_per_command_and_use_a_subselect_of_auth_uid(world: World) -> None:
    """Each policy targets one command and role; every user check is `(SELECT auth.uid())`."""
    rows = asyncio.run(
        _catalog(
            world.admin_dsn,
            "SELECT tablename::text, cmd::text, roles::text[], qual, with_check "
            "FROM pg_policies WHERE schemaname = 'public'",
        )
    )
    shape = {(r["tablename"], r["cmd"], tuple(r["roles"])) for r in rows}
    own = ("SELECT", "INSERT", "UPDATE", "DELETE")
    assert shape == {
        ("users", "SELECT", ("authenticated",)),
        ("users", "INSERT", ("authenticated",)),
        ("users", "DELETE", ("authenticated",)),
        ("users", "ALL", ("service_role",)),
        *{("chat_sessions", cmd, ("authenticated",)) for cmd in own},
        *{("messages", cmd, ("authenticated",)) for cmd in own},
        ("messages", "SELECT", ("service_role",)),
        ("messages", "UPDATE", ("service_role",)),
        # The search index's fill, as the tables' owner, only with its setting on (0014).
        ("messages", "ALL", (APP_ROLE,)),
        ("chat_sessions", "ALL", (APP_ROLE,)),
        ("refresh_tokens", "ALL", ("service_role",)),
        ("idempotency_keys", "SELECT", ("authenticated",)),
        ("idempotency_keys", "INSERT", ("authenticated",)),
        *{("usage_daily", cmd, ("authenticated",)) for cmd in own[:3]},
        # Files are never updated; a link is made or removed, never changed.
        *{("files", cmd, ("authenticated",)) for cmd in ("SELECT", "INSERT", "DELETE")},
        *{("message_files", cmd, ("authenticated",)) for cmd in ("SELECT", "INSERT", "DELETE")},
        # Shares are never edited: made, read and revoked. anon reads one by its token.
        *{("shares", cmd, ("authenticated",)) for cmd in ("SELECT", "INSERT", "DELETE")},
        *{("share_files", cmd, ("authenticated",)) for cmd in ("SELECT", "INSERT", "DELETE")},
        ("shares", "SELECT", ("anon",)),
        ("share_files", "SELECT", ("anon",)),
        ("files", "SELECT", ("anon",)),
        *{("deleted_accounts", cmd, ("authenticated",)) for cmd in own[:3]},
        # A user reads the overrides they are held to; admins (0016) read and set them, read
        # every user and their usage, and change a user's role and disabled mark.
        ("limit_overrides", "SELECT", ("authenticated",)),
        *{("limit_overrides", cmd, ("zyron_admin",)) for cmd in own},
        ("users", "SELECT", ("zyron_admin",)),
        ("users", "UPDATE", ("zyron_admin",)),
        ("usage_daily", "SELECT", ("zyron_admin",)),
    }
    assert len(rows) == len(shape)  # no duplicate policy that could widen access
    for r in rows:
        if r["roles"] == ["zyron_admin"]:
            # Only in a transaction that really switched role, as service_role's.
            for column in ("qual", "with_check"):
                if r[column] is not None:
                    assert r[column] == "(CURRENT_USER = 'zyron_admin'::name)", r["tablename"]
            continue
        if r["roles"] == ["anon"]:
            # Keyed by the token held (shares), or through the shares anon can see.
            assert "zyron.share_token_hash" in r["qual"] or "share" in r["qual"], r["tablename"]
            continue
        if r["roles"] == [APP_ROLE]:
            # Inert but for the connection that turns the setting on, for as long as it does.
            for column in ("qual", "with_check"):
                assert "current_setting('zyron.maintenance'" in r[column], r["tablename"]
            continue
        if r["roles"] != ["authenticated"]:
            continue
        where = {"SELECT": ("qual",), "DELETE": ("qual",), "INSERT": ("with_check",)}.get(
            r["cmd"], ("qual", "with_check")
        )
        for column in where:
            # Deparsed as `( SELECT auth.uid() AS uid)`: evaluated once per statement.
            assert "SELECT auth.uid()" in (r[column] or ""), (r["tablename"], r["cmd"], column)
        if r["tablename"] == "messages" and r["cmd"] in ("INSERT", "UPDATE"):
            assert "chat_sessions" in r["with_check"], r["cmd"]
        if r["tablename"] == "message_files" and r["cmd"] == "INSERT":
            # Only the caller's own message and own file can be linked.
            assert "messages" in r["with_check"]
            assert "files" in r["with_check"]


def test_rls_is_enabled_and_forced_on_every_table(world: World) -> None:
    """relrowsecurity and relforcerowsecurity are set on all four tables."""
    rows = asyncio.run(
        _catalog(
            world.admin_dsn,
            "SELECT relname::text, relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relname = ANY($1::text[])",
            [*TABLES, *LATER_TABLES],
        )
    )
    assert {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in rows} == (
        dict.fromkeys((*TABLES, *LATER_TABLES), (True, True))
    )


def test_grants_are_minimal(world: World) -> None:
    """anon has nothing anywhere; authenticated and service_role only what the API needs."""
    rows = asyncio.run(
        _catalog(
            world.admin_dsn,
            "SELECT r.rolname::text AS role, c.relname::text AS tbl, p.privilege "
            "FROM pg_class c CROSS JOIN unnest($1::text[]) AS p(privilege) "
            "CROSS JOIN pg_roles r "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' "
            "AND r.rolname IN ('anon', 'authenticated', 'service_role', 'zyron_admin') "
            "AND has_table_privilege(r.oid, c.oid, p.privilege)",
            list(PRIVILEGES),
        )
    )
    granted: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        granted.setdefault((r["role"], r["tbl"]), set()).add(r["privilege"])
    crud = {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert granted == {
        ("authenticated", "users"): {"SELECT", "INSERT", "DELETE"},
        ("authenticated", "chat_sessions"): crud,
        ("authenticated", "messages"): crud,
        ("service_role", "users"): {"SELECT", "INSERT", "UPDATE"},
        ("service_role", "refresh_tokens"): {"SELECT", "INSERT", "UPDATE"},
        ("authenticated", "idempotency_keys"): {"SELECT", "INSERT"},
        ("authenticated", "files"): {"SELECT", "INSERT", "DELETE"},
        ("authenticated", "message_files"): {"SELECT", "INSERT", "DELETE"},
        ("authenticated", "usage_daily"): {"SELECT", "INSERT", "UPDATE"},
        ("authenticated", "shares"): {"SELECT", "INSERT", "DELETE"},
        ("authenticated", "share_files"): {"SELECT", "INSERT", "DELETE"},
        ("authenticated", "deleted_accounts"): {"SELECT", "INSERT", "UPDATE"},
        ("authenticated", "limit_overrides"): {"SELECT"},
        # users: granted by column (never password_hash), so no table privilege shows here.
        ("zyron_admin", "usage_daily"): {"SELECT"},
        ("zyron_admin", "limit_overrides"): crud,
    }
    # Spelled out as the brief's check, so a missing alembic_version table cannot hide it.
    anon_select = asyncio.run(
        _catalog(
            world.admin_dsn,
            "SELECT t, has_table_privilege('anon', t, 'SELECT') FROM unnest($1::text[]) AS t",
            [*TABLES, "alembic_version"],
        )
    )
    assert {r[0]: r[1] for r in anon_select} == dict.fromkeys((*TABLES, "alembic_version"), False)


def test_migrations_go_up_down_and_up_again_as_the_app_role(postgres: PostgresServer) -> None:
    """head → base → head as the non-superuser app role; base keeps the roles and schema auth."""
    database = postgres.create_database()
    url = sqlalchemy_url(postgres.dsn(database, user=APP_ROLE))
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()

    async def state() -> dict[str, Any]:
        conn = await asyncpg.connect(postgres.dsn(database))
        try:
            tables = await conn.fetch(
                "SELECT t FROM unnest($1::text[]) AS t "
                "WHERE to_regclass('public.' || t) IS NOT NULL",
                list(TABLES),
            )
            version = None
            if await conn.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL"):
                version = await conn.fetchval("SELECT max(version_num) FROM alembic_version")
            return {
                "tables": {r[0] for r in tables},
                "version": version,
                "forced": await conn.fetchval(
                    "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                    "AND relforcerowsecurity"
                ),
                "policies": await conn.fetchval(
                    "SELECT count(*) FROM pg_policies WHERE schemaname = 'public'"
                ),
                "roles": {
                    r[0]
                    for r in await conn.fetch(
                        "SELECT rolname::text FROM pg_roles "
                        "WHERE rolname IN ('anon', 'authenticated', 'service_role')"
                    )
                },
                "auth_functions": {
                    r[0]
                    for r in await conn.fetch(
                        "SELECT proname::text FROM pg_proc p JOIN pg_namespace n "
                        "ON n.oid = p.pronamespace WHERE n.nspname = 'auth'"
                    )
                },
            }
        finally:
            await conn.close()

    async def scenario() -> list[dict[str, Any]]:
        states = []
        for step in ("head", "base", "head"):
            await migrate(url, step)
            states.append(await state())
        return states

    up, down, again = asyncio.run(scenario())
    roles = {"anon", "authenticated", "service_role"}
    functions = {"uid", "role", "email", "jwt"}
    assert up == {
        "tables": set(TABLES),
        "version": head,
        "forced": 12,
        "policies": 48,
        "roles": roles,
        "auth_functions": functions,
    }
    assert down == {
        "tables": set(),
        "version": None,
        "forced": 0,
        "policies": 0,
        "roles": roles,
        "auth_functions": functions,
    }
    assert again == up
