"""The generation task: how a reply ends when the server shuts down around it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support import make_settings
from zyron.chat.generation import Generation, Generations, Outcome, PromptRequest, ReplyTarget
from zyron.chat.writer import ReplyWriter
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.migrate import upgrade
from zyron.db.models import ChatSession, Message, Role, Status, User
from zyron.db.types import utcnow
from zyron.llm.base import (
    CacheTtl,
    Finished,
    PromptMessage,
    ProviderEvent,
    ProviderStatus,
    Reasoning,
    TextDelta,
    TokenUsage,
)

PROMPT = PromptRequest(
    model="m", system=None, messages=[{"role": "user", "content": "hi"}], max_tokens=10
)


class SlowProvider:
    """Sends `chunks` text deltas `delay` seconds apart, then finishes."""

    name = "slow"
    kind: Literal["anthropic"] = "anthropic"

    def __init__(self, chunks: int, delay: float) -> None:
        self.chunks = chunks
        self.delay = delay
        self.status = ProviderStatus()

    async def stream(
        self,
        *,
        model: str,
        system: str | None,
        messages: Sequence[PromptMessage],
        max_tokens: int,
        reasoning: Reasoning | None = None,
        cache_ttl: CacheTtl | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        """Yield the deltas slowly."""
        for index in range(self.chunks):
            await asyncio.sleep(self.delay)
            yield TextDelta(f"t{index} ")
        yield Finished(
            stop_reason="end_turn", usage=TokenUsage(input_tokens=1, output_tokens=1), model=model
        )

    def count_tokens(self, text: str) -> int | None:
        """No tokenizer."""
        return None

    def health(self) -> dict[str, Any]:
        """Nothing to report."""
        return {}

    async def aclose(self) -> None:
        """Nothing to close."""


async def _setup(
    tmp_path: Path,
) -> tuple[Generation, ReplyTarget, AsyncEngine, async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    await upgrade(engine)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as db, db.begin():
        user = User(email="g@example.com", created_at=utcnow())
        db.add(user)
        await db.flush()
        chat = ChatSession(user_id=user.id, title="t", created_at=utcnow(), updated_at=utcnow())
        db.add(chat)
        await db.flush()
        reply = Message(
            session_id=chat.id,
            user_id=user.id,
            role=Role.ASSISTANT,
            content="",
            status=Status.STREAMING,
            created_at=utcnow(),
        )
        db.add(reply)
    target = ReplyTarget(user_id=user.id, session_id=chat.id, message_id=reply.id, claims={})
    return Generation(key=reply.id), target, engine, sessionmaker


def test_shutdown_mid_reply_saves_the_text_and_ends_the_stream(tmp_path: Path) -> None:
    """Cancelled by shutdown: the reply keeps its text as interrupted; followers get an error."""

    async def scenario() -> tuple[str, str, str, str]:
        generation, target, engine, sessionmaker = await _setup(tmp_path)
        generations = Generations(make_settings(tmp_path), sessionmaker)
        generations.start(
            generation,
            provider=SlowProvider(chunks=100, delay=0.02),
            prompt=PROMPT,
            target=target,
        )
        await asyncio.sleep(0.15)
        await generations.shutdown(grace_seconds=0.01)
        outcome = await asyncio.wait_for(generation.wait(), timeout=5)
        async with sessionmaker() as db:
            row = (
                await db.execute(select(Message).where(Message.id == target.message_id))
            ).scalar_one()
        await engine.dispose()
        return row.status, row.content, generation.events[-1].event, outcome.status

    status, content, last_event, outcome_status = asyncio.run(scenario())
    assert status == Status.INTERRUPTED
    assert content.startswith("t0 t1 ")
    assert last_event == "error"
    assert outcome_status == Status.INTERRUPTED


def test_cancel_during_the_final_save_still_saves_and_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation that lands while the reply is being saved loses neither."""
    original_close = ReplyWriter.close
    saving = asyncio.Event()

    async def slow_close(
        self: ReplyWriter,
        *,
        charge: TokenUsage | None = None,
        cost: int | None = None,
        **final: object,
    ) -> bool:
        saving.set()
        await asyncio.sleep(0.3)
        return await original_close(self, charge=charge, cost=cost, **final)

    monkeypatch.setattr(ReplyWriter, "close", slow_close)

    async def scenario() -> tuple[str, str, bool]:
        generation, target, engine, sessionmaker = await _setup(tmp_path)
        generations = Generations(make_settings(tmp_path), sessionmaker)
        generations.start(
            generation,
            provider=SlowProvider(chunks=2, delay=0),
            prompt=PROMPT,
            target=target,
        )
        await asyncio.wait_for(saving.wait(), timeout=5)
        await generations.shutdown(grace_seconds=0)
        await asyncio.wait_for(generation.wait(), timeout=5)
        async with sessionmaker() as db:
            row = (
                await db.execute(select(Message).where(Message.id == target.message_id))
            ).scalar_one()
        await engine.dispose()
        return row.status, row.content, generation.finished

    status, content, finished = asyncio.run(scenario())
    assert status == Status.COMPLETE
    assert content == "t0 t1 "
    assert finished


def test_guest_reply_needs_no_database(tmp_path: Path) -> None:
    """A guest's generation ends with done and touches no database."""

    async def scenario() -> list[str]:
        generation = Generation(key=uuid.uuid4())
        generations = Generations(make_settings(tmp_path), None)
        generations.start(
            generation,
            provider=SlowProvider(chunks=3, delay=0),
            prompt=PROMPT,
            target=None,
        )
        await asyncio.wait_for(generation.wait(), timeout=5)
        return [event.event for event in generation.events]

    assert asyncio.run(scenario()) == ["delta", "delta", "delta", "done"]


def test_failed_save_ends_the_stream_with_persist_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the reply cannot be written, the client is told instead of getting `done`."""

    async def broken_close(self: ReplyWriter, **final: object) -> bool:
        return False

    monkeypatch.setattr(ReplyWriter, "close", broken_close)

    async def scenario() -> dict[str, object]:
        generation, target, engine, sessionmaker = await _setup(tmp_path)
        generations = Generations(make_settings(tmp_path), sessionmaker)
        generations.start(
            generation,
            provider=SlowProvider(chunks=1, delay=0),
            prompt=PROMPT,
            target=target,
        )
        await asyncio.wait_for(generation.wait(), timeout=5)
        await engine.dispose()
        last = generation.events[-1]
        return {"event": last.event, **last.data}

    last = asyncio.run(scenario())
    assert last["event"] == "error"
    assert last["error"] == "persist_failed"
    assert last["retryable"] is True


@pytest.mark.parametrize(
    ("status", "content", "reported", "charged"),
    [
        # Complete, with the provider's figures: those.
        (Status.COMPLETE, "four words of text", (120, 7), (120, 7)),
        # Cache reads and writes are the prompt too: kept, by kind.
        (Status.COMPLETE, "text", (3, 7, 900, 100), (3, 7, 900, 100)),
        # A prompt reported but no output: the output counted here.
        (Status.COMPLETE, "x" * 30, (120, 0), (120, 10)),
        # Complete, but an OpenAI-compatible server sent no usage: the prompt as counted, and
        # the text at 3 characters a token (no counter here).
        (Status.COMPLETE, "x" * 30, (0, 0), (500, 10)),
        # Cut short after text: the same estimate.
        (Status.CANCELLED, "x" * 30, (0, 0), (500, 10)),
        (Status.INTERRUPTED, "x" * 31, (0, 0), (500, 11)),
        # Nothing generated: nothing charged.
        (Status.ERROR, "", (0, 0), None),
        (Status.CANCELLED, "", (0, 0), None),
    ],
)
def test_what_a_reply_counts_against_quotas(
    status: Status, content: str, reported: tuple[int, ...], charged: tuple[int, ...] | None
) -> None:
    """Reported usage when there is some; an estimate otherwise, never nothing for text."""
    from zyron.chat.generation import Outcome, _charge

    prompt = PromptRequest(model="m", system=None, messages=[], max_tokens=10, input_tokens=500)
    outcome = Outcome(
        content=content,
        status=status,
        model="m",
        usage=_usage(*reported),
    )
    assert _charge(prompt, outcome) == (_usage(*charged) if charged else None)


def _usage(prompt: int, output: int, read: int = 0, written: int = 0) -> TokenUsage:
    return TokenUsage(
        input_tokens=prompt,
        output_tokens=output,
        cache_read_input_tokens=read,
        cache_creation_input_tokens=written,
    )


def test_a_follower_behind_gets_what_piled_up_in_one_batch() -> None:
    """Events published while a follower was busy come as one list; a live one comes alone."""

    async def run() -> None:
        generation = Generation(key=uuid.uuid4())
        generation.publish("session", {"saved": False})
        for word in ("a", "b", "c"):
            generation.publish("delta", {"text": word})
        batches = generation.batches(after=1, idle=60)
        first = await anext(batches)
        assert first is not None
        # The first delta was cut to what follows position 1 (nothing): it is left out.
        assert [(e.id, e.data["text"]) for e in first] == [(2, "b"), (3, "c")]
        waiting = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0)
        generation.publish("delta", {"text": "d"})
        live = await waiting
        assert live is not None
        assert [e.data["text"] for e in live] == ["d"]
        generation.finish(Outcome(content="abcd", status=Status.COMPLETE, model="m"), "done", {})
        last = await anext(batches)
        assert last is not None
        assert [e.event for e in last] == ["done"]
        with pytest.raises(StopAsyncIteration):
            await anext(batches)
        assert generation._ticker is None  # a finished reply keeps no timer

    asyncio.run(run())


def test_a_quiet_reply_wakes_its_followers_for_a_ping() -> None:
    """With nothing to send for `idle` seconds, every follower gets None (a ping), and again."""

    async def run() -> None:
        generation = Generation(key=uuid.uuid4())
        generation.publish("session", {"saved": False})
        one = generation.batches(idle=0.05)
        two = generation.follow(idle=0.05)
        assert await anext(one) is not None
        assert await anext(two) is not None
        assert await asyncio.wait_for(anext(one), 1) is None
        assert await asyncio.wait_for(anext(two), 1) is None
        assert await asyncio.wait_for(anext(one), 1) is None
        generation.publish("delta", {"text": "x"})
        after_ping = await asyncio.wait_for(anext(one), 1)
        assert after_ping is not None
        assert after_ping[0].data == {"text": "x"}
        # While it streams, a reply sends no ping, however long it goes on.
        for n in range(6):
            await asyncio.sleep(0.02)
            generation.publish("delta", {"text": str(n)})
            batch = await asyncio.wait_for(anext(one), 1)
            assert batch is not None

    asyncio.run(run())
