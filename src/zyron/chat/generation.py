"""A reply is produced by a task of its own; HTTP responses only follow its events."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from zyron.db.models import Status
from zyron.db.types import utcnow
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import UpstreamError
from zyron.llm.base import Finished, PromptMessage, Provider, TextDelta
from zyron.sessions.repository import finish_reply

log = logging.getLogger("zyron.chat")


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One server-sent event; `id` counts from 0 within a reply."""

    id: int
    event: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        """Render as SSE wire format."""
        payload = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)
        return f"id: {self.id}\nevent: {self.event}\ndata: {payload}\n\n".encode()


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a signed-in user's reply is saved."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    message_id: uuid.UUID
    claims: dict[str, Any] = field(repr=False)  # the user's verified claims, for RLS


@dataclass(frozen=True, slots=True)
class PromptRequest:
    """What goes to the model."""

    model: str
    system: str | None
    messages: Sequence[PromptMessage]
    max_tokens: int


@dataclass(slots=True)
class Outcome:
    """How a reply ended."""

    content: str
    status: Status
    model: str
    stop_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    error: UpstreamError | None = None


@dataclass(eq=False)
class Generation:
    """The events of one reply, kept so followers can replay them and then wait for more."""

    key: uuid.UUID
    created_at: datetime = field(default_factory=utcnow)
    events: list[StreamEvent] = field(default_factory=list)
    outcome: Outcome | None = None
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def finished(self) -> bool:
        """Tell whether the reply has ended (done or error sent)."""
        return self.outcome is not None

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Append an event and wake every follower."""
        self.events.append(StreamEvent(len(self.events), event, data))
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()

    def finish(self, outcome: Outcome, event: str, data: dict[str, Any]) -> None:
        """Record the outcome and publish the last event."""
        self.outcome = outcome
        self.publish(event, data)

    async def follow(self, *, after: int = -1, idle: float) -> AsyncIterator[StreamEvent | None]:
        """Yield events after `after`, then live ones until the end; None after `idle` seconds."""
        position = after + 1
        while True:
            while position < len(self.events):
                yield self.events[position]
                position += 1
            if self.finished:
                return
            wakeup = self._wakeup
            try:
                await asyncio.wait_for(wakeup.wait(), timeout=idle)
            except TimeoutError:
                yield None

    async def wait(self) -> Outcome:
        """Wait for the reply to end and return how it ended."""
        async for _ in self.follow(idle=3600):
            pass
        assert self.outcome is not None
        return self.outcome


class Generations:
    """The replies being produced in this process."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[None], Generation] = {}
        self._finishing: set[asyncio.Task[None]] = set()

    def start(
        self,
        generation: Generation,
        *,
        provider: Provider,
        prompt: PromptRequest,
        target: ReplyTarget | None,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """Run the reply as a task that outlives the request that asked for it."""
        job = self._produce(generation, provider, prompt, target, sessionmaker)
        task = asyncio.create_task(job, name=f"generation-{generation.key}")
        self._tasks[task] = generation
        task.add_done_callback(self._tasks.pop)

    @property
    def running(self) -> int:
        """Count the replies in progress."""
        return len(self._tasks)

    async def shutdown(self, grace_seconds: float) -> None:
        """Let running replies finish for a while, then cancel the rest (saved as interrupted)."""
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        # Final saves run shielded from cancellation: wait for them before the engine goes.
        if self._finishing:
            await asyncio.wait(list(self._finishing), timeout=10)

    async def _produce(
        self,
        generation: Generation,
        provider: Provider,
        prompt: PromptRequest,
        target: ReplyTarget | None,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """Call the model and publish its text; then save the reply and end the stream."""
        parts: list[str] = []
        outcome = Outcome(content="", status=Status.ERROR, model=prompt.model)
        cancelled = False
        try:
            async for event in provider.stream(
                model=prompt.model,
                system=prompt.system,
                messages=prompt.messages,
                max_tokens=prompt.max_tokens,
            ):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                    generation.publish("delta", {"text": event.text})
                elif isinstance(event, Finished):
                    outcome = Outcome(
                        content="",
                        status=Status.COMPLETE,
                        model=event.model,
                        stop_reason=event.stop_reason,
                        input_tokens=event.input_tokens,
                        output_tokens=event.output_tokens,
                    )
            if outcome.status != Status.COMPLETE:
                raise UpstreamError(
                    "upstream_unavailable",
                    "The model provider ended the reply without finishing it.",
                    status_code=502,
                    retryable=True,
                )
        except UpstreamError as exc:
            outcome.error = exc
            log.warning("upstream failed", extra={"code": exc.code, "model": prompt.model})
        except asyncio.CancelledError:
            cancelled = True
            outcome.error = UpstreamError(
                "server_shutdown",
                "The server shut down before the reply was complete; the text so far is saved.",
                status_code=503,
                retryable=True,
            )
        except Exception:
            log.exception("generation failed", extra={"model": prompt.model})
            outcome.error = UpstreamError(
                "internal_error",
                "The reply failed inside the server; it was logged.",
                status_code=500,
                retryable=True,
            )
        if outcome.error is not None:
            outcome.status = Status.INTERRUPTED if parts else Status.ERROR
        outcome.content = "".join(parts)
        # Saving and ending the stream must happen even if this task is cancelled meanwhile:
        # they run as a task of their own, tracked so that shutdown waits for it.
        finish = asyncio.create_task(_finish(generation, sessionmaker, target, outcome))
        self._finishing.add(finish)
        finish.add_done_callback(self._finishing.discard)
        try:
            await asyncio.shield(finish)
        except asyncio.CancelledError:
            cancelled = True
        if cancelled:
            raise asyncio.CancelledError


async def _finish(
    generation: Generation,
    sessionmaker: async_sessionmaker[AsyncSession],
    target: ReplyTarget | None,
    outcome: Outcome,
) -> None:
    """Save the reply's final state, then send the stream's last event."""
    saved = False
    try:
        saved = await _save(sessionmaker, target, outcome)
    finally:
        if not saved and outcome.error is None:
            # The client has the text, but must not believe it is stored.
            outcome.error = UpstreamError(
                "persist_failed",
                "The reply could not be saved; the database did not accept it.",
                status_code=503,
                retryable=True,
            )
        _end(generation, target, outcome)


async def _save(
    sessionmaker: async_sessionmaker[AsyncSession], target: ReplyTarget | None, outcome: Outcome
) -> bool:
    """Write the reply's final state (guests' replies are not saved); False if that failed."""
    if target is None:
        return True
    try:
        async with unit_of_work(sessionmaker, role="authenticated", claims=target.claims) as db:
            await finish_reply(
                db,
                target.user_id,
                target.message_id,
                content=outcome.content,
                status=outcome.status,
                model=outcome.model,
                stop_reason=outcome.stop_reason,
                input_tokens=outcome.input_tokens if outcome.status == Status.COMPLETE else None,
                output_tokens=outcome.output_tokens if outcome.status == Status.COMPLETE else None,
            )
    except Exception:
        log.exception("saving the reply failed", extra={"message_id": str(target.message_id)})
        return False
    return True


def _end(generation: Generation, target: ReplyTarget | None, outcome: Outcome) -> None:
    message_id = str(target.message_id) if target else None
    if outcome.error is None:
        generation.finish(
            outcome,
            "done",
            {
                "message_id": message_id,
                "stop_reason": outcome.stop_reason,
                "model": outcome.model,
                "usage": {
                    "input_tokens": outcome.input_tokens,
                    "output_tokens": outcome.output_tokens,
                },
            },
        )
        return
    generation.finish(
        outcome,
        "error",
        {
            "error": outcome.error.code,
            "detail": outcome.error.detail,
            "retryable": outcome.error.retryable,
            "message_id": message_id,
        },
    )
