"""The one place that begins and commits transactions, as the right database role."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from zyron.ops import tracing

# Who a transaction acts as on Postgres. "authenticated": a signed-in user, under RLS with
# their claims. "service_role": the auth flows that must find an account before anyone is
# signed in (login by email, refresh by token hash). "anon": a reader of a share link, who
# sees what the token it holds (`zyron.share_token_hash`) shows. "zyron_admin": an
# administrator's reads and changes across users, under its own policies (migration 0016,
# docs/admin.md). None: the owner, for migrations.
DbRole = Literal["authenticated", "service_role", "anon", "zyron_admin"]

# One round trip, as PostgREST does it: both settings are transaction-local (is_local=true),
# so they vanish at COMMIT and nothing leaks to the next user of the connection or a pooler.
_SET_IDENTITY = text(
    "SELECT set_config('role', :role, true), set_config('request.jwt.claims', :claims, true)"
)

_SET_LOCAL = text("SELECT set_config(:name, :value, true)")

# db.system.name in OpenTelemetry's terms, by SQLAlchemy dialect.
_SYSTEMS = {"postgresql": "postgresql", "sqlite": "sqlite"}


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    role: DbRole | None = None,
    claims: Mapping[str, Any] | None = None,
    local_settings: Mapping[str, str] | None = None,
) -> AsyncIterator[AsyncSession]:
    """Open a transaction that commits when the block ends and rolls back if it raises.

    `local_settings` are further transaction-local settings the policies read (Postgres).
    """
    with _traced(sessionmaker, role):
        async with sessionmaker() as session, session.begin():
            if role is not None and session.get_bind().dialect.name == "postgresql":
                payload = json.dumps(dict(claims or {"role": role}), separators=(",", ":"))
                await session.execute(_SET_IDENTITY, {"role": role, "claims": payload})
                for name, value in (local_settings or {}).items():
                    await session.execute(_SET_LOCAL, {"name": name, "value": value})
            yield session


def _traced(
    sessionmaker: async_sessionmaker[AsyncSession], role: str | None
) -> AbstractContextManager[object]:
    """A span for the transaction when tracing is on; nothing (and no work) when it is off."""
    if not tracing.enabled():
        return nullcontext()
    bind = sessionmaker.kw.get("bind")
    dialect = bind.dialect.name if bind is not None else ""
    system = _SYSTEMS.get(dialect, "other_sql")
    return tracing.current_span(
        "db.transaction", {"db.system.name": system, "zyron.db.role": role or "owner"}
    )
