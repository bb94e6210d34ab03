"""Engine set-up: URLs people paste, transaction-mode poolers, and how transactions begin."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool, QueuePool

from tests.pg import APP_ROLE, PostgresServer, sqlalchemy_url
from tests.support import live_server, make_settings, signup
from zyron.db.engine import (
    create_engine,
    create_sessionmaker,
    normalize_url,
    uses_transaction_pooler,
)
from zyron.db.migrate import upgrade
from zyron.db.unit_of_work import unit_of_work
from zyron.settings import ConfigError


@pytest.mark.parametrize(
    ("pasted", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgresql://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+asyncpg://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("sqlite:///data/x.db", "sqlite+aiosqlite:///data/x.db"),
    ],
)
def test_pasted_urls_get_async_drivers(pasted: str, expected: str) -> None:
    """Dashboard URLs are mapped to the asyncio drivers."""
    assert normalize_url(pasted) == expected


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "sqlite+pysqlite:///x.db"])
def test_unsupported_urls_are_a_clear_config_error(url: str, tmp_path: Path) -> None:
    """Other databases or drivers are refused with a sentence saying what to use."""
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        create_engine(url, make_settings(tmp_path))


def test_transaction_pooler_is_detected_by_port_or_setting() -> None:
    """Port 6543 (Supabase's transaction pooler) turns the mode on unless told otherwise."""
    pooler = make_url("postgresql+asyncpg://postgres.ref:pw@aws-1-eu.pooler.supabase.com:6543/db")
    session = make_url("postgresql+asyncpg://postgres.ref:pw@aws-1-eu.pooler.supabase.com:5432/db")
    assert uses_transaction_pooler(pooler, None)
    assert not uses_transaction_pooler(session, None)
    assert not uses_transaction_pooler(pooler, False)
    assert uses_transaction_pooler(session, True)


def test_engine_options_follow_the_pooler_mode(tmp_path: Path) -> None:
    """Behind a transaction pooler: no local pool and no statement cache; else a sized pool."""
    settings = make_settings(tmp_path, db_pool_size=3, db_max_overflow=2)
    pooled = create_engine("postgresql://u:p@127.0.0.1:5432/db?sslmode=require", settings)
    assert isinstance(pooled.pool, QueuePool)
    assert pooled.pool.size() == 3
    assert pooled.url.query == {"ssl": "require"}  # libpq's sslmode became asyncpg's ssl
    pooler = create_engine("postgresql://u:p@127.0.0.1:6543/db", settings)
    assert isinstance(pooler.pool, NullPool)
    assert pooler.url.query["prepared_statement_cache_size"] == "0"


def test_transaction_pooler_mode_serves_the_api(postgres: PostgresServer, tmp_path: Path) -> None:
    """The API works end to end with the pooler settings (no cache, no client pool)."""
    url = sqlalchemy_url(postgres.dsn(postgres.create_database(), user=APP_ROLE))
    settings = make_settings(
        tmp_path,
        database_url=url,
        db_transaction_pooler=True,
        anthropic_api_key="sk-test",
        anthropic_base_url="http://127.0.0.1:9",  # unused: no chat reaches the model here
    )
    with live_server(settings) as server, server.client() as http:
        account = signup(http)
        for title in ("one", "two", "three"):
            response = http.post("/sessions", json={"title": title}, headers=account.headers)
            assert response.status_code == 201, response.text
        listed = http.get("/sessions", headers=account.headers).json()
        assert [s["title"] for s in listed] == ["three", "two", "one"]
        assert http.get("/health").json()["pool"]["kind"] == "NullPool"


def test_role_and_claims_are_the_first_statement_in_one_round_trip(
    postgres: PostgresServer,
) -> None:
    """A user's transaction begins with one statement setting both role and claims."""
    url = sqlalchemy_url(postgres.dsn(postgres.create_database(), user=APP_ROLE))
    claims = {"sub": "6f1c1ad8-3d0b-4f5a-9d55-2f0c1f3f7a10", "role": "authenticated"}

    async def scenario() -> tuple[list[str], list[Any]]:
        engine = create_engine(url)
        await upgrade(engine)
        statements: list[str] = []

        def record(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
            statements.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", record)
        async with unit_of_work(
            create_sessionmaker(engine), role="authenticated", claims=claims
        ) as db:
            row = (
                await db.execute(
                    text(
                        "SELECT current_user, auth.uid()::text, "
                        "current_setting('request.jwt.claims', true)"
                    )
                )
            ).one()
        await engine.dispose()
        return statements, list(row)

    statements, (role, uid, raw_claims) = asyncio.run(scenario())
    assert "set_config('role'" in statements[0]
    assert "set_config('request.jwt.claims'" in statements[0]
    assert role == "authenticated"
    assert uid == claims["sub"]
    assert json.loads(raw_claims) == claims
