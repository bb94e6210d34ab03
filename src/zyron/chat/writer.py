"""Write a reply to its row while it streams: batched, with a lease that says it is alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from zyron.chat.reply_parts import ReplyParts
from zyron.db.models import Message, Status
from zyron.db.types import utcnow
from zyron.db.unit_of_work import unit_of_work
from zyron.limits import usage
from zyron.llm.base import TokenUsage

log = logging.getLogger("zyron.chat.writer")

FINAL_WRITE_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class WriterSettings:
    """How often the reply's row is written."""

    flush_interval: float
    flush_chars: int
    lease_seconds: float
    heartbeat_seconds: float


class FlushPacer:
    """Spread one process's progress writes so together they stay within a rate.

    Each streaming reply writes its row every `base` seconds; with many replies at once that
    is more transactions than the pool and the database take, and the user's own requests
    (the first token waits for one) queue behind them. Past `writes_per_second` in all, every
    reply writes less often instead, never less often than a third of its lease.
    """

    def __init__(self, base: float, writes_per_second: float, lease_seconds: float) -> None:
        self.base = base
        self.writes_per_second = writes_per_second
        self.longest = max(base, lease_seconds / 3)
        self.active = 0

    def interval(self) -> float:
        """Return how long each reply should wait between progress writes now."""
        return min(self.longest, max(self.base, self.active / self.writes_per_second))

    @property
    def throttled(self) -> bool:
        """Tell whether replies are writing less often than `base`."""
        return self.interval() > self.base


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a signed-in user's reply is saved."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    message_id: uuid.UUID
    claims: dict[str, Any]  # the user's verified claims: writes run under their RLS


class ReplyWriter:
    """Keep the row's text (and reasoning) at most one batch behind the stream, and its lease fresh.

    Writes go out when `flush_chars` characters are pending or `flush_interval` has passed,
    never per token; with nothing to write, a heartbeat renews the lease. Each write reads
    back `cancel_requested_at`, so a cancel sent to any replica reaches the one producing.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        target: ReplyTarget,
        parts: ReplyParts,
        settings: WriterSettings,
        on_cancel_requested: Callable[[], object],
        pacer: FlushPacer | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._pacer = pacer or FlushPacer(
            settings.flush_interval, float("inf"), settings.lease_seconds
        )
        self._target = target
        self._settings = settings
        self._on_cancel = on_cancel_requested
        self._parts = parts  # the generation appends to it; this writes what it holds
        self._written = 0  # the position written last
        self._last_seen = 0  # the position at the previous change
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background loop."""
        self._pacer.active += 1
        self._task = asyncio.create_task(self._run(), name=f"writer-{self._target.message_id}")
        self._task.add_done_callback(self._stopped)

    def _stopped(self, _: asyncio.Task[None]) -> None:
        self._pacer.active -= 1

    @property
    def _length(self) -> int:
        return self._parts.length

    def changed(self) -> None:
        """Note that the reply's parts grew; never waits for the database."""
        # The first output after a write starts the flush interval; enough of it ends the
        # interval early, unless the process is already writing as much as it may.
        if not self._wake.is_set() and (
            self._written == self._last_seen
            or (
                self._length - self._written >= self._settings.flush_chars
                and not self._pacer.throttled
            )
        ):
            self._wake.set()
        self._last_seen = self._length

    async def _run(self) -> None:
        settings = self._settings
        while not self._stopping:
            if self._length == self._written:  # idle: wait for text, or renew the lease
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=settings.heartbeat_seconds)
                self._wake.clear()
            if self._stopping:
                return  # close() writes the final state itself
            pending = self._length - self._written
            if pending > 0 and (pending < settings.flush_chars or self._pacer.throttled):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._pacer.interval())
                self._wake.clear()
            if self._stopping:
                return
            try:
                await self._write_progress()
            except Exception as exc:  # the next round retries; the final write settles it
                log.warning(
                    "reply progress not saved",
                    extra={"message_id": str(self._target.message_id), "reason": str(exc)},
                )
                await asyncio.sleep(settings.flush_interval)  # never a tight retry loop

    async def _write_progress(self) -> None:
        length = self._length
        lease = utcnow() + timedelta(seconds=self._settings.lease_seconds)
        async with unit_of_work(
            self._sessionmaker, role="authenticated", claims=self._target.claims
        ) as db:
            values: dict[str, Any] = {"lease_expires_at": lease}
            if length > self._written:
                values["content"] = self._parts.text
                # A text-only reply keeps `parts` empty until its final save: readers take
                # its text from `content`, and every write stays one column.
                if self._parts.has_reasoning:
                    values["parts"] = self._parts.parts()
            result = await db.execute(
                update(Message)
                .where(
                    Message.id == self._target.message_id,
                    Message.user_id == self._target.user_id,
                    Message.status == Status.STREAMING,
                )
                .values(**values)
                .returning(Message.cancel_requested_at)
            )
            row = result.one_or_none()
            if row is None:
                # Another replica's sweep marked the reply interrupted while this process could
                # not renew the lease (the database was away): it is alive, so take it back.
                row = (
                    await db.execute(
                        update(Message)
                        .where(
                            Message.id == self._target.message_id,
                            Message.user_id == self._target.user_id,
                            Message.status == Status.INTERRUPTED,
                        )
                        .values(status=Status.STREAMING, **values)
                        .returning(Message.cancel_requested_at)
                    )
                ).one_or_none()
            cancel_requested = row[0] if row is not None else None
        self._written = length
        if cancel_requested is not None:
            self._on_cancel()

    async def close(
        self, *, charge: TokenUsage | None = None, cost: int | None = None, **final: Any
    ) -> bool:
        """Stop the loop and write the final state, retrying briefly; False if it never took.

        `cost` is stored on the reply; it and `charge` are added to the user's usage in the
        same transaction.
        """
        if self._task is not None:
            # Never cancel a write midway: a driver interrupted mid-statement can leave its
            # connection holding a lock. The loop finishes its current write and stops.
            self._stopping = True
            self._wake.set()
            await asyncio.gather(self._task, return_exceptions=True)
        delay = 0.2
        for attempt in range(FINAL_WRITE_ATTEMPTS):
            try:
                await self._write_final(final, charge, cost)
                return True
            except Exception as exc:
                log.warning(
                    "final reply write failed",
                    extra={
                        "message_id": str(self._target.message_id),
                        "attempt": attempt + 1,
                        "reason": str(exc),
                    },
                )
                await asyncio.sleep(delay)
                delay *= 2
        return False

    async def _write_final(
        self, final: dict[str, Any], charge: TokenUsage | None, cost: int | None
    ) -> None:
        async with unit_of_work(
            self._sessionmaker, role="authenticated", claims=self._target.claims
        ) as db:
            await db.execute(
                update(Message)
                .where(
                    Message.id == self._target.message_id,
                    Message.user_id == self._target.user_id,
                )
                .values(lease_expires_at=None, cost_nanousd=cost, **final)
            )
            if charge is not None:
                await usage.record(db, self._target.user_id, final["model"], charge, cost)


async def recover_abandoned(
    sessionmaker: async_sessionmaker[AsyncSession], alive: Collection[uuid.UUID] = ()
) -> int:
    """Mark replies whose producing process died (lease expired) as interrupted; count them.

    `alive` are the replies this process is producing: never touched, even if the database
    was away long enough for their leases to lapse.
    """
    now = utcnow()
    conditions = [
        Message.status == Status.STREAMING,
        (Message.lease_expires_at < now) | Message.lease_expires_at.is_(None),
    ]
    if alive:
        conditions.append(Message.id.not_in(list(alive)))
    async with unit_of_work(sessionmaker, role="service_role") as db:
        result = await db.execute(
            update(Message)
            .where(*conditions)
            .values(status=Status.INTERRUPTED, lease_expires_at=None)
            .returning(Message.id)
        )
        recovered = list(result.scalars())
    if recovered:
        log.warning("interrupted replies recovered", extra={"count": len(recovered)})
    return len(recovered)
