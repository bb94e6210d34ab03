"""GET /health: is the server up (and not draining), can it reach its database, how busy is it."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.pool import Pool, QueuePool

from zyron import __version__
from zyron.state import get_state

router = APIRouter(tags=["health"])

DB_CHECK_TIMEOUT_SECONDS = 2.0


class PoolFigures(BaseModel):
    """The connection pool right now (null where the pool keeps no connections)."""

    kind: str
    size: int | None = None
    checked_out: int | None = None
    checked_in: int | None = None
    overflow: int | None = None


class Health(BaseModel):
    """What /health reports."""

    status: Literal["ok", "degraded", "draining"] = Field(
        description="`draining`: the server is stopping (SIGTERM) and finishing its running "
        "replies; a load balancer must send it nothing new (docs/deploy.md)."
    )
    database: Literal["ok", "failed"]
    database_dialect: str
    database_ms: float | None
    pool: PoolFigures
    redis: Literal["ok", "failed"] | None
    provider: str | None = Field(description="The provider of the default model.")
    default_model: str | None
    providers: dict[str, dict[str, Any]] = Field(
        description="Each provider's state, from what it saw lately; no paid API is called."
    )
    version: str
    generations_running: int
    rate_limits: dict[str, Any] = Field(
        description="`enabled`, and where the counters live (`memory` or `redis`)."
    )


def pool_figures(pool: Pool) -> PoolFigures:
    """Read the pool's counters."""
    if isinstance(pool, QueuePool):
        return PoolFigures(
            kind=type(pool).__name__,
            size=pool.size(),
            checked_out=pool.checkedout(),
            checked_in=pool.checkedin(),
            overflow=pool.overflow(),
        )
    return PoolFigures(kind=type(pool).__name__)


@router.get(
    "/health",
    responses={
        200: {"model": Health, "description": "Serving: the database answered."},
        503: {"model": Health, "description": "Database unreachable, or draining to stop"},
    },
)
async def health(request: Request) -> Any:
    """Report the server's state; 503 while draining, or when the database does not answer."""
    state = get_state(request)
    database: Literal["ok", "failed"] = "ok"
    started = time.perf_counter()
    elapsed: float | None = None
    try:
        async with asyncio.timeout(DB_CHECK_TIMEOUT_SECONDS), state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        elapsed = round((time.perf_counter() - started) * 1000, 2)
    except Exception:  # any failure to answer SELECT 1 in time means "failed"
        database = "failed"
    redis: Literal["ok", "failed"] | None = None
    if state.hub is not None:
        redis = "ok" if await state.hub.ping() else "failed"
    body = Health(
        status=(
            "draining"
            if state.draining
            else "ok"
            if database == "ok" and redis != "failed"
            else "degraded"
        ),
        database=database,
        database_dialect=state.engine.dialect.name,
        database_ms=elapsed,
        pool=pool_figures(state.engine.pool),
        redis=redis,
        provider=(
            state.models.models[state.models.default].provider if state.models.default else None
        ),
        default_model=state.models.default,
        providers={name: p.health() for name, p in state.models.providers.items()},
        version=__version__,
        generations_running=state.generations.running,
        rate_limits={"enabled": state.limiter.enabled, "backend": state.limiter.backend},
    )
    serving = database == "ok" and not state.draining
    return JSONResponse(body.model_dump(), status_code=200 if serving else 503)
