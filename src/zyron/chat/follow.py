"""Resume a reply from Last-Event-ID on any replica, and cancel it wherever it runs."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from redis.exceptions import RedisError
from sqlalchemy import select, update

from zyron.auth.deps import CurrentUser
from zyron.auth.principal import Principal
from zyron.chat.reply_parts import positioned
from zyron.db.deps import UserDb
from zyron.db.models import Message, Role, Status
from zyron.db.types import utcnow
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import InvalidToken, NotAuthenticated, NotFound, error_responses
from zyron.llm.base import TokenUsage
from zyron.llm.prices import usd
from zyron.sessions.deps import OwnedSession
from zyron.sessions.schemas import stored_usage
from zyron.state import AppState, get_state
from zyron.streams.events import (
    PING,
    POSITIONED_EVENTS,
    STREAM_HEADERS,
    StreamEvent,
    parse_last_event_id,
    trim_delta,
)

log = logging.getLogger("zyron.chat.follow")

router = APIRouter(tags=["chat"], responses=error_responses(NotAuthenticated, InvalidToken))

DB_POLL_SECONDS = 0.5

_RESUME_DOC = {
    200: {
        "description": "The reply's events after Last-Event-ID, then live ones until it ends.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **error_responses(NotFound),
}

LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        description="The id of the last event received: only later events are sent.",
    ),
]


class CancelAccepted(BaseModel):
    """The answer to a cancel request."""

    message_id: uuid.UUID
    status: str


async def _owned_reply(db: UserDb, principal: Principal, message_id: uuid.UUID) -> Message:
    reply = (
        await db.execute(
            select(Message).where(
                Message.id == message_id,
                Message.user_id == principal.user_id,
                Message.role == Role.ASSISTANT,
            )
        )
    ).scalar_one_or_none()
    if reply is None:
        raise NotFound("No such reply.")
    return reply


@router.get("/chat/{message_id}/stream", response_model=None, responses=_RESUME_DOC)
async def resume_reply(
    message_id: uuid.UUID,
    request: Request,
    principal: CurrentUser,
    db: UserDb,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """Replay what the client missed of a reply, then follow it live until it ends."""
    reply = await _owned_reply(db, principal, message_id)
    return _stream(get_state(request), principal, reply, parse_last_event_id(last_event_id))


@router.get("/sessions/{session_id}/stream", response_model=None, responses=_RESUME_DOC)
async def resume_session(
    chat: OwnedSession,
    request: Request,
    principal: CurrentUser,
    db: UserDb,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """Follow the session's latest reply: the one in progress, or replay the last one."""
    reply = (
        await db.execute(
            select(Message)
            .where(
                Message.session_id == chat.id,
                Message.user_id == principal.user_id,
                Message.role == Role.ASSISTANT,
            )
            .order_by(Message.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if reply is None:
        raise NotFound("This session has no reply yet.")
    return _stream(get_state(request), principal, reply, parse_last_event_id(last_event_id))


@router.post(
    "/chat/{message_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(NotFound),
)
async def cancel_reply(
    message_id: uuid.UUID, request: Request, principal: CurrentUser, db: UserDb
) -> CancelAccepted:
    """Stop a reply in progress, on whichever replica runs it; its text is kept."""
    reply = await _owned_reply(db, principal, message_id)
    if reply.status != Status.STREAMING:
        return CancelAccepted(message_id=reply.id, status=reply.status)
    # The flag reaches the producing replica through its next write; Redis and the local
    # registry reach it at once.
    await db.execute(
        update(Message)
        .where(Message.id == reply.id, Message.user_id == principal.user_id)
        .values(cancel_requested_at=utcnow())
    )
    await db.commit()
    state = get_state(request)
    if not state.generations.cancel(reply.id) and state.hub is not None:
        await state.hub.request_cancel(reply.id)
    return CancelAccepted(message_id=reply.id, status="cancelling")


def _stream(state: AppState, principal: Principal, reply: Message, after: int) -> StreamingResponse:
    return StreamingResponse(
        encode_events(reply_events(state, principal, reply, after)),
        media_type="text/event-stream",
        headers=STREAM_HEADERS,
    )


async def encode_events(events: AsyncIterator[StreamEvent | None]) -> AsyncIterator[bytes]:
    """Render events as SSE, with a ping comment for every idle interval."""
    async for event in events:
        yield PING if event is None else event.encode()


async def reply_events(
    state: AppState, principal: Principal, reply: Message, after: int
) -> AsyncIterator[StreamEvent | None]:
    """Pick the freshest source of the reply's events: this process, Redis, or the database."""
    idle = state.settings.stream_ping_seconds
    live = state.generations.get(reply.id)
    if live is not None:
        async for event in live.follow(after=after, idle=idle):
            yield event
        return
    if state.hub is not None:
        sent = after
        try:
            if await state.hub.exists(reply.id):
                async for event in state.hub.follow(reply.id, after=after, idle=idle):
                    if event is None:
                        yield None
                        continue
                    if _gap(event, sent):
                        # Redis trimmed entries this client has not seen (a stream past
                        # its MAXLEN): the row has them all, so carry on from it.
                        break
                    yield trim_delta(event, sent)
                    sent = event.id
                    if event.terminal:
                        return
        except RedisError as exc:
            log.warning("redis follow failed; using the database", extra={"reason": str(exc)})
        # Not in Redis (any more), or Redis failed: carry on from the row, from where we are.
        if sent != after:
            async with unit_of_work(
                state.sessionmaker, role="authenticated", claims=principal.claims
            ) as db:
                fresh = await db.get(Message, reply.id, populate_existing=True)
            if fresh is None:
                return
            reply = fresh
        after = sent
    async for event in _from_database(state, principal, reply, after):
        yield event


def _gap(event: StreamEvent, sent: int) -> bool:
    """Tell whether an event starts past what the client has: entries between were lost."""
    if event.event in POSITIONED_EVENTS:
        return event.id - len(event.data["text"]) > max(sent, 0)
    return sent < 0 and event.event != "session"


async def _from_database(
    state: AppState, principal: Principal, reply: Message, after: int
) -> AsyncIterator[StreamEvent | None]:
    """Replay a reply from its row; while another process still writes it, poll the row."""
    if after < 0:
        yield StreamEvent(0, "session", _session_data(reply))
    sent = max(after, 0)
    quiet = 0.0
    while True:
        end = 0
        for event, end, text in positioned(reply.parts, reply.content):
            if end > sent:  # this part has characters the client has not seen
                start = end - len(text)
                yield StreamEvent(end, event, {"text": text[max(0, sent - start) :]})
                sent = end
                quiet = 0.0
        if reply.status != Status.STREAMING:
            if after < end + 1:
                yield _terminal(reply, end)
            return
        await asyncio.sleep(DB_POLL_SECONDS)
        quiet += DB_POLL_SECONDS
        if quiet >= state.settings.stream_ping_seconds:
            quiet = 0.0
            yield None
        async with unit_of_work(
            state.sessionmaker, role="authenticated", claims=principal.claims
        ) as db:
            fresh = await db.get(Message, reply.id, populate_existing=True)
        if fresh is None:  # deleted meanwhile
            return
        reply = fresh


def _session_data(reply: Message) -> dict[str, Any]:
    return {
        "session_id": str(reply.session_id),
        "user_message_id": str(reply.parent_id) if reply.parent_id else None,
        "assistant_message_id": str(reply.id),
        "saved": True,
    }


def _terminal(reply: Message, length: int) -> StreamEvent:
    """The last event of a finished reply, rebuilt from its row; `length` is its last position."""
    event_id = length + 1
    if reply.status in (Status.COMPLETE, Status.CANCELLED):
        return StreamEvent(
            event_id,
            "done",
            {
                "message_id": str(reply.id),
                "stop_reason": reply.stop_reason
                or ("cancelled" if reply.status == Status.CANCELLED else None),
                "model": reply.model,
                "usage": (stored_usage(reply) or TokenUsage()).public(),
                "cost_usd": usd(reply.cost_nanousd),
                # Not stored: known only to the stream that produced the reply.
                "turns_sent": None,
                "turns_omitted": None,
            },
        )
    interrupted = reply.status == Status.INTERRUPTED
    return StreamEvent(
        event_id,
        "error",
        {
            "error": "reply_interrupted" if interrupted else "reply_failed",
            "detail": "The reply was interrupted before it finished; the text so far is kept."
            if interrupted
            else "The reply failed before any text was produced.",
            "retryable": True,
            "message_id": str(reply.id),
        },
    )
