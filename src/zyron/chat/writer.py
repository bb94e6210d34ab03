"""Write a reply to its row while it streams: batched, with a lease that says it is alive.

Progress goes out with every other reply of the process (zyron.chat.progress); the final
state, with usage, is written here, per reply, under the user's own role.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from zyron.chat.progress import ProgressBatcher, ProgressEntry, WriterSettings
from zyron.chat.reply_parts import ReplyParts
from zyron.db.models import Message, Status, User
from zyron.db.types import utcnow
from zyron.db.unit_of_work import unit_of_work
from zyron.limits import usage
from zyron.llm.base import TokenUsage

__all__ = ["ReplyTarget", "ReplyWriter", "WriterSettings", "recover_abandoned"]

log = logging.getLogger("zyron.chat.writer")

FINAL_WRITE_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a signed-in user's reply is saved."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    message_id: uuid.UUID
    claims: dict[str, Any]  # the user's verified claims: writes run under their RLS


class ReplyWriter:
    """Keep the row's text (and reasoning) at most one batch behind the stream, and its lease fresh.

    The process's ProgressBatcher writes it together with every other reply in progress,
    one statement per tick; each write reads back `cancel_requested_at`, so a cancel sent
    to any replica reaches the one producing. The final write is this writer's own.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        target: ReplyTarget,
        parts: ReplyParts,
        settings: WriterSettings,
        on_cancel_requested: Callable[[], object],
        batcher: ProgressBatcher | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        # Without the process's batcher (a writer on its own), a batch of one.
        self._batcher = batcher or ProgressBatcher(sessionmaker, settings)
        self._target = target
        self._entry = ProgressEntry(
            target.message_id, target.user_id, target.claims, parts, on_cancel_requested
        )
        self._started = False

    def start(self) -> None:
        """Have the batcher write this reply's progress from now on."""
        self._batcher.register(self._entry)
        self._started = True

    def changed(self) -> None:
        """Note that the reply's parts grew; never waits for the database."""
        self._batcher.changed(self._entry)

    async def close(
        self, *, charge: TokenUsage | None = None, cost: int | None = None, **final: Any
    ) -> bool:
        """Stop the loop and write the final state, retrying briefly; False if it never took.

        `cost` is stored on the reply; it and `charge` are added to the user's usage in the
        same transaction.
        """
        if self._started:
            # Out of the batch first; a batch in flight with this reply is waited for, never
            # cancelled, so the final write cannot be overtaken by an older text.
            self._started = False
            await self._batcher.release(self._entry)
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
            saved = await db.execute(
                update(Message)
                .where(
                    Message.id == self._target.message_id,
                    Message.user_id == self._target.user_id,
                )
                .values(lease_expires_at=None, cost_nanousd=cost, **final)
                .returning(Message.id)
            )
            if saved.first() is None and await db.get(User, self._target.user_id) is None:
                # The account was deleted mid-reply: nothing of it may be written again (its
                # usage row would fail its foreign key on every retry).
                log.info(
                    "reply not saved: its account was deleted",
                    extra={"message_id": str(self._target.message_id)},
                )
                return
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
