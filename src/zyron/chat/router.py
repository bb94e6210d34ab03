"""POST /chat: save the user's message, start the reply, stream it over SSE or return it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.auth.deps import CurrentUser, OptionalUser
from zyron.auth.principal import Principal
from zyron.chat import idempotency
from zyron.chat.context import build_history, fit_prompt, stored_turns
from zyron.chat.follow import encode_events, reply_events
from zyron.chat.generation import Generation, Outcome, PromptRequest, ReplyTarget
from zyron.chat.idempotency import MAX_KEY_LENGTH, IdempotencyKeyReused
from zyron.chat.schemas import ChatMessage, ChatRequest, ChatResponse, RegenerateRequest
from zyron.chat.titles import TitleRequest
from zyron.db.models import Message, Role, Status
from zyron.db.types import utcnow
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import (
    ContextTooLong,
    ErrorBody,
    InvalidInput,
    InvalidToken,
    NotAuthenticated,
    NotFound,
    ReplyInProgress,
    UnknownModel,
    UpstreamError,
    error_responses,
)
from zyron.limits import usage
from zyron.limits.concurrency import Slot
from zyron.limits.deps import hit
from zyron.limits.rates import RateLimited
from zyron.limits.usage import check_quota
from zyron.llm.base import ModelSpec, Provider
from zyron.sessions import branches
from zyron.sessions import repository as repo
from zyron.sessions.schemas import Usage
from zyron.settings import Settings
from zyron.state import AppState, get_state
from zyron.streams.events import PING, STREAM_HEADERS

router = APIRouter(tags=["chat"])
log = logging.getLogger("zyron.chat")


_STREAM_DOC = """Server-sent events, each with an `id:`:
`session` (ids, `saved`), many `delta` (`text`), then `done` (`message_id`, `stop_reason`,
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
    settings = state.settings
    _check_limits(body, settings)
    state.models.check(body.model)
    # Before anything is written or any model called.
    if principal is None:
        address = state.clients.key(request)
        await hit(request, "guest_chat", address)
        slot = await state.running.acquire("guest", address)
    else:
        await hit(request, "user_chat", str(principal.user_id))
        slot = await state.running.acquire("user", str(principal.user_id))

    try:
        if principal is None:
            prepared = _guest(body, state)
            if settings.rate_limit_enabled and settings.guest_daily_tokens:
                # Reserved first, used second: a reply ending in between is counted twice
                # (safe), never not at all.
                reserved = await _reserve(state, slot, prepared.prompt)
                check_quota(
                    await state.guest_usage.used_today(address),
                    _worst_case(prepared.prompt),
                    settings.guest_daily_tokens,
                    "This address",
                    reserved=reserved,
                )
        else:
            replay_or_prepared = await _signed_in(body, principal, state, idempotency_key, slot)
            if isinstance(replay_or_prepared, Replay):
                if slot is not None:
                    await state.running.release(slot)
                    slot = None
                return await _replay(state, principal, replay_or_prepared, stream=body.stream)
            prepared = replay_or_prepared
    except BaseException:
        if slot is not None:
            await state.running.release(slot)
        raise
    return await _respond(
        state,
        prepared,
        stream=body.stream,
        slot=slot,
        guest_address=address if principal is None else None,
    )


def _check_limits(body: ChatRequest, settings: Settings) -> None:
    """Refuse requests over the configured caps, naming the field."""
    if len(body.message) > settings.max_message_chars:
        raise InvalidInput(f"message: at most {settings.max_message_chars} characters")
    _check_reply_options(body, settings)
    history = body.history or []
    if len(history) > settings.max_history_messages:
        raise InvalidInput(f"history: at most {settings.max_history_messages} turns")
    for index, turn in enumerate(history):
        if len(turn.content) > settings.max_message_chars:
            raise InvalidInput(
                f"history.{index}.content: at most {settings.max_message_chars} characters"
            )


def _check_reply_options(options: ChatRequest | RegenerateRequest, settings: Settings) -> None:
    """Refuse a reply budget or a system prompt over the caps."""
    if options.max_tokens is not None and options.max_tokens > settings.max_tokens:
        raise InvalidInput(f"max_tokens: at most {settings.max_tokens}")
    if options.system is not None and len(options.system) > settings.max_message_chars:
        raise InvalidInput(f"system: at most {settings.max_message_chars} characters")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A reply ready to start: its event log, what goes to which provider, where it is saved."""

    generation: Generation
    provider: Provider
    prompt: PromptRequest
    target: ReplyTarget | None
    title: TitleRequest | None = None


def fitted_prompt(
    state: AppState,
    model_id: str | None,
    *,
    system: str | None,
    turns: Sequence[tuple[str, str]],
    message: str,
    max_tokens: int | None,
) -> tuple[ModelSpec, Provider, PromptRequest]:
    """Pick the model and fit the conversation into its window, with room for the reply."""
    spec, provider = state.models.resolve(model_id)
    # A request may ask for less than the model's most, never more.
    reply_budget = min(max_tokens or state.settings.max_tokens, spec.max_output)
    fitted = fit_prompt(
        build_history(turns),
        message,
        system=system,
        window=spec.context_window,
        reply_budget=reply_budget,
        counter=state.models.counter(spec),
        model=spec.id,
    )
    prompt = PromptRequest(
        model=spec.upstream_id,
        system=system,
        messages=fitted.messages,
        max_tokens=reply_budget,
        turns_sent=fitted.turns_sent,
        turns_omitted=fitted.turns_omitted,
        input_tokens=fitted.input_tokens,
        counter=state.models.counter(spec),
    )
    return spec, provider, prompt


def _guest(body: ChatRequest, state: AppState) -> Prepared:
    """Prepare a guest's reply: nothing is written anywhere."""
    if body.session_id is not None:
        raise NotAuthenticated(
            "Sign in to continue a saved session; guests send earlier turns in `history`."
        )
    if "parent_id" in body.model_fields_set:
        raise InvalidInput("parent_id: guests have no saved messages to branch from")
    _, provider, prompt = fitted_prompt(
        state,
        body.model,
        system=body.system,
        turns=[(turn.role, turn.content) for turn in body.history or []],
        message=body.message,
        max_tokens=body.max_tokens,
    )
    generation = state.generations.create(
        uuid.uuid4(),
        {
            "session_id": None,
            "user_message_id": None,
            "assistant_message_id": None,
            "saved": False,
        },
        resumable=False,  # a guest's reply has no owner to resume it
    )
    return Prepared(generation, provider, prompt, None)


@dataclass(frozen=True, slots=True)
class Replay:
    """A retried request: answer with the exchange its Idempotency-Key already produced."""

    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID


async def _signed_in(
    body: ChatRequest,
    principal: Principal,
    state: AppState,
    idempotency_key: str | None,
    slot: Slot | None,
) -> Prepared | Replay:
    """Save the user's message and a placeholder reply, committed before the model is called."""
    request_hash = idempotency.fingerprint(body)
    try:
        return await _save_exchange(body, principal, state, idempotency_key, slot)
    except IntegrityError:
        if idempotency_key is None:
            raise
        # A concurrent request with the same key committed first: this one is its retry.
        async with unit_of_work(
            state.sessionmaker, role="authenticated", claims=principal.claims
        ) as db:
            seen = await idempotency.find(db, principal.user_id, idempotency_key)
        if seen is None:
            raise
        if seen.request_hash != request_hash:
            raise IdempotencyKeyReused() from None
        return Replay(seen.user_message_id, seen.assistant_message_id)


async def _save_exchange(
    body: ChatRequest,
    principal: Principal,
    state: AppState,
    idempotency_key: str | None,
    slot: Slot | None,
) -> Prepared | Replay:
    """In one transaction: replay a known key, or save the exchange (and the key)."""
    settings = state.settings
    branching = "parent_id" in body.model_fields_set
    async with unit_of_work(
        state.sessionmaker, role="authenticated", claims=principal.claims
    ) as db:
        if idempotency_key is not None:
            seen = await idempotency.find(db, principal.user_id, idempotency_key)
            if seen is not None:
                if seen.request_hash != idempotency.fingerprint(body):
                    raise IdempotencyKeyReused()
                return Replay(seen.user_message_id, seen.assistant_message_id)
        # Every statement here delays the first token: one round trip each, no ORM objects
        # where rows will do (see docs/benchmarks.md).
        now = utcnow()
        if body.session_id is not None:
            chat = await repo.touch_owned_session(db, principal.user_id, body.session_id, now)
            if chat is None:
                raise NotFound("No such session.")
            earlier = await _branch_before(db, principal, chat.id, body, settings)
            if earlier and earlier[-1].status == Status.STREAMING:
                # The model would never see that reply, yet the tree would show it answered.
                raise ReplyInProgress(
                    "The reply this message would follow is still being produced; send it "
                    "after that reply's `done`, or cancel the reply first."
                )
        else:
            if branching and body.parent_id is not None:
                raise InvalidInput("parent_id: only with the session_id it belongs to")
            chat = await repo.add_session(
                db,
                principal.user_id,
                title=body.title,
                model=body.model,
                now=now,
            )
            earlier = []
        # Fitted before anything is written: a message too long for the model changes nothing.
        spec, provider, prompt = fitted_prompt(
            state,
            body.model or _session_model(state, chat.model),
            system=body.system or chat.system_prompt,
            turns=stored_turns(_newest(earlier, settings.max_history_messages)),
            message=body.message,
            max_tokens=body.max_tokens,
        )
        await _check_user_quota(db, state, principal, prompt, slot)
        exchange = await repo.add_exchange(
            db,
            chat,
            text=body.message,
            model=spec.id,
            parent_id=earlier[-1].id if earlier else None,
            lease_seconds=settings.reply_lease_seconds,
            now=now,
        )
        if idempotency_key is not None:
            idempotency.remember(
                db,
                user_id=principal.user_id,
                key=idempotency_key,
                request_hash=idempotency.fingerprint(body),
                session_id=chat.id,
                user_message_id=exchange.user_message_id,
                assistant_message_id=exchange.reply_id,
            )
    title = None
    if settings.auto_titles and chat.title_pending:
        title = title_request(state, spec, provider, body.message)
    generation, target = _saved_reply(state, principal, chat.id, exchange)
    return Prepared(generation, provider, prompt, target, title)


def _saved_reply(
    state: AppState, principal: Principal, session_id: uuid.UUID, exchange: repo.Exchange
) -> tuple[Generation, ReplyTarget]:
    """Make the event log of a reply that is saved, and say where it is saved."""
    generation = state.generations.create(
        exchange.reply_id,
        {
            "session_id": str(session_id),
            "user_message_id": str(exchange.user_message_id),
            "assistant_message_id": str(exchange.reply_id),
            "saved": True,
        },
        created_at=exchange.reply_created_at,
    )
    target = ReplyTarget(
        user_id=principal.user_id,
        session_id=session_id,
        message_id=exchange.reply_id,
        claims=principal.claims,
    )
    return generation, target


async def _respond(
    state: AppState,
    prepared: Prepared,
    *,
    stream: bool,
    slot: Slot | None,
    guest_address: str | None = None,
) -> StreamingResponse | ChatResponse:
    """Start the reply, and answer with its event stream or, once it ends, as JSON."""

    async def on_end(outcome: Outcome | None) -> None:
        try:
            if guest_address is not None and outcome is not None and outcome.charged is not None:
                # A guest's usage is counted by address; their conversation is not kept.
                await state.guest_usage.add(guest_address, sum(outcome.charged))
        finally:
            # After the usage is counted: the reservation held by the slot goes with it.
            if slot is not None:
                await state.running.release(slot)

    state.generations.start(
        prepared.generation,
        provider=prepared.provider,
        prompt=prepared.prompt,
        target=prepared.target,
        title=prepared.title,
        on_end=on_end,
    )
    if stream:
        return StreamingResponse(
            _sse(state, prepared.generation),
            media_type="text/event-stream",
            headers=STREAM_HEADERS,
        )
    return await _json_reply(prepared.generation, prepared.target)


async def _branch_before(
    db: AsyncSession,
    principal: Principal,
    session_id: uuid.UUID,
    body: ChatRequest,
    settings: Settings,
) -> Sequence[Row[Any]]:
    """The turns the new message follows: the active branch, or the one ending at parent_id."""
    if "parent_id" not in body.model_fields_set:
        return await branches.branch(
            db,
            principal.user_id,
            session_id,
            leaf_id=None,
            # At least the leaf: the new message's parent, even with no history sent.
            limit=max(1, settings.max_history_messages),
            columns=branches.TURN_COLUMNS,
        )
    if body.parent_id is None:  # an edit of the session's first message: a new root
        return []
    earlier = await branches.branch(
        db,
        principal.user_id,
        session_id,
        leaf_id=body.parent_id,
        limit=max(1, settings.max_history_messages),
        columns=branches.TURN_COLUMNS,
    )
    if not earlier:
        raise NotFound("No such message in this session.")
    if earlier[-1].role != Role.ASSISTANT:
        raise InvalidInput(
            "parent_id: must be a reply (assistant message); to edit a message, branch from "
            "the reply before it, or send parent_id null to edit the first message"
        )
    return earlier


def _worst_case(prompt: PromptRequest) -> int:
    """The most tokens a request can use: its prompt and the whole reply budget."""
    return prompt.input_tokens + prompt.max_tokens


async def _check_user_quota(
    db: AsyncSession,
    state: AppState,
    principal: Principal,
    prompt: PromptRequest,
    slot: Slot | None,
) -> None:
    """Refuse a request that could take the user past today's token quota."""
    settings = state.settings
    if settings.rate_limit_enabled and settings.user_daily_tokens:
        reserved = await _reserve(state, slot, prompt)  # before reading usage, as for guests
        check_quota(
            await usage.used_today(db, principal.user_id),
            _worst_case(prompt),
            settings.user_daily_tokens,
            "This account",
            reserved=reserved,
        )


async def _reserve(state: AppState, slot: Slot | None, prompt: PromptRequest) -> int:
    """Set this request's worst case aside; return what the owner's running replies hold."""
    if slot is None:
        return 0
    return await state.running.reserve(slot, _worst_case(prompt))


def _newest(turns: Sequence[Row[Any]], count: int) -> Sequence[Row[Any]]:
    """Return the last `count` turns (none for 0)."""
    return turns[len(turns) - count :] if count else []


def _session_model(state: AppState, model: str | None) -> str | None:
    """The session's model, or None (the default) if the server no longer offers it.

    A session keeps the model it was created with; one removed from the configuration since
    (or stored before models were checked) must not make the session unusable.
    """
    if model is not None and model not in state.models.models:
        log.warning("session model not offered; using the default", extra={"model": model})
        return None
    return model


def title_request(
    state: AppState, spec: ModelSpec, provider: Provider, message: str
) -> TitleRequest:
    """Say which model titles a new session: TITLE_MODEL, or the one that replied."""
    if state.models.title_model is not None:
        spec, provider = state.models.resolve(state.models.title_model)
    return TitleRequest(provider=provider, model=spec.upstream_id, message=message)


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
    state = get_state(request)
    settings = state.settings
    options = body or RegenerateRequest()
    _check_reply_options(options, settings)
    state.models.check(options.model)
    await hit(request, "user_chat", str(principal.user_id))
    slot = await state.running.acquire("user", str(principal.user_id))
    try:
        prepared = await _prepare_regenerate(state, principal, message_id, options, slot)
    except BaseException:
        if slot is not None:
            await state.running.release(slot)
        raise
    return await _respond(state, prepared, stream=options.stream, slot=slot)


async def _prepare_regenerate(
    state: AppState,
    principal: Principal,
    message_id: uuid.UUID,
    options: RegenerateRequest,
    slot: Slot | None,
) -> Prepared:
    """Save a placeholder reply beside `message_id`, and what goes to the model for it."""
    settings = state.settings
    async with unit_of_work(
        state.sessionmaker, role="authenticated", claims=principal.claims
    ) as db:
        reply = await repo.message_by_id(db, principal.user_id, message_id)
        if reply is None:
            raise NotFound("No such message.")
        if reply.role != Role.ASSISTANT or reply.parent_id is None:
            raise InvalidInput("message_id: regenerate takes the id of a reply (assistant message)")
        if reply.status == Status.STREAMING:
            raise ReplyInProgress()
        now = utcnow()
        chat = await repo.touch_owned_session(db, principal.user_id, reply.session_id, now)
        if chat is None:
            raise NotFound("No such message.")
        earlier = await branches.branch(
            db,
            principal.user_id,
            chat.id,
            leaf_id=reply.parent_id,
            limit=settings.max_history_messages + 1,
            columns=branches.TURN_COLUMNS,
        )
        if not earlier:
            raise NotFound("No such message.")
        question = earlier[-1]
        spec, provider, prompt = fitted_prompt(
            state,
            options.model or _session_model(state, chat.model),
            system=options.system or chat.system_prompt,
            turns=stored_turns(earlier[:-1]),
            message=question.content,
            max_tokens=options.max_tokens,
        )
        await _check_user_quota(db, state, principal, prompt, slot)
        exchange = await repo.add_reply(
            db,
            chat,
            parent_id=question.id,
            model=spec.id,
            lease_seconds=settings.reply_lease_seconds,
            now=now,
        )
    # The first reply may have failed before the session got a title: this one can give it.
    title = None
    if settings.auto_titles and chat.title_pending:
        title = title_request(state, spec, provider, question.content)
    generation, target = _saved_reply(state, principal, chat.id, exchange)
    return Prepared(generation, provider, prompt, target, title)


async def _sse(state: AppState, generation: Generation) -> AsyncIterator[bytes]:
    """Follow the reply's events; a disconnect stops following, not the reply (by default)."""
    try:
        async for event in generation.follow(idle=state.settings.stream_ping_seconds):
            yield PING if event is None else event.encode()
    finally:
        if not generation.finished and state.settings.cancel_on_disconnect:
            state.generations.cancel(generation.key)


async def _json_reply(generation: Generation, target: ReplyTarget | None) -> ChatResponse:
    """Wait for the reply and answer with it, or with the upstream error."""
    outcome = await generation.wait()
    if outcome.error is not None:
        raise outcome.error
    session = generation.events[0].data
    usage = Usage(input_tokens=outcome.input_tokens, output_tokens=outcome.output_tokens)
    return ChatResponse(
        session_id=target.session_id if target else None,
        user_message_id=uuid.UUID(session["user_message_id"]) if target else None,
        saved=target is not None,
        message=ChatMessage(
            id=target.message_id if target else None,
            session_id=target.session_id if target else None,
            content=outcome.content,
            status=outcome.status,
            model=outcome.model,
            stop_reason=outcome.stop_reason,
            usage=usage,
            created_at=generation.created_at,
        ),
        usage=usage,
        turns_sent=outcome.turns_sent,
        turns_omitted=outcome.turns_omitted,
    )


async def _replay(state: AppState, principal: Principal, replay: Replay, *, stream: bool) -> Any:
    """Answer a retried request from the first one's reply: live if running, else from its row."""
    headers = {"Idempotent-Replayed": "true"}
    async with unit_of_work(
        state.sessionmaker, role="authenticated", claims=principal.claims
    ) as db:
        reply = await db.get(Message, replay.assistant_message_id)
    if reply is None:  # the session was deleted since
        raise NotFound("The reply of the first request with this Idempotency-Key is gone.")
    events = reply_events(state, principal, reply, after=-1)
    if stream:
        return StreamingResponse(
            encode_events(events),
            media_type="text/event-stream",
            headers={**STREAM_HEADERS, **headers},
        )
    async for _ in events:  # wait for the reply to end, wherever it is produced
        pass
    async with unit_of_work(
        state.sessionmaker, role="authenticated", claims=principal.claims
    ) as db:
        reply = await db.get(Message, replay.assistant_message_id)
    if reply is None:
        raise NotFound("The reply of the first request with this Idempotency-Key is gone.")
    if reply.status not in (Status.COMPLETE, Status.CANCELLED):
        raise UpstreamError(
            "reply_interrupted" if reply.status == Status.INTERRUPTED else "reply_failed",
            "The first request with this Idempotency-Key did not get a complete reply.",
            status_code=502,
            retryable=True,
        )
    usage = Usage(input_tokens=reply.input_tokens or 0, output_tokens=reply.output_tokens or 0)
    body = ChatResponse(
        session_id=reply.session_id,
        user_message_id=replay.user_message_id,
        saved=True,
        message=ChatMessage(
            id=reply.id,
            session_id=reply.session_id,
            content=reply.content,
            status=reply.status,
            model=reply.model or "",
            stop_reason=reply.stop_reason,
            usage=usage,
            created_at=reply.created_at,
        ),
        usage=usage,
    )
    return JSONResponse(body.model_dump(mode="json"), headers=headers)
