"""POST /chat and regenerate over HTTP: parse, hand the request to the service, stream or answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from zyron.auth.deps import CurrentUser, OptionalUser
from zyron.chat import service
from zyron.chat.follow import encode_events
from zyron.chat.idempotency import MAX_KEY_LENGTH
from zyron.chat.schemas import ChatRequest, ChatResponse, RegenerateRequest
from zyron.chat.service import Replay, Started
from zyron.errors import (
    ContextTooLong,
    ErrorBody,
    InvalidInput,
    InvalidToken,
    NotAuthenticated,
    NotFound,
    ReasoningUnsupported,
    ReplyInProgress,
    UnknownModel,
    UnsupportedAttachment,
    error_responses,
)
from zyron.limits.rates import RateLimited
from zyron.state import AppState, get_state
from zyron.streams.events import PING, STREAM_HEADERS

router = APIRouter(tags=["chat"])


_STREAM_DOC = """Server-sent events, each with an `id:`:
`session` (ids, `saved`), `reasoning` (`text`: the model's thinking, when it thinks) before
many `delta` (`text`), then `done` (`message_id`, `stop_reason`,
`model`, `usage`, `turns_sent`, `turns_omitted`) or `error` (`error`, `detail`, `retryable`);
for a session still titled "New chat", a `title` (`session_id`, `title`) may follow `done`;
`: ping` comments while idle."""


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses={
        200: {
            "description": "`stream: false`: the reply as JSON. Otherwise an event stream.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(NotAuthenticated, InvalidToken, NotFound, InvalidInput, ReplyInProgress),
        422: {
            "model": ErrorBody,
            "description": f"`{UnknownModel.code}`: {UnknownModel.default_detail} "
            f"`{ContextTooLong.code}`: {ContextTooLong.default_detail} "
            f"`{UnsupportedAttachment.code}`: {UnsupportedAttachment.default_detail} "
            f"`{ReasoningUnsupported.code}`: {ReasoningUnsupported.default_detail} "
            "`validation_error`, `invalid_json`: the detail names the field",
        },
        503: {
            "model": ErrorBody,
            "description": "`no_provider`: no model is configured; `upstream_overloaded` "
            "(stream: false)",
        },
        400: {"model": ErrorBody, "description": "`upstream_bad_request` (stream: false)"},
        429: {
            "model": ErrorBody,
            "description": f"`{RateLimited.code}`: too many chats (or replies running) from "
            "this user or guest address (Retry-After, RateLimit-* headers); `quota_exceeded`: "
            "today's token quota would be passed (Retry-After: until midnight UTC); "
            "`upstream_rate_limited` (stream: false)",
        },
        502: {
            "model": ErrorBody,
            "description": "`upstream_auth`, `upstream_unavailable` (stream: false)",
        },
    },
    openapi_extra={"x-stream-events": _STREAM_DOC},
)
async def chat(
    body: ChatRequest,
    request: Request,
    principal: OptionalUser,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            description="Signed-in callers: a retry with the same key and body gets the first "
            "request's reply (replayed, or followed live) instead of a new one.",
        ),
    ] = None,
) -> Any:
    """Send a message and get the model's reply, streamed (default) or as JSON.

    With a bearer token the exchange is saved in a session (created when `session_id` is
    absent). Without an Authorization header the caller is a guest: nothing is saved and
    earlier turns come from `history`. A token that is present but invalid is a 401.
    """
    state = get_state(request)
    address = state.clients.key(request)
    started = await service.send_message(
        state, body, principal, address=address, idempotency_key=idempotency_key
    )
    if isinstance(started, Replay):
        assert principal is not None  # only a signed-in request has a key to replay
        return await _replay(state, principal, started, stream=body.stream)
    return await _answer(state, started, stream=body.stream)


@router.post(
    "/chat/{message_id}/regenerate",
    response_model=ChatResponse,
    responses={
        200: {
            "description": "`stream: false`: the new reply as JSON. Otherwise an event stream "
            "like POST /chat's.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(NotAuthenticated, InvalidToken, NotFound, ReplyInProgress),
        422: {
            "model": ErrorBody,
            "description": f"`{UnknownModel.code}`, `{ContextTooLong.code}`, "
            "`validation_error` (e.g. not a reply's id)",
        },
    },
    openapi_extra={"x-stream-events": _STREAM_DOC},
)
async def regenerate(
    message_id: uuid.UUID,
    request: Request,
    principal: CurrentUser,
    body: RegenerateRequest | None = None,
) -> Any:
    """Answer the same message again: a new reply beside `message_id` (a sibling in the tree).

    The new reply becomes the newest message, so its branch becomes the active one.
    """
    options = body or RegenerateRequest()
    started = await service.regenerate(get_state(request), principal, message_id, options)
    return await _answer(get_state(request), started, stream=options.stream)


async def _answer(state: AppState, started: Started, *, stream: bool) -> Any:
    """Stream the reply's events, or wait for it and answer as JSON."""
    if stream:
        return StreamingResponse(
            _sse(state, started), media_type="text/event-stream", headers=STREAM_HEADERS
        )
    return await service.reply_json(started)


async def _sse(state: AppState, started: Started) -> AsyncIterator[bytes]:
    """Render the reply's events as SSE: those ready together in one write."""
    async for batch in service.follow_started(state, started):
        if batch is None:
            yield PING
        elif len(batch) == 1:
            yield batch[0].encode()
        else:
            yield b"".join([event.encode() for event in batch])


async def _replay(state: AppState, principal: Any, replay: Replay, *, stream: bool) -> Any:
    """Answer a retried request from the first one's reply, marked as replayed."""
    headers = {"Idempotent-Replayed": "true"}
    if stream:
        events = await service.replay_events(state, principal, replay)
        return StreamingResponse(
            encode_events(events),
            media_type="text/event-stream",
            headers={**STREAM_HEADERS, **headers},
        )
    body = await service.replay_json(state, principal, replay)
    return JSONResponse(body.model_dump(mode="json"), headers=headers)
