"""POST /ui/chat over HTTP: the AI SDK's UI message stream, for useChat front ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from zyron.auth.deps import OptionalUser
from zyron.chat.service import Started
from zyron.errors import ErrorBody, InvalidInput, InvalidToken, error_responses
from zyron.state import AppState, get_state
from zyron.ui import service
from zyron.ui.chunks import UI_STREAM_HEADERS, ui_stream
from zyron.ui.schemas import UIChatRequest

router = APIRouter(tags=["ui"])


@router.post(
    "/ui/chat",
    responses={
        200: {
            "description": "The UI message stream (protocol v1): `data:` chunks, then [DONE].",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(InvalidToken, InvalidInput),
        501: {"model": ErrorBody, "description": f"`{service.SignedInNotYet.code}`"},
    },
)
async def ui_chat(body: UIChatRequest, request: Request, principal: OptionalUser) -> Any:
    """Answer useChat's DefaultChatTransport: the reply to the last message, as UI chunks.

    Guests send the whole conversation; nothing is saved (see docs/frontends.md).
    """
    state = get_state(request)
    started = await service.send(state, body, principal, address=state.clients.key(request))
    return StreamingResponse(
        _stream(state, started), media_type="text/event-stream", headers=UI_STREAM_HEADERS
    )


async def _stream(state: AppState, started: Started) -> AsyncIterator[bytes]:
    """Follow the reply as UI chunks; a disconnect stops following, not the reply (default)."""
    generation = started.generation
    try:
        async for chunk in ui_stream(generation.follow(idle=state.settings.stream_ping_seconds)):
            yield chunk
    finally:
        if not generation.finished and state.settings.cancel_on_disconnect:
            state.generations.cancel(generation.key)
