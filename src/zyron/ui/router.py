"""POST /ui/chat over HTTP: the AI SDK's UI message stream, for useChat front ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from zyron.auth.deps import OptionalUser
from zyron.chat.follow import reply_events
from zyron.chat.service import Started, follow_started
from zyron.errors import InvalidInput, InvalidToken, NotFound, ReplyInProgress, error_responses
from zyron.state import AppState, get_state
from zyron.ui import service
from zyron.ui.chunks import UI_STREAM_HEADERS, one_by_one, ui_stream
from zyron.ui.schemas import UIChatRequest, UIMessage

router = APIRouter(tags=["ui"])


@router.post(
    "/ui/chat",
    responses={
        200: {
            "description": "The UI message stream (protocol v1): `data:` chunks, then [DONE].",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(InvalidToken, InvalidInput, NotFound, ReplyInProgress),
    },
)
async def ui_chat(body: UIChatRequest, request: Request, principal: OptionalUser) -> Any:
    """Answer useChat's DefaultChatTransport: the reply to the last message, as UI chunks.

    Signed in, the chat is a saved session and only the last message is new; guests send the
    whole conversation and nothing is saved (docs/frontends.md).
    """
    state = get_state(request)
    started = await service.send(state, body, principal, address=state.clients.key(request))
    return StreamingResponse(
        _stream(state, started), media_type="text/event-stream", headers=UI_STREAM_HEADERS
    )


async def _stream(state: AppState, started: Started) -> AsyncIterator[bytes]:
    """Render the reply's events as UI chunks."""
    async for chunk in ui_stream(follow_started(state, started)):
        yield chunk


@router.get(
    "/ui/chat/{chat_id:path}/messages",
    responses={
        200: {"model": list[UIMessage], "description": "The active branch, oldest first."},
        **error_responses(InvalidToken),
    },
)
async def ui_messages(chat_id: str, request: Request, principal: OptionalUser) -> Any:
    """The chat's active branch as UIMessages, for useChat's initial `messages`.

    [] for a chat this caller does not have (a guest's, another user's, one not started).
    """
    state = get_state(request)
    files_url = (state.settings.public_url or str(request.base_url).rstrip("/")) + "/files"
    return await service.ui_messages(state, principal, chat_id, files_url=files_url)


@router.get(
    "/ui/chat/{chat_id:path}/stream",
    response_model=None,
    responses={
        200: {
            "description": "The reply in progress, replayed from its start, then live.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        204: {"description": "No reply of this chat is streaming (or no such chat)."},
        **error_responses(InvalidToken),
    },
)
async def ui_resume(chat_id: str, request: Request, principal: OptionalUser) -> Response:
    """What useChat({resume: true}) calls on mount: replay the reply streaming, if any."""
    state = get_state(request)
    reply = await service.streaming_reply(state, principal, chat_id)
    if reply is None or principal is None:
        return Response(status_code=204)
    events = reply_events(state, principal, reply, after=-1)
    return StreamingResponse(
        ui_stream(one_by_one(events)), media_type="text/event-stream", headers=UI_STREAM_HEADERS
    )
