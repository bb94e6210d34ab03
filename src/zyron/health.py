"""GET /health: is the server up and can it reach its database."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from zyron import __version__
from zyron.state import get_state

router = APIRouter(tags=["health"])

DB_CHECK_TIMEOUT_SECONDS = 2.0


class Health(BaseModel):
    """What /health reports."""

    status: Literal["ok", "degraded"]
    database: Literal["ok", "failed"]
    provider: str | None
    version: str
    generations_running: int


@router.get("/health", responses={503: {"model": Health, "description": "Database unreachable"}})
async def health(request: Request) -> Any:
    """Report the server's state; 503 when the database cannot be reached."""
    state = get_state(request)
    database: Literal["ok", "failed"] = "ok"
    try:
        async with asyncio.timeout(DB_CHECK_TIMEOUT_SECONDS), state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # any failure to answer SELECT 1 in time means "failed"
        database = "failed"
    body = Health(
        status="ok" if database == "ok" else "degraded",
        database=database,
        provider=state.provider.name if state.provider else None,
        version=__version__,
        generations_running=state.generations.running,
    )
    return JSONResponse(body.model_dump(), status_code=200 if database == "ok" else 503)
