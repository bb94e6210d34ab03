"""What happens to a message, in order: caps and limits, the context, saving the exchange,
idempotent replays, and starting the reply. The router hands a request here once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.auth.principal import Principal
from zyron.chat import attachments as attach
from zyron.chat import idempotency
from zyron.chat.context import Turn, build_history, fit_prompt, stored_turns
from zyron.chat.follow import reply_events
from zyron.chat.generation import Generation, Outcome, PromptRequest, ReplyTarget
from zyron.chat.idempotency import IdempotencyKeyReused
from zyron.chat.reasoning import (
    MIN_BUDGET_TOKENS,
    MIN_TOKENS_WITH_THINKING,
    allowance,
    fit_reasoning,
)
from zyron.chat.schemas import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    ReasoningOptions,
    RegenerateRequest,
)
from zyron.chat.titles import TitleRequest
from zyron.db.models import Message, Role, Status
from zyron.db.types import utcnow
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import InvalidInput, NotAuthenticated, NotFound, ReplyInProgress, UpstreamError
from zyron.files import repository as file_repo
from zyron.files import service as file_service
from zyron.limits import usage
from zyron.limits.budgets import Spent, budgets, check_budgets, worst_case_cost
from zyron.limits.concurrency import Slot
from zyron.limits.overrides import UserLimits, user_limits
from zyron.limits.usage import check_quota
from zyron.llm.base import Attachment, CacheTtl, ModelSpec, Provider, TokenUsage
from zyron.llm.prices import usd
from zyron.sessions import branches
from zyron.sessions import repository as repo
from zyron.sessions.parts import public_parts, stored_parts
from zyron.sessions.schemas import Usage, stored_usage
from zyron.settings import Settings
from zyron.state import AppState
from zyron.streams.events import StreamEvent

log = logging.getLogger("zyron.chat")


@dataclass(frozen=True, slots=True)
class Started:
    """A reply under way: its event log, and where it is saved (None for a guest)."""

    generation: Generation
    target: ReplyTarget | None


@dataclass(frozen=True, slots=True)
class ClientIds:
    """Ids a front end gave: the new session's (if one is made) and the user message's."""

    session: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class Replay:
    """A retried request: answer with the exchange its Idempotency-Key already produced."""

    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Prepared:
    """A reply ready to start: its event log, what goes to which provider, where it is saved."""

    generation: Generation
    provider: Provider
    prompt: PromptRequest
    target: ReplyTarget | None
    title: TitleRequest | None = None


# --- POST /chat -----------------------------------------------------------------------------


async def send_message(
    state: AppState,
    body: ChatRequest,
    principal: Principal | None,
    *,
    address: str,
    idempotency_key: str | None,
    client_ids: ClientIds | None = None,
) -> Started | Replay:
    """Check the request, save the exchange (signed in) and start the reply; or find a replay."""
    settings = state.settings
    check_caps(body, settings)
    state.models.check(body.model)
    # Before anything is written or any model called.
    if principal is None:
        await state.limiter.hit("guest_chat", address)
        slot = await state.running.acquire("guest", address)
    else:
        await state.limiter.hit("user_chat", str(principal.user_id))
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
                    limit="guest_daily_tokens",
                )
            await _check_budgets(
                state,
                slot,
                prepared.prompt,
                "guest",
                lambda: state.guest_usage.spent(address),
                "This address",
            )
        else:
            found = await _signed_in(body, principal, state, idempotency_key, slot, client_ids)
            if isinstance(found, Replay):
                if slot is not None:
                    await state.running.release(slot)
                return found
            prepared = found
    except BaseException:
        if slot is not None:
            await state.running.release(slot)
        raise
    return _start(state, prepared, slot, guest_address=address if principal is None else None)


def check_caps(body: ChatRequest, settings: Settings) -> None:
    """Refuse requests over the configured caps, naming the field."""
    if len(body.message) > settings.max_message_chars:
        raise InvalidInput(f"message: at most {settings.max_message_chars} characters")
    attach.check_count(body.attachments, settings.max_attachments)
    check_reply_options(body, settings)
    history = body.history or []
    if len(history) > settings.max_history_messages:
        raise InvalidInput(f"history: at most {settings.max_history_messages} turns")
    for index, turn in enumerate(history):
        if len(turn.content) > settings.max_message_chars:
            raise InvalidInput(
                f"history.{index}.content: at most {settings.max_message_chars} characters"
            )


def check_reply_options(options: ChatRequest | RegenerateRequest, settings: Settings) -> None:
    """Refuse a reply budget or a system prompt over the caps."""
    # Thinking counts inside max_tokens: a request that thinks may ask for MAX_REASONING_TOKENS
    # more. One cap per form of request, so the OpenAPI document can state it exactly.
    allowance(options.reasoning, settings.max_reasoning_tokens)  # a budget over its cap: 422
    cap = settings.max_tokens + (settings.max_reasoning_tokens if options.reasoning else 0)
    if (
        options.reasoning is not None
        and options.max_tokens is not None
        and options.max_tokens < MIN_TOKENS_WITH_THINKING
    ):
        # The same floor for every model, so that the document can state it.
        raise InvalidInput(
            f"max_tokens: at least {MIN_TOKENS_WITH_THINKING} with reasoning: thinking needs "
            f"at least {MIN_BUDGET_TOKENS} tokens and room for the answer inside max_tokens"
        )
    if options.max_tokens is not None and options.max_tokens > cap:
        more = " with its reasoning allowance" if options.reasoning is not None else ""
        raise InvalidInput(f"max_tokens: at most {cap}{more}")
    if options.system is not None and len(options.system) > settings.max_message_chars:
        raise InvalidInput(f"system: at most {settings.max_message_chars} characters")


def fitted_prompt(
    state: AppState,
    spec: ModelSpec,
    *,
    system: str | None,
    turns: Sequence[Turn],
    message: str,
    max_tokens: int | None,
    reasoning: ReasoningOptions | None = None,
    attachments: Sequence[Attachment] = (),
) -> PromptRequest:
    """Fit the conversation into the model's window, with room for the reply (and thinking)."""
    # A request may ask for less than the model's most, never more.
    reply_budget, thinking = fit_reasoning(
        spec,
        reasoning,
        max_tokens=max_tokens,
        default_max_tokens=state.settings.max_tokens,
        max_reasoning_tokens=state.settings.max_reasoning_tokens,
        reasoning_models=state.models.reasoning_models(),
    )
    counter = state.models.counter(spec)
    fitted = fit_prompt(
        build_history(turns),
        message,
        attachments=attachments,
        system=system,
        window=spec.context_window,
        reasoning=thinking is not None,
        reply_budget=reply_budget,
        counter=counter,
        model=spec.id,
    )
    return PromptRequest(
        model=spec.upstream_id,
        system=system,
        messages=fitted.messages,
        max_tokens=reply_budget,
        turns_sent=fitted.turns_sent,
        turns_omitted=fitted.turns_omitted,
        input_tokens=fitted.input_tokens,
        counter=counter,
        reasoning=thinking,
        cache_ttl=_cache_ttl(state.settings, spec, fitted.input_tokens, fitted.turns_omitted),
        prices=spec.prices,
    )


def _cache_ttl(
    settings: Settings, spec: ModelSpec, prompt_tokens: int, turns_omitted: int
) -> CacheTtl | None:
    """Mark the prompt for caching where the model caches it and it is long enough to be.

    Below the model's minimum the API would cache nothing anyway (and say nothing): the marks
    are left out, as Anthropic advises. So they are when the history no longer fits and its
    oldest turns are being left out: the prompt's start then changes every turn, nothing
    would be read, and every write would cost 1.25x (or 2x) the input price for nothing.
    """
    if spec.cache_min_tokens is None or prompt_tokens < spec.cache_min_tokens or turns_omitted:
        return None
    return settings.prompt_cache_ttl


def _guest(body: ChatRequest, state: AppState) -> Prepared:
    """Prepare a guest's reply: nothing is written anywhere."""
    if body.session_id is not None:
        raise NotAuthenticated(
            "Sign in to continue a saved session; guests send earlier turns in `history`."
        )
    if "parent_id" in body.model_fields_set:
        raise InvalidInput("parent_id: guests have no saved messages to branch from")
    inline = attach.guest_inline(body.attachments)
    spec, provider = state.models.resolve(body.model)
    # Checked like uploads, decoded once, and never written anywhere.
    files = attach.inline_attachments(state, inline, spec, provider) if inline else []
    prompt = fitted_prompt(
        state,
        spec,
        system=body.system,
        turns=[Turn(turn.role, turn.content) for turn in body.history or []],
        message=body.message,
        max_tokens=body.max_tokens,
        reasoning=body.reasoning,
        attachments=files,
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


async def _signed_in(
    body: ChatRequest,
    principal: Principal,
    state: AppState,
    idempotency_key: str | None,
    slot: Slot | None,
    client_ids: ClientIds | None,
) -> Prepared | Replay:
    """Save the user's message and a placeholder reply, committed before the model is called."""
    request_hash = idempotency.fingerprint(body)
    try:
        return await _save_exchange(body, principal, state, idempotency_key, slot, client_ids)
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
    client_ids: ClientIds | None = None,
) -> Prepared | Replay:
    """In one transaction: replay a known key, or save the exchange (and the key)."""
    settings = state.settings
    branching = "parent_id" in body.model_fields_set
    file_ids = attach.stored_ids(body.attachments)
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
        if file_ids:
            # Linking a file decides that it stays: queued behind its deletion, or the
            # deletion behind this (zyron.files.repository.lock_files_of). First, before the
            # session row, in the order file and session deletions take the two.
            await file_repo.lock_files_of(db, principal.user_id)
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
                client_id=client_ids.session if client_ids else None,
            )
            earlier = []
        spec, provider = state.models.resolve(body.model or _session_model(state, chat.model))
        # The files are the caller's (404 otherwise) and readable by the model (422), and
        # their bytes are loaded, before anything is written.
        owned, files = await attach.owned_attachments(
            state, db, principal.user_id, file_ids, spec, provider
        )
        history = _newest(earlier, settings.max_history_messages)
        earlier_files = await attach.history_attachments(
            state, db, principal.user_id, history, spec, provider
        )
        # Fitted before anything is written: a message too long for the model changes nothing.
        prompt = fitted_prompt(
            state,
            spec,
            system=body.system or chat.system_prompt,
            turns=stored_turns(history, earlier_files),
            message=body.message,
            max_tokens=body.max_tokens,
            reasoning=body.reasoning,
            attachments=files,
        )
        await _check_user_quota(db, state, principal, prompt, slot)
        exchange = await repo.add_exchange(
            db,
            chat,
            parts=attach.parts_for(owned, body.message),
            text=body.message,
            model=spec.id,
            parent_id=earlier[-1].id if earlier else None,
            lease_seconds=settings.reply_lease_seconds,
            now=now,
            client_id=client_ids.message if client_ids else None,
        )
        if owned:
            # What deleting the file, or the session, follows.
            await file_service.link(db, principal.user_id, exchange.user_message_id, owned)
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


# --- POST /chat/{id}/regenerate -------------------------------------------------------------


async def regenerate(
    state: AppState, principal: Principal, message_id: uuid.UUID, options: RegenerateRequest
) -> Started:
    """Start a new reply to the same message as reply `message_id`: its sibling in the tree."""
    check_reply_options(options, state.settings)
    state.models.check(options.model)
    await state.limiter.hit("user_chat", str(principal.user_id))
    slot = await state.running.acquire("user", str(principal.user_id))
    try:
        prepared = await _prepare_regenerate(state, principal, message_id, options, slot)
    except BaseException:
        if slot is not None:
            await state.running.release(slot)
        raise
    return _start(state, prepared, slot)


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
        spec, provider = state.models.resolve(options.model or _session_model(state, chat.model))
        # The question's files go again, with the history's, as they are now; a model that
        # cannot read them is refused, as for a new message.
        attach.check_accepted(state, spec, attach.kinds_of(question))
        loaded = await attach.history_attachments(
            state, db, principal.user_id, earlier, spec, provider
        )
        prompt = fitted_prompt(
            state,
            spec,
            system=options.system or chat.system_prompt,
            turns=stored_turns(earlier[:-1], loaded),
            message=question.content,
            max_tokens=options.max_tokens,
            reasoning=options.reasoning,
            attachments=stored_turns([question], loaded)[0].attachments,
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


# --- shared steps ---------------------------------------------------------------------------


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


def _start(
    state: AppState, prepared: Prepared, slot: Slot | None, guest_address: str | None = None
) -> Started:
    """Start the reply's task; the slot is given back (and a guest's usage counted) at its end."""

    async def on_end(outcome: Outcome | None) -> None:
        try:
            if guest_address is not None and outcome is not None and outcome.charged is not None:
                # A guest's usage is counted by address; their conversation is not kept.
                charged = outcome.charged
                await state.guest_usage.add(
                    guest_address, charged.prompt_tokens + charged.output_tokens, outcome.cost
                )
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
    return Started(prepared.generation, prepared.target)


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
    """Refuse a request that could take the user past today's token quota or a budget."""
    settings = state.settings
    if not settings.rate_limit_enabled:
        return
    # The settings, or what an administrator set for this user (docs/admin.md).
    limits = await user_limits(db, settings, principal.user_id)
    if limits.daily_tokens:
        reserved = await _reserve(state, slot, prompt)  # before reading usage, as for guests
        check_quota(
            await usage.used_today(db, principal.user_id),
            _worst_case(prompt),
            limits.daily_tokens,
            "This account",
            reserved=reserved,
            limit="user_daily_tokens",
        )
    await _check_budgets(
        state,
        slot,
        prompt,
        "user",
        lambda: usage.spent(db, principal.user_id),
        "This account",
        limits=limits,
    )


async def _check_budgets(
    state: AppState,
    slot: Slot | None,
    prompt: PromptRequest,
    who: Literal["user", "guest"],
    spent: Callable[[], Awaitable[tuple[int, int]]],
    label: str,
    *,
    limits: UserLimits | None = None,
) -> None:
    """Refuse a request whose worst-case cost could pass a money budget of its owner's.

    Reserved before the spend is read, as tokens are: two requests started together each see
    the other's reservation, so together they cannot overspend.
    """
    applying = budgets(state.settings, who, limits)
    if not applying:
        return
    needed = worst_case_cost(
        prompt.prices, prompt.input_tokens, prompt.max_tokens, prompt.model, applying
    )
    reserved = await state.running.reserve(slot, needed, "nanousd") if slot is not None else 0
    day, month = await spent()
    check_budgets(Spent(day, month), needed, applying, label, reserved=reserved)


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


# --- answers --------------------------------------------------------------------------------


async def follow_started(
    state: AppState, started: Started
) -> AsyncIterator[list[StreamEvent] | None]:
    """The reply's events for its HTTP stream, what is ready in one list (None: idle, a ping).

    A hang-up stops following, not the reply, since the caller can resume it; a guest cannot
    resume, so their reply is cancelled instead of being paid for with nobody reading.
    """
    generation = started.generation
    try:
        async for batch in generation.batches(idle=state.settings.stream_ping_seconds):
            yield batch
    finally:
        if not generation.finished and (
            started.target is None or state.settings.cancel_on_disconnect
        ):
            state.generations.cancel(generation.key)


async def reply_json(started: Started) -> ChatResponse:
    """Wait for the reply and answer with it, or raise the upstream error."""
    generation, target = started.generation, started.target
    outcome = await generation.wait()
    if outcome.error is not None:
        raise outcome.error
    session = generation.events[0].data
    reply_usage = Usage.of(outcome.usage)
    return ChatResponse(
        session_id=target.session_id if target else None,
        user_message_id=uuid.UUID(session["user_message_id"]) if target else None,
        saved=target is not None,
        message=ChatMessage(
            id=target.message_id if target else None,
            session_id=target.session_id if target else None,
            content=outcome.content,
            parts=public_parts(outcome.parts),
            status=outcome.status,
            model=outcome.model,
            stop_reason=outcome.stop_reason,
            usage=reply_usage,
            cost_usd=usd(outcome.cost),
            created_at=generation.created_at,
        ),
        usage=reply_usage,
        turns_sent=outcome.turns_sent,
        turns_omitted=outcome.turns_omitted,
    )


async def _replayed_reply(state: AppState, principal: Principal, replay: Replay) -> Message:
    async with unit_of_work(
        state.sessionmaker, role="authenticated", claims=principal.claims
    ) as db:
        reply = await db.get(Message, replay.assistant_message_id)
    if reply is None:  # the session was deleted since
        raise NotFound("The reply of the first request with this Idempotency-Key is gone.")
    return reply


async def replay_events(
    state: AppState, principal: Principal, replay: Replay
) -> AsyncIterator[StreamEvent | None]:
    """Follow the first request's reply: live if it runs (on any replica), else from its row."""
    reply = await _replayed_reply(state, principal, replay)
    return reply_events(state, principal, reply, after=-1)


async def replay_json(state: AppState, principal: Principal, replay: Replay) -> ChatResponse:
    """Wait for the first request's reply to end, wherever it runs, and answer with it."""
    async for _ in await replay_events(state, principal, replay):
        pass
    reply = await _replayed_reply(state, principal, replay)
    if reply.status not in (Status.COMPLETE, Status.CANCELLED):
        raise UpstreamError(
            "reply_interrupted" if reply.status == Status.INTERRUPTED else "reply_failed",
            "The first request with this Idempotency-Key did not get a complete reply.",
            status_code=502,
            retryable=True,
        )
    reply_usage = Usage.of(stored_usage(reply) or TokenUsage())
    return ChatResponse(
        session_id=reply.session_id,
        user_message_id=replay.user_message_id,
        saved=True,
        message=ChatMessage(
            id=reply.id,
            session_id=reply.session_id,
            content=reply.content,
            parts=public_parts(stored_parts(reply.parts, reply.content)),
            status=reply.status,
            model=reply.model or "",
            stop_reason=reply.stop_reason,
            usage=reply_usage,
            cost_usd=usd(reply.cost_nanousd),
            created_at=reply.created_at,
        ),
        usage=reply_usage,
    )
