"""Save the progress of every reply one process produces: one statement per tick, not per reply.

Each tick writes, in a single UPDATE, the whole text (and parts, when the reply has
reasoning) of every reply that grew since its last write, and renews the lease of every
reply whose heartbeat is due. The statement reads back `cancel_requested_at`, so a cancel
sent to any replica reaches the one producing.

It runs as `service_role`: its rows belong to many users, and one statement cannot carry
several users' claims. What it touches is what this process holds the lease of: the
(id, user_id) pairs of replies it created for a verified user, still `streaming`. No id sent
by a client reaches it. The final write of each reply, with usage, stays under the user's
own role (zyron.chat.writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import TextClause, TextualSelect, Uuid, bindparam, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from zyron.chat.reply_parts import ReplyParts
from zyron.db.models import Message, Status
from zyron.db.types import UTCDateTime, utcnow
from zyron.db.unit_of_work import unit_of_work

log = logging.getLogger("zyron.chat.writer")

# Rows that grew get their whole text (never `content || delta`, which rewrites a TOASTed
# value anyway); rows that only renew their lease get a statement of their own, in the same
# transaction, that leaves the text alone. Ids are sorted, so two batches lock rows in one
# order.
_POSTGRES = text(
    "UPDATE messages AS m "
    "SET content = u.content, parts = CAST(u.parts AS jsonb), lease_expires_at = :lease "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:users AS uuid[]), "
    "CAST(:contents AS text[]), CAST(:parts AS text[])) AS u(id, user_id, content, parts) "
    "WHERE m.id = u.id AND m.user_id = u.user_id AND m.status = 'streaming' "
    "RETURNING m.id, m.cancel_requested_at"
)
# SQLite has no unnest: the rows come as one JSON array, unpacked by json_each.
_SQLITE = text(
    "UPDATE messages "
    "SET content = u.content, parts = u.parts, lease_expires_at = :lease "
    "FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS user_id, "
    "json_extract(value, '$[2]') AS content, json_extract(value, '$[3]') AS parts "
    "FROM json_each(:rows)) AS u "
    "WHERE messages.id = u.id AND messages.user_id = u.user_id "
    "AND messages.status = 'streaming' "
    "RETURNING messages.id, messages.cancel_requested_at"
)


_POSTGRES_LEASE = text(
    "UPDATE messages AS m SET lease_expires_at = :lease "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:users AS uuid[])) AS u(id, user_id) "
    "WHERE m.id = u.id AND m.user_id = u.user_id AND m.status = 'streaming' "
    "RETURNING m.id, m.cancel_requested_at"
)
_SQLITE_LEASE = text(
    "UPDATE messages SET lease_expires_at = :lease "
    "FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS user_id "
    "FROM json_each(:rows)) AS u "
    "WHERE messages.id = u.id AND messages.user_id = u.user_id "
    "AND messages.status = 'streaming' "
    "RETURNING messages.id, messages.cancel_requested_at"
)


def _typed(statement: TextClause) -> TextualSelect:
    """Bind the lease and read the returned columns with the model's types."""
    return statement.bindparams(bindparam("lease", type_=UTCDateTime())).columns(
        id=Uuid(), cancel_requested_at=UTCDateTime()
    )


POSTGRES_PROGRESS = _typed(_POSTGRES)
SQLITE_PROGRESS = _typed(_SQLITE)
POSTGRES_LEASE = _typed(_POSTGRES_LEASE)
SQLITE_LEASE = _typed(_SQLITE_LEASE)


@dataclass(frozen=True, slots=True)
class WriterSettings:
    """How often the replies' rows are written."""

    flush_interval: float
    flush_chars: int
    lease_seconds: float
    heartbeat_seconds: float
    # Statements per second, all replies together: bounds the early ticks `flush_chars` asks for.
    writes_per_second: float = float("inf")


class ProgressEntry:
    """One reply in the batch: its row, its parts, and what was last written of it."""

    __slots__ = (
        "claims",
        "message_id",
        "on_cancel",
        "parts",
        "poked",
        "renewed_at",
        "user_id",
        "written",
    )

    def __init__(
        self,
        message_id: uuid.UUID,
        user_id: uuid.UUID,
        claims: dict[str, Any],
        parts: ReplyParts,
        on_cancel: Callable[[], object],
    ) -> None:
        self.message_id = message_id
        self.user_id = user_id
        self.claims = claims  # the user's: the take-back of a row runs under their RLS
        self.parts = parts  # the generation appends to it; a tick writes what it holds
        self.on_cancel = on_cancel
        self.written = 0  # the position written last
        self.renewed_at = 0.0  # loop time of the last lease renewal
        self.poked = False  # asked for an early tick since the last write


@dataclass(frozen=True, slots=True)
class _Row:
    """What one tick writes of one reply, taken before the statement runs."""

    entry: ProgressEntry
    length: int
    content: str
    parts: str  # JSON; a text-only reply keeps `[]` until its final save

    def values(self, lease: datetime) -> dict[str, Any]:
        """Return the columns as the per-user take-back writes them."""
        return {
            "content": self.content,
            "parts": json.loads(self.parts),
            "lease_expires_at": lease,
        }


class ProgressBatcher:
    """Write every registered reply's progress and lease in one statement per tick.

    A tick comes every `flush_interval`; a reply with `flush_chars` pending asks for one
    sooner, at most `writes_per_second` ticks a second. A failed tick is logged and retried
    at the next regular one, never sooner. Only one batch is in flight at a time.
    """

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], settings: WriterSettings
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._gap = 1 / settings.writes_per_second
        self._entries: dict[ProgressEntry, None] = {}  # ordered, by identity
        self._in_flight: frozenset[ProgressEntry] = frozenset()
        self._landed = asyncio.Event()  # set whenever no batch is in flight
        self._landed.set()
        self._wake = asyncio.Event()  # an early tick was asked for, or the last reply left
        self._failing = False
        self._last_tick = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def registered(self) -> int:
        """Count the replies whose progress this batcher writes."""
        return len(self._entries)

    def register(self, entry: ProgressEntry) -> None:
        """Start writing a reply's progress; the loop runs while any reply is registered."""
        loop = asyncio.get_running_loop()
        entry.renewed_at = loop.time()  # the placeholder row was inserted with a fresh lease
        self._entries[entry] = None
        if self._task is None:
            self._last_tick = loop.time()
            # In a context of its own: it writes every reply's progress, so it must not stay
            # in the trace (and log context) of the request whose reply happened to start it.
            self._task = loop.create_task(
                self._run(), name="reply-progress", context=contextvars.Context()
            )

    def changed(self, entry: ProgressEntry) -> None:
        """Note that a reply grew; ask for an early tick once `flush_chars` are pending."""
        if not entry.poked and entry.parts.length - entry.written >= self._settings.flush_chars:
            entry.poked = True
            self._wake.set()

    async def release(self, entry: ProgressEntry) -> None:
        """Stop writing a reply's progress; if a batch holding it is in flight, wait for it.

        A write is never cancelled midway: a driver interrupted mid-statement can leave its
        connection holding a lock, and the final write would wait behind it.
        """
        self._entries.pop(entry, None)
        if not self._entries:
            self._wake.set()  # let the loop end now rather than at its next tick
        while entry in self._in_flight:
            await self._landed.wait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._entries:
                await self._until_tick(loop)
                if not self._entries:
                    break
                self._last_tick = loop.time()
                self._wake.clear()
                await self._tick(loop.time())
        finally:
            self._task = None  # no await since the loop's condition: a register starts anew

    async def _until_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for the next regular tick, or an early one asked for and allowed by the rate."""
        while self._entries:
            now = loop.time()
            due = self._last_tick + self._settings.flush_interval
            early = self._wake.is_set() and not self._failing
            if early:
                due = min(due, self._last_tick + self._gap)
            if due <= now:
                return
            if early or self._failing:
                await asyncio.sleep(due - now)  # nothing can bring this tick sooner
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(due - now):
                    await self._wake.wait()

    async def _tick(self, now: float) -> None:
        """Write what is due: replies that grew, and leases whose heartbeat came."""
        heartbeat = self._settings.heartbeat_seconds
        due = [
            entry
            for entry in self._entries
            if entry.parts.length > entry.written or now - entry.renewed_at >= heartbeat
        ]
        if not due:
            return
        due.sort(key=lambda entry: entry.message_id)
        rows = [_snapshot(entry) for entry in due]
        self._in_flight = frozenset(due)
        self._landed.clear()
        lost: list[_Row] = []
        try:
            lost = await self._write(rows, now)
        except Exception as exc:  # retried at the next tick; the final write settles it
            self._failing = True
            cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
            # Never str(exc): a statement error quotes its parameters, the users' text.
            log.warning(
                "reply progress not saved",
                extra={
                    "replies": len(rows),
                    "reason": type(cause).__name__,
                    "code": getattr(cause, "sqlstate", None),
                },
            )
        else:
            self._failing = False
        finally:
            self._in_flight = frozenset()
            self._landed.set()
        # After the batch has landed, so replies ending meanwhile need not wait for them; a
        # reply being taken back waits, so its final write cannot come before the take-back.
        lost = [row for row in lost if row.entry in self._entries]
        if lost:
            self._in_flight = frozenset(row.entry for row in lost)
            self._landed.clear()
            try:
                await self._take_backs(lost, now)
            finally:
                self._in_flight = frozenset()
                self._landed.set()

    async def _write(self, rows: Sequence[_Row], now: float) -> list[_Row]:
        """Write the rows; return those not `streaming` any more, to be taken back."""
        lease = utcnow() + timedelta(seconds=self._settings.lease_seconds)
        grown = [row for row in rows if row.length > row.entry.written]
        renewed = [row for row in rows if row.length <= row.entry.written]
        returned: dict[uuid.UUID, datetime | None] = {}
        async with unit_of_work(self._sessionmaker, role="service_role") as db:
            postgres = db.get_bind().dialect.name == "postgresql"
            for batch, statements in ((grown, _GROWN), (renewed, _RENEWED)):
                if not batch:
                    continue
                statement = statements[0] if postgres else statements[1]
                params = _postgres_params(batch) if postgres else _sqlite_params(batch)
                result = await db.execute(statement, {**params, "lease": lease})
                returned.update({row.id: row.cancel_requested_at for row in result})
        for row in rows:
            if row.entry.message_id not in returned:
                continue
            self._written(row, now)
            if returned[row.entry.message_id] is not None:
                row.entry.on_cancel()
        return [row for row in rows if row.entry.message_id not in returned]

    async def _take_backs(self, rows: Sequence[_Row], now: float) -> None:
        """Take back each row, one by one, a failure logged and left for the next tick."""
        lease = utcnow() + timedelta(seconds=self._settings.lease_seconds)
        for row in rows:
            try:
                await self._take_back(row, lease, now)
            except Exception as exc:
                log.warning(
                    "reply not taken back",
                    extra={"message_id": str(row.entry.message_id), "reason": type(exc).__name__},
                )

    async def _take_back(self, row: _Row, lease: datetime, now: float) -> None:
        """Make a reply this process still produces `streaming` again, under the user's role.

        Another replica's sweep marks a reply interrupted when its lease lapsed while this
        process could not renew it (the database was away): it is alive, so take it back.
        """
        entry = row.entry
        async with unit_of_work(
            self._sessionmaker, role="authenticated", claims=entry.claims
        ) as db:
            taken = (
                await db.execute(
                    update(Message)
                    .where(
                        Message.id == entry.message_id,
                        Message.user_id == entry.user_id,
                        Message.status == Status.INTERRUPTED,
                    )
                    .values(status=Status.STREAMING, **row.values(lease))
                    .returning(Message.cancel_requested_at)
                )
            ).one_or_none()
        self._written(row, now)  # a row gone for good (deleted) is tried again only by heartbeat
        if taken is not None:
            log.info("reply taken back", extra={"message_id": str(entry.message_id)})
            if taken[0] is not None:
                entry.on_cancel()

    def _written(self, row: _Row, now: float) -> None:
        entry = row.entry
        entry.written = row.length
        entry.renewed_at = now
        entry.poked = False


def _snapshot(entry: ProgressEntry) -> _Row:
    parts = entry.parts
    stored = json.dumps(parts.parts() if parts.has_reasoning else [], separators=(",", ":"))
    return _Row(entry, parts.length, parts.text, stored)


# Each statement (Postgres, SQLite): for rows that grew, and for rows only renewing a lease.
_GROWN = (POSTGRES_PROGRESS, SQLITE_PROGRESS)
_RENEWED = (POSTGRES_LEASE, SQLITE_LEASE)


def _postgres_params(rows: Sequence[_Row]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ids": [row.entry.message_id for row in rows],
        "users": [row.entry.user_id for row in rows],
    }
    if rows[0].length > rows[0].entry.written:  # a batch that grew: its texts too
        params["contents"] = [row.content for row in rows]
        params["parts"] = [row.parts for row in rows]
    return params


def _sqlite_params(rows: Sequence[_Row]) -> dict[str, Any]:
    # SQLite stores a UUID as 32 hex digits (SQLAlchemy's Uuid without a native type).
    batch = [
        [row.entry.message_id.hex, row.entry.user_id.hex, row.content, row.parts] for row in rows
    ]
    return {"rows": json.dumps(batch, separators=(",", ":"))}
