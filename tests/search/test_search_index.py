"""The search index below the API: filled for rows older than it, kept exact by the triggers,
following SEARCH_CONFIG, and built by migrations that replicas may run at the same time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.pg import APP_ROLE, PostgresServer, sqlalchemy_url
from tests.support import as_user
from zyron.db.engine import create_engine
from zyron.db.migrate import alembic_config, upgrade
from zyron.search import reindex, repository
from zyron.search.query import parse

BEFORE_SEARCH = "0013"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A new empty database: (app URL, owner URL; the same on SQLite)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'zyron.db'}"
        return url, url
    postgres: PostgresServer = request.getfixturevalue("postgres")
    name = postgres.create_database()
    return (
        sqlalchemy_url(postgres.dsn(name, user=APP_ROLE)),
        sqlalchemy_url(postgres.dsn(name)),
    )


@asynccontextmanager
async def engine_for(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine, disposed of afterwards."""
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def found(engine: AsyncEngine, user_id: uuid.UUID, q: str) -> list[str]:
    """What the user's search for `q` returns: each hit's kind and snippet text."""

    async def run(db: AsyncSession) -> list[str]:
        hits = await repository.search(db, user_id, parse(q, 256), limit=50, after=None)
        return [
            f"{hit.kind}:{hit.marked.replace(repository.START, '').replace(repository.STOP, '')}"
            for hit in hits
        ]

    return await as_user(str(engine.url.render_as_string(hide_password=False)), user_id, run)


async def seed_rows(owner_url: str, user_id: uuid.UUID, session_id: uuid.UUID) -> None:
    """A user, a titled session and two messages, written as the tables' owner (superuser)."""
    async with engine_for(owner_url) as engine, engine.begin() as conn:
        uid, sid = (
            (user_id.hex, session_id.hex)
            if engine.dialect.name == "sqlite"
            else (user_id, session_id)
        )
        now = "2026-06-01 10:00:00.000000" if engine.dialect.name == "sqlite" else None
        stamp = ":now" if now else "now()"
        await conn.execute(
            text(f"INSERT INTO users (id, email, created_at) VALUES (:u, :e, {stamp})"),
            {"u": uid, "e": f"{user_id.hex[:8]}@example.com", "now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO chat_sessions "
                "(id, user_id, title, title_pending, created_at, updated_at) "
                f"VALUES (:s, :u, 'Volcano trip', false, {stamp}, {stamp})"
            ),
            {"s": sid, "u": uid, "now": now},
        )
        for role, content, status in (
            ("user", "Which volcanoes erupt often?", "complete"),
            ("assistant", "Stromboli erupts constantly.", "complete"),
            ("assistant", "streaming volcano draft", "streaming"),
        ):
            mid = uuid.uuid4()
            await conn.execute(
                text(
                    "INSERT INTO messages "
                    "(id, session_id, user_id, role, content, status, created_at) "
                    f"VALUES (:m, :s, :u, :r, :c, :st, {stamp})"
                ),
                {
                    "m": mid.hex if now else mid,
                    "s": sid,
                    "u": uid,
                    "r": role,
                    "c": content,
                    "st": status,
                    "now": now,
                },
            )


def test_rows_older_than_the_index_are_filled(database: tuple[str, str]) -> None:
    """Rows written before the search migrations are found after them; streaming ones not."""
    app_url, owner_url = database
    user_id, session_id = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> tuple[list[str], list[str], list[str], Any]:
        async with engine_for(app_url) as engine:
            await upgrade(engine, BEFORE_SEARCH)
            await seed_rows(owner_url, user_id, session_id)
            await upgrade(engine, "head")
            erupt = await found(engine, user_id, "erupting")
            draft = await found(engine, user_id, "draft")
            title = await found(engine, user_id, "volcano")
        state = None
        if engine.dialect.name == "postgresql":
            async with engine_for(owner_url) as owner, owner.connect() as conn:
                state = (
                    (
                        await conn.execute(
                            text(
                                "SELECT relname::text, relforcerowsecurity FROM pg_class "
                                "WHERE relname IN ('messages', 'chat_sessions') ORDER BY 1"
                            )
                        )
                    ).all(),
                    (
                        await conn.execute(
                            text(
                                "SELECT c.relname::text, i.indisvalid FROM pg_index i "
                                "JOIN pg_class c ON c.oid = i.indexrelid "
                                "WHERE c.relname LIKE '%search_vector' ORDER BY 1"
                            )
                        )
                    ).all(),
                )
        return erupt, draft, title, state

    erupt, draft, title, state = asyncio.run(scenario())
    assert sorted(erupt) == [
        "message:Stromboli erupts constantly.",
        "message:Which volcanoes erupt often?",
    ]
    assert draft == []  # a reply still streaming is not indexed
    assert "title:Volcano trip" in title
    if state is not None:
        forced, indexes = state
        # The fill lifted nothing: forced RLS is on, and both indexes were built and are valid.
        assert [tuple(row) for row in forced] == [("chat_sessions", True), ("messages", True)]
        assert [tuple(row) for row in indexes] == [
            ("ix_chat_sessions_search_vector", True),
            ("ix_messages_search_vector", True),
        ]


def test_sqlite_edits_keep_the_fts5_index_exact(tmp_path: Path) -> None:
    """Renames that share words with the old title, content edits, status changes and
    deletions leave the FTS5 index exactly matching the tables (its integrity-check)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'zyron.db'}"
    user_id, session_id = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        async with engine_for(url) as engine:
            await upgrade(engine)
            await seed_rows(url, user_id, session_id)
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE chat_sessions SET title = 'Volcano weekend'"))
                await conn.execute(
                    text(
                        "UPDATE messages SET content = 'Stromboli erupts, Etna too.' "
                        "WHERE content LIKE 'Stromboli%'"
                    )
                )
                await conn.execute(
                    text("UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'")
                )
                # No row is streaming now: the index must match the tables exactly. (The check
                # reads every row, so it cannot pass while one is left out on purpose.)
                for table in ("messages_fts", "chat_sessions_fts"):
                    await conn.execute(
                        text(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)")
                    )
                await conn.execute(
                    text("UPDATE messages SET status = 'streaming' WHERE content LIKE 'Which%'")
                )
            shared_word = await found(engine, user_id, "volcano")
            edited = await found(engine, user_id, "etna")
            taken_back = await found(engine, user_id, "often")
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE messages SET status = 'complete'"))
                await conn.execute(text("DELETE FROM chat_sessions"))  # cascades to messages
                for table in ("messages_fts", "chat_sessions_fts"):
                    await conn.execute(
                        text(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)")
                    )
                    assert (
                        await conn.execute(
                            text(
                                f"SELECT count(*) FROM {table} "
                                f"WHERE {table} MATCH 'volcano OR etna'"
                            )
                        )
                    ).scalar() == 0
        return shared_word, edited, taken_back

    shared_word, edited, taken_back = asyncio.run(scenario())
    # "Volcano" is in the old and the new title: the rename kept it.
    assert "title:Volcano weekend" in shared_word
    assert "message:streaming volcano draft" in shared_word  # interrupted now: indexed
    assert edited == ["message:Stromboli erupts, Etna too."]
    assert taken_back == []  # back to streaming: out of the index


def test_postgres_a_reply_taken_back_into_streaming_leaves_the_index(
    postgres: PostgresServer,
) -> None:
    """A reply resumed (streaming again) is not found by its earlier text until it is saved."""
    name = postgres.create_database()
    app_url, owner_url = (
        sqlalchemy_url(postgres.dsn(name, user=APP_ROLE)),
        sqlalchemy_url(postgres.dsn(name)),
    )
    user_id, session_id = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> tuple[list[str], list[str]]:
        async with engine_for(app_url) as engine:
            await upgrade(engine)
            await seed_rows(owner_url, user_id, session_id)
            async with engine_for(owner_url) as owner, owner.begin() as conn:
                await conn.execute(
                    text("UPDATE messages SET status = 'streaming' WHERE content LIKE 'Stromboli%'")
                )
            gone = await found(engine, user_id, "stromboli")
            async with engine_for(owner_url) as owner, owner.begin() as conn:
                await conn.execute(
                    text("UPDATE messages SET status = 'complete' WHERE content LIKE 'Stromboli%'")
                )
            back = await found(engine, user_id, "stromboli")
        return gone, back

    gone, back = asyncio.run(scenario())
    assert gone == []
    assert back == ["message:Stromboli erupts constantly."]


def test_postgres_follows_search_config_and_finishes_an_interrupted_reindex(
    postgres: PostgresServer,
) -> None:
    """SEARCH_CONFIG=simple re-indexes (stop words become searchable); a re-index marked
    pending is finished at the next start; an unknown configuration is refused."""
    name = postgres.create_database()
    app_url, owner_url = (
        sqlalchemy_url(postgres.dsn(name, user=APP_ROLE)),
        sqlalchemy_url(postgres.dsn(name)),
    )
    user_id, session_id = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with engine_for(app_url) as engine:
            await upgrade(engine)
            await seed_rows(owner_url, user_id, session_id)
            seen["english"] = await found(engine, user_id, "which")  # a stop word in english
            await reindex.follow_setting(engine, "simple")
            seen["simple"] = await found(engine, user_id, "which")
            # A re-index cut short: rows not done, the function marked pending.
            async with engine_for(owner_url) as owner, owner.begin() as conn:
                await conn.execute(text("UPDATE messages SET search_vector = NULL"))
                await conn.execute(
                    text(f"COMMENT ON FUNCTION zyron_search_config() IS '{reindex.PENDING}'")
                )
            seen["cut short"] = await found(engine, user_id, "which")
            await reindex.follow_setting(engine, "simple")
            seen["finished"] = await found(engine, user_id, "which")
            async with engine_for(owner_url) as owner, owner.connect() as conn:
                seen["note"] = (
                    await conn.execute(
                        text(
                            "SELECT obj_description("
                            "'zyron_search_config()'::regprocedure, 'pg_proc')"
                        )
                    )
                ).scalar()
            try:
                await reindex.follow_setting(engine, "klingon")
            except Exception as exc:
                seen["unknown"] = f"{type(exc).__name__}: {exc}"
        return seen

    seen = asyncio.run(scenario())
    assert seen["english"] == []
    assert seen["simple"] == ["message:Which volcanoes erupt often?"]
    assert seen["cut short"] == []
    assert seen["finished"] == ["message:Which volcanoes erupt often?"]
    assert seen["note"] is None
    assert seen["unknown"].startswith("ConfigError: SEARCH_CONFIG='klingon'")


def test_postgres_replicas_migrating_at_once_both_start(postgres: PostgresServer) -> None:
    """Two processes upgrading one database together: one migrates (CONCURRENTLY indexes
    included), the other waits its turn without deadlocking it, and both end at head."""
    name = postgres.create_database()
    app_url, owner_url = (
        sqlalchemy_url(postgres.dsn(name, user=APP_ROLE)),
        sqlalchemy_url(postgres.dsn(name)),
    )
    user_id, session_id = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> tuple[str, list[str]]:
        async with engine_for(app_url) as first, engine_for(app_url) as second:
            await upgrade(first, BEFORE_SEARCH)
            await seed_rows(owner_url, user_id, session_id)
            await asyncio.gather(upgrade(first), upgrade(second))
            async with first.connect() as conn:
                version = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar_one()
            return version, await found(first, user_id, "stromboli")

    version, hits = asyncio.run(scenario())
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert hits == ["message:Stromboli erupts constantly."]


def test_postgres_an_interrupted_fill_runs_again(postgres: PostgresServer) -> None:
    """Stopped after 0014 (the fill not done) with one index already built, the next start
    fills and builds the rest: 0015 can run again."""
    name = postgres.create_database()
    app_url, owner_url = (
        sqlalchemy_url(postgres.dsn(name, user=APP_ROLE)),
        sqlalchemy_url(postgres.dsn(name)),
    )
    user_id, session_id = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> list[str]:
        async with engine_for(app_url) as engine:
            await upgrade(engine, BEFORE_SEARCH)
            await seed_rows(owner_url, user_id, session_id)
            await upgrade(engine, "0014")
            async with engine_for(owner_url) as owner, owner.begin() as conn:
                await conn.execute(text("UPDATE messages SET search_vector = NULL"))
                await conn.execute(text(reindex.INDEXES[0].create_sql(concurrently=False)))
            await upgrade(engine)
            return await found(engine, user_id, "stromboli")

    assert asyncio.run(scenario()) == ["message:Stromboli erupts constantly."]


def test_postgres_behind_a_transaction_pooler_everything_is_one_transaction(
    postgres: PostgresServer,
) -> None:
    """DB_TRANSACTION_POOLER: migrations and a SEARCH_CONFIG change run in single
    transactions (no session lock or setting to lose); the rows are filled all the same and
    the indexes built valid."""
    name = postgres.create_database()
    app_url = sqlalchemy_url(postgres.dsn(name, user=APP_ROLE))
    owner_url = sqlalchemy_url(postgres.dsn(name))
    user_id, session_id = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
        async with engine_for(app_url) as engine:
            await upgrade(engine, BEFORE_SEARCH, transaction_pooler=True)
            await seed_rows(owner_url, user_id, session_id)
            await upgrade(engine, transaction_pooler=True)
            english = await found(engine, user_id, "stromboli")
            await reindex.follow_setting(engine, "simple", transaction_pooler=True)
            simple = await found(engine, user_id, "which")
        async with engine_for(owner_url) as owner, owner.connect() as conn:
            indexes = (
                await conn.execute(
                    text(
                        "SELECT c.relname::text, i.indisvalid FROM pg_index i "
                        "JOIN pg_class c ON c.oid = i.indexrelid "
                        "WHERE c.relname LIKE '%search_vector' ORDER BY 1"
                    )
                )
            ).all()
        return english, simple, [tuple(row) for row in indexes]

    english, simple, indexes = asyncio.run(scenario())
    assert english == ["message:Stromboli erupts constantly."]
    assert simple == ["message:Which volcanoes erupt often?"]
    assert indexes == [
        ("ix_chat_sessions_search_vector", True),
        ("ix_messages_search_vector", True),
    ]
