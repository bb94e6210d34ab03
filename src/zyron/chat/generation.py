"""A reply is produced by a task of its own; HTTP responses only follow its events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from zyron.chat.progress import ProgressBatcher
from zyron.chat.reply_parts import ReplyParts
from zyron.chat.titles import TitleRequest, make_title
from zyron.chat.writer import ReplyTarget, ReplyWriter, WriterSettings
from zyron.db.models import Status
from zyron.db.types import utcnow
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import UpstreamError
from zyron.llm.base import (
    USAGE_KINDS,
    CacheTtl,
    Finished,
    PromptMessage,
    Provider,
    Reasoning,
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    TokenUsage,
)
from zyron.llm.prices import Prices, usd
from zyron.llm.tokens import TokenCounter
from zyron.ops import metrics
from zyron.ops.model_call import ModelCall
from zyron.sessions.repository import set_generated_title
from zyron.settings import Settings
from zyron.streams.events import StreamEvent, trim_delta

log = logging.getLogger("zyron.chat")

MAX_BACKOFF_SECONDS = 8.0
# Only for a prompt built without a token counter (tests, tools); errs high like the counter.
FALLBACK_CHARS_PER_TOKEN = 3.0

__all__ = ["Generation", "Generations", "Outcome", "PromptRequest", "ReplyTarget", "TitleRequest"]


@dataclass(frozen=True, slots=True)
class PromptRequest:
    """What goes to the model, and what the stream reports about it."""

    model: str  # the provider's name for the model
    system: str | None
    messages: Sequence[PromptMessage]
    max_tokens: int
    turns_sent: int = 0  # earlier turns in the prompt
    turns_omitted: int = 0  # earlier turns left out to fit the context window
    input_tokens: int = 0  # the prompt's size as counted before sending (for quotas)
    counter: TokenCounter | None = None  # calibrated by the usage the provider reports
    reasoning: Reasoning | None = None  # the thinking asked of the model, if any
    cache_ttl: CacheTtl | None = None  # prompt cache breakpoints, where the provider has them
    prices: Prices | None = None  # the model's; None: unpriced


@dataclass(slots=True)
class Outcome:
    """How a reply ended."""

    content: str
    status: Status
    model: str
    stop_reason: str | None = None
    parts: list[dict[str, Any]] = field(default_factory=list)  # as stored, signatures too
    usage: TokenUsage = field(default_factory=TokenUsage)  # as the provider reported it
    turns_sent: int = 0
    turns_omitted: int = 0
    error: UpstreamError | None = None
    # What counts against quotas: the provider's figures for a complete reply, an estimate
    # for one cut short after text, None when the model produced nothing.
    charged: TokenUsage | None = None
    # What `charged` cost, in nano-dollars (zyron.llm.prices); None for an unpriced model.
    cost: int | None = None


@dataclass(eq=False)
class Generation:
    """The events of one reply, kept so followers can replay them and then wait for more."""

    key: uuid.UUID
    created_at: datetime = field(default_factory=utcnow)
    events: list[StreamEvent] = field(default_factory=list)
    outcome: Outcome | None = None
    # Characters of reasoning and text sent so far: the position the next event's id counts from.
    position: int = 0
    cancel_requested: bool = False
    on_event: Callable[[StreamEvent], None] | None = None
    # Set while the session's title is being made: the stream stays open after `done` for
    # its `title` event (at most TITLE_WAIT_SECONDS).
    held: bool = False
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # One timer per reply wakes its followers when it is quiet, so they can send a ping: a
    # timeout per follower per event cost more than relaying the event (docs/benchmarks.md).
    _ticker: asyncio.TimerHandle | None = None
    _tick_every: float = math.inf  # half the shortest idle a follower asked for
    _ticks: int = 0  # how many times the reply was quiet for a whole idle interval
    _published: bool = False  # since the timer's last tick
    _quiet_ticks: int = 0

    @property
    def finished(self) -> bool:
        """Tell whether the reply has ended (done or error sent)."""
        return self.outcome is not None

    @property
    def closed(self) -> bool:
        """Tell whether the stream has ended: the reply, and the title if one was awaited."""
        return self.outcome is not None and not self.held

    def release(self) -> None:
        """End the stream after `done` (the title came, or waiting for it stopped)."""
        if self.held:
            self.held = False
            self._wake()

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Append an event (its id is its end position in the reply) and wake every follower."""
        if event == "delta" or event == "reasoning":
            self.position += len(data["text"])
            event_id = self.position
        elif event == "session":
            event_id = 0
        elif event == "title":  # after `done`: ids stay increasing for Last-Event-ID
            event_id = self.position + 2
        else:
            event_id = self.position + 1
        stream_event = StreamEvent(event_id, event, data)
        self.events.append(stream_event)
        self._published = True
        if self.on_event is not None:
            self.on_event(stream_event)
        self._wake()

    def finish(self, outcome: Outcome, event: str, data: dict[str, Any]) -> None:
        """Record the outcome and publish the last event."""
        self.outcome = outcome
        self.publish(event, data)

    async def follow(self, *, after: int = -1, idle: float) -> AsyncIterator[StreamEvent | None]:
        """Yield events with id > `after`, then live ones to the end; None when idle."""
        async for batch in self.batches(after=after, idle=idle):
            if batch is None:
                yield None
            else:
                for event in batch:
                    yield event

    async def batches(
        self, *, after: int = -1, idle: float
    ) -> AsyncIterator[list[StreamEvent] | None]:
        """Yield, at each wake-up, every event with id > `after` not yet yielded, as one list.

        A follower that falls behind gets what piled up in one piece, to send in one write;
        one that keeps up gets each event alone, at once. None: nothing came for `idle`
        seconds (up to one and a half; the reply's timer tells), time for a ping.
        """
        position = 0
        ticks = self._ticks
        self._arm(idle)
        while True:
            events = self.events
            if position < len(events):
                batch = [
                    trim_delta(event, after) for event in events[position:] if event.id > after
                ]
                position = len(events)
                if batch:
                    ticks = self._ticks
                    yield batch
                    continue
            if self.closed:
                return
            if ticks != self._ticks:
                ticks = self._ticks
                yield None
                continue
            await self._wakeup.wait()

    def _wake(self) -> None:
        # set() resolves every waiter's future; clearing at once leaves them woken.
        self._wakeup.set()
        self._wakeup.clear()
        if self.closed and self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def _arm(self, idle: float) -> None:
        """Make the reply's timer tick every half `idle` while it is open, or more often."""
        every = idle / 2
        if every >= self._tick_every or self.closed:
            return
        if self._ticker is not None:
            self._ticker.cancel()
        self._tick_every = every
        self._ticker = asyncio.get_running_loop().call_later(every, self._tick)

    def _tick(self) -> None:
        # Two ticks in a row with nothing published: quiet for an idle interval (up to one
        # and a half), so followers send a ping; a reply that streams sends none.
        self._ticker = None
        if not self.closed:
            self._ticker = asyncio.get_running_loop().call_later(self._tick_every, self._tick)
        if self._published:
            self._published = False
            self._quiet_ticks = 0
            return
        self._quiet_ticks += 1
        if self._quiet_ticks < 2:
            return
        self._quiet_ticks = 0
        self._ticks += 1
        self._wakeup.set()
        self._wakeup.clear()

    async def wait(self) -> Outcome:
        """Wait for the reply to end and return how it ended (not for the title)."""
        async for _ in self.follow(idle=3600):
            if self.outcome is not None:
                break
        assert self.outcome is not None
        return self.outcome


class Generations:
    """The replies being produced in this process, with what they need to run."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession] | None,
        mirror: Callable[[uuid.UUID, StreamEvent], None] | None = None,
    ) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._mirror = mirror
        self._tasks: dict[asyncio.Task[None], Generation] = {}
        self._live: dict[uuid.UUID, Generation] = {}
        self._owners: dict[uuid.UUID, uuid.UUID] = {}  # a signed-in user's reply -> the user
        self._finishing: set[asyncio.Task[None]] = set()
        self._titles: set[asyncio.Task[None]] = set()
        self._writer_settings = WriterSettings(
            flush_interval=settings.reply_flush_interval_seconds,
            flush_chars=settings.reply_flush_chars,
            lease_seconds=settings.reply_lease_seconds,
            heartbeat_seconds=settings.reply_heartbeat_seconds,
            writes_per_second=settings.reply_writes_per_second,
        )
        # One batcher for the process: every reply's progress in one statement per tick,
        # not a transaction per reply.
        self._progress = (
            ProgressBatcher(sessionmaker, self._writer_settings)
            if sessionmaker is not None
            else None
        )

    def create(
        self,
        key: uuid.UUID,
        session: dict[str, Any],
        created_at: datetime | None = None,
        *,
        resumable: bool = True,
    ) -> Generation:
        """Make a reply's event log, starting with `session`; resumable ones go to Redis too."""
        generation = Generation(key=key, created_at=created_at or utcnow())
        if self._mirror is not None and resumable:
            mirror = self._mirror
            # A `title` comes after `done`, the stream's end for Redis followers on other
            # replicas: they read the title from GET /sessions, and the finished stream keeps
            # its retention instead of being extended as if still live.
            generation.on_event = lambda event: (
                None if event.event == "title" else mirror(key, event)
            )
        generation.publish("session", session)
        return generation

    def live_keys(self) -> list[uuid.UUID]:
        """Return the message ids of the replies this process is producing."""
        return list(self._live)

    def get(self, key: uuid.UUID) -> Generation | None:
        """Return the live reply with this message id, if this process is producing it."""
        return self._live.get(key)

    def start(
        self,
        generation: Generation,
        *,
        provider: Provider,
        prompt: PromptRequest,
        target: ReplyTarget | None,
        title: TitleRequest | None = None,
        on_end: Callable[[Outcome | None], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Run the reply as a task that outlives the request that asked for it.

        With `title`, the session gets a generated title once the reply is complete, and the
        stream stays open after `done` for its `title` event. `on_end` (recording a guest's
        usage, giving back the concurrency slot) runs with the outcome just before the last
        event is sent, and again with None when the task ends: a task cancelled before it got
        that far still gives the slot back.
        """
        if title is not None and target is not None:
            generation.held = True
        job = self._produce(generation, provider, prompt, target, title, on_end)
        task = asyncio.create_task(job, name=f"generation-{generation.key}")
        self._tasks[task] = generation
        self._live[generation.key] = generation
        if target is not None:
            self._owners[generation.key] = target.user_id
        task.add_done_callback(self._forget)
        if on_end is not None:
            task.add_done_callback(lambda _: self._run_finishing(on_end(None)))

    def _run_finishing(self, job: Coroutine[Any, Any, None]) -> None:
        """Run `job` as a task that shutdown waits for."""
        task = asyncio.create_task(job)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    def _forget(self, task: asyncio.Task[None]) -> None:
        generation = self._tasks.pop(task)
        self._live.pop(generation.key, None)
        self._owners.pop(generation.key, None)

    def cancel(self, key: uuid.UUID) -> bool:
        """Stop producing a reply (its text is kept, status cancelled); False if not here."""
        generation = self._live.get(key)
        if generation is None or generation.finished or generation.cancel_requested:
            return generation is not None
        generation.cancel_requested = True
        for task, running in self._tasks.items():
            if running is generation:
                task.cancel()
        return True

    def cancel_user(self, user_id: uuid.UUID) -> int:
        """Cancel every reply this process produces for the user (their account is gone)."""
        keys = [key for key, owner in self._owners.items() if owner == user_id]
        return sum(self.cancel(key) for key in keys)

    def owners(self) -> set[uuid.UUID]:
        """The signed-in users this process produces replies for now."""
        return set(self._owners.values())

    def cancel_here(self, key: uuid.UUID) -> None:
        """Cancel a reply if this process produces it (a cancel broadcast from another replica)."""
        self.cancel(key)

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
            await asyncio.wait(list(self._finishing), timeout=15)
        # A title is a nicety: not worth holding up a shutdown.
        for task in list(self._titles):
            task.cancel()
        if self._titles:
            await asyncio.wait(list(self._titles), timeout=5)

    async def _produce(
        self,
        generation: Generation,
        provider: Provider,
        prompt: PromptRequest,
        target: ReplyTarget | None,
        title: TitleRequest | None,
        on_end: Callable[[Outcome | None], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Call the model and publish its text; then save the reply and end the stream."""
        try:
            await self._reply(generation, provider, prompt, target, on_end)
        finally:
            outcome = generation.outcome
            if (
                generation.held
                and title is not None
                and target is not None
                and outcome is not None
                and outcome.status == Status.COMPLETE
                and outcome.error is None  # saved, too: not a persist_failed
            ):
                task = asyncio.create_task(self._title(generation, target, title, outcome.content))
                self._titles.add(task)
                task.add_done_callback(self._titles.discard)
            else:
                generation.release()

    async def _title(
        self, generation: Generation, target: ReplyTarget, request: TitleRequest, reply: str
    ) -> None:
        """Make and save the session's title; send it if the stream is still open."""
        settings = self._settings
        # Clients are not kept waiting after `done` for long: the title is still made and
        # saved after the stream ends; GET /sessions shows it.
        give_up = asyncio.get_running_loop().call_later(
            settings.title_wait_seconds, generation.release
        )
        try:
            title = await make_title(request, reply, within=settings.title_timeout_seconds)
            if self._sessionmaker is None:
                return
            async with unit_of_work(
                self._sessionmaker, role="authenticated", claims=target.claims
            ) as db:
                saved = await set_generated_title(db, target.user_id, target.session_id, title)
            if saved and generation.held:
                generation.publish("title", {"session_id": str(target.session_id), "title": title})
        except Exception as exc:  # a failed title leaves the placeholder; the next reply retries
            log.warning("title failed", extra={"reason": type(exc).__name__})
        finally:
            give_up.cancel()
            generation.release()

    async def _reply(
        self,
        generation: Generation,
        provider: Provider,
        prompt: PromptRequest,
        target: ReplyTarget | None,
        on_end: Callable[[Outcome | None], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Stream the reply, save it, and send its last event."""
        # The provider instance, not its kind: a signature is good only where it was made.
        parts = ReplyParts(provider.name)
        writer = self._writer(generation, target, parts)

        def on_text(text: str) -> None:
            if "\x00" in text:
                text = _without_nul(text)
            parts.add_text(text)
            generation.publish("delta", {"text": text})
            if writer is not None:
                writer.changed()

        def on_reasoning(event: ReasoningDelta | ReasoningEnd) -> None:
            if isinstance(event, ReasoningDelta):
                text = _without_nul(event.text) if "\x00" in event.text else event.text
                parts.add_reasoning(text)
                generation.publish("reasoning", {"text": text})
            else:  # kept for the next turn, never sent to the client
                parts.end_reasoning(signature=event.signature, redacted=event.redacted)
            if writer is not None:
                writer.changed()

        outcome = Outcome(content="", status=Status.ERROR, model=prompt.model)
        shutting_down = False
        try:
            finished = await self._stream_with_retries(
                generation, provider, prompt, on_text, on_reasoning, on_retry=parts.clear
            )
            outcome = Outcome(
                content="",
                status=Status.COMPLETE,
                model=finished.model,
                stop_reason=finished.stop_reason,
                usage=finished.usage,
            )
            provider.status.succeeded()
            if prompt.counter is not None and not _has_attachments(prompt):
                # Files are counted by formula: only prompts of text calibrate the ratio.
                # The whole prompt, cached or not: caching changes its price, not its size.
                prompt.counter.observe(
                    _prompt_chars(prompt), finished.usage.prompt_tokens, _turns(prompt)
                )
        except UpstreamError as exc:
            outcome.error = exc
            provider.status.failed(exc.code)
            log.warning("upstream failed", extra={"code": exc.code, "model": prompt.model})
        except asyncio.CancelledError:
            if generation.cancel_requested:
                # Our own cancel (POST /chat/{id}/cancel): a normal end, not a failure.
                _uncancel()
                outcome = Outcome(
                    content="", status=Status.CANCELLED, model=prompt.model, stop_reason="cancelled"
                )
            else:
                shutting_down = True
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
            outcome.status = Status.INTERRUPTED if parts.length else Status.ERROR
        outcome.content = parts.text
        outcome.parts = parts.parts()
        outcome.turns_sent, outcome.turns_omitted = prompt.turns_sent, prompt.turns_omitted
        outcome.charged = _charge(prompt, outcome)
        if prompt.prices is not None:
            outcome.cost = prompt.prices.cost(outcome.charged) if outcome.charged else 0
        metrics.count_reply(
            provider.name, prompt.model, outcome.status, outcome.charged, outcome.cost
        )
        # Saving and ending the stream must happen even if this task is cancelled meanwhile:
        # they run as a task of their own, tracked so that shutdown waits for it.
        finish = asyncio.create_task(_finish(generation, writer, target, outcome, on_end))
        self._finishing.add(finish)
        finish.add_done_callback(self._finishing.discard)
        try:
            await asyncio.shield(finish)
        except asyncio.CancelledError:
            if generation.cancel_requested:
                _uncancel()
            else:
                shutting_down = True
        if shutting_down:
            raise asyncio.CancelledError

    def _writer(
        self, generation: Generation, target: ReplyTarget | None, parts: ReplyParts
    ) -> ReplyWriter | None:
        if target is None or self._sessionmaker is None:
            return None
        writer = ReplyWriter(
            self._sessionmaker,
            target,
            parts,
            self._writer_settings,
            on_cancel_requested=lambda: self.cancel(generation.key),
            batcher=self._progress,
        )
        writer.start()
        return writer

    async def _stream_with_retries(
        self,
        generation: Generation,
        provider: Provider,
        prompt: PromptRequest,
        on_text: Callable[[str], None],
        on_reasoning: Callable[[ReasoningDelta | ReasoningEnd], None],
        on_retry: Callable[[], None],
    ) -> Finished:
        """Stream once; before any output, retry retryable failures with backoff and jitter."""
        settings = self._settings
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        while True:
            try:
                return await self._stream_once(provider, prompt, on_text, on_reasoning)
            except UpstreamError as exc:
                if generation.position > 0 or not exc.retryable:
                    raise  # after output, a retry would repeat what the user already saw
                delay = _backoff(attempt, settings.upstream_retry_base_seconds, exc.retry_after)
                spent = loop.time() - started
                if (
                    attempt >= settings.upstream_max_retries
                    or spent + delay > settings.upstream_retry_budget_seconds
                ):
                    raise
                attempt += 1
                metrics.upstream_retries.labels(provider.name, exc.code).inc()
                log.info(
                    "retrying upstream",
                    extra={"code": exc.code, "attempt": attempt, "delay_s": round(delay, 2)},
                )
                await asyncio.sleep(delay)
                on_retry()  # a redacted block the failed attempt sent is not this reply's

    async def _stream_once(
        self,
        provider: Provider,
        prompt: PromptRequest,
        on_text: Callable[[str], None],
        on_reasoning: Callable[[ReasoningDelta | ReasoningEnd], None],
    ) -> Finished:
        """One upstream call, bounded by the first-token and between-token timeouts."""
        settings = self._settings
        loop = asyncio.get_running_loop()
        finished: Finished | None = None
        got_text = False
        idle = settings.upstream_idle_timeout_seconds
        # Moving the deadline cancels and re-creates a timer: do it at most every
        # `slack` seconds, not on every token (profiled at ~3% of a streaming reply's CPU).
        # The silence allowed is then between `idle - slack` and `idle`.
        slack = min(1.0, idle / 10)
        moved_at = -slack
        call = ModelCall(provider.name, provider.kind, prompt.model, prompt.max_tokens)
        try:
            async with asyncio.timeout(settings.upstream_first_token_timeout_seconds) as deadline:
                async for event in provider.stream(
                    model=prompt.model,
                    system=prompt.system,
                    messages=prompt.messages,
                    max_tokens=prompt.max_tokens,
                    reasoning=prompt.reasoning,
                    cache_ttl=prompt.cache_ttl,
                ):
                    if isinstance(event, TextDelta):
                        on_text(event.text)
                    elif isinstance(event, Finished):
                        finished = event
                        continue
                    else:
                        on_reasoning(event)
                    if not got_text:
                        got_text = True
                        call.first_chunk()
                    now = loop.time()
                    if now - moved_at >= slack:
                        deadline.reschedule(now + idle)
                        moved_at = now
        except TimeoutError as exc:
            which = "between tokens" if got_text else "before the first token"
            call.failed("upstream_timeout")
            raise UpstreamError(
                "upstream_timeout",
                f"The model provider went silent {which}.",
                status_code=504,
                retryable=True,
            ) from exc
        except UpstreamError as exc:
            call.failed(exc.code)
            raise
        except asyncio.CancelledError:
            call.failed("cancelled", upstream=False)
            raise
        except Exception:
            call.failed("internal_error", upstream=False)
            raise
        if finished is None:
            call.failed("upstream_unavailable")
            raise UpstreamError(
                "upstream_unavailable",
                "The model provider ended the reply without finishing it.",
                status_code=502,
                retryable=True,
            )
        call.finished(finished)
        return finished


def _without_nul(text: str) -> str:
    """Replace NUL, which Postgres text refuses (and SQLite's JSON cuts at), keeping positions.

    One reply's NUL would otherwise fail its saves, and the batched progress write of every
    reply in the process with it; U+FFFD is one character too, so event ids do not move.
    """
    return text.replace("\x00", "\ufffd")


def _backoff(attempt: int, base: float, retry_after: str | None) -> float:
    """Exponential backoff with jitter, never sooner than the upstream's retry-after."""
    jitter = random.uniform(0.5, 1.0)  # noqa: S311  # spreads retries, needs no secrecy
    delay = float(min(MAX_BACKOFF_SECONDS, base * 2**attempt) * jitter)
    if retry_after:
        # An HTTP date instead of seconds: the exponential delay stands.
        with contextlib.suppress(ValueError):
            delay = max(delay, float(retry_after))
    return delay


def _charge(prompt: PromptRequest, outcome: Outcome) -> TokenUsage | None:
    """Return the tokens a reply counts against quotas, estimated for one cut short.

    A provider reports usage only at the end of a reply, but one cancelled or broken after
    its first words still cost the prompt and those words: left uncounted, cancelling every
    reply just before its end would pass any quota.
    """
    complete = outcome.status == Status.COMPLETE
    # Thinking is billed as output too: a reply cut short mid-thought still cost it.
    produced = "".join(part.get("text", "") for part in outcome.parts) or outcome.content
    if not complete and not produced:
        return None  # nothing generated: providers do not bill a request that failed
    # A complete reply's figures, where the provider reported them (an OpenAI-compatible
    # server may send none: then it is counted like one cut short).
    if complete and outcome.usage.prompt_tokens and outcome.usage.output_tokens:
        return outcome.usage
    # Cut short (or a server that reported nothing): the prompt as counted before sending,
    # and the words produced, counted here; what the provider did report stays.
    reported = outcome.usage if complete else TokenUsage()
    reply_tokens = reported.output_tokens
    if not reply_tokens and produced:
        if prompt.counter is not None:
            reply_tokens = prompt.counter.count(produced)
        else:
            reply_tokens = math.ceil(len(produced) / FALLBACK_CHARS_PER_TOKEN)
    if reported.prompt_tokens:
        return replace(reported, output_tokens=int(reply_tokens))
    return replace(reported, input_tokens=prompt.input_tokens, output_tokens=int(reply_tokens))


def _prompt_chars(prompt: PromptRequest) -> int:
    return len(prompt.system or "") + sum(len(m["content"]) for m in prompt.messages)


def _has_attachments(prompt: PromptRequest) -> bool:
    return any(m.get("attachments") for m in prompt.messages)


def _turns(prompt: PromptRequest) -> int:
    return len(prompt.messages) + (1 if prompt.system else 0)


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _finish(
    generation: Generation,
    writer: ReplyWriter | None,
    target: ReplyTarget | None,
    outcome: Outcome,
    on_end: Callable[[Outcome | None], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Save the reply's final state, then send the stream's last event."""
    saved = True
    try:
        if writer is not None:
            complete = outcome.status == Status.COMPLETE
            saved = await writer.close(
                charge=outcome.charged,
                cost=outcome.cost,
                content=outcome.content,
                parts=outcome.parts,
                status=outcome.status,
                model=outcome.model,
                stop_reason=outcome.stop_reason,
                # The row's usage columns are the API's kinds; null for a reply not complete.
                **(outcome.usage.public() if complete else dict.fromkeys(USAGE_KINDS)),
            )
    finally:
        if not saved and outcome.error is None:
            # The client has the text, but must not believe it is stored.
            outcome.error = UpstreamError(
                "persist_failed",
                "The reply could not be saved; the database did not accept it.",
                status_code=503,
                retryable=True,
            )
        try:
            # Before `done`: a client that sends its next message on `done` must find its
            # concurrency slot free already.
            if on_end is not None:
                await on_end(outcome)
        finally:
            _end(generation, target, outcome)


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
                "usage": outcome.usage.public(),
                "cost_usd": usd(outcome.cost),
                # How much of the conversation the model saw (the rest did not fit its window).
                "turns_sent": outcome.turns_sent,
                "turns_omitted": outcome.turns_omitted,
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
