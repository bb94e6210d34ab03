"""What every importer turns its format into: conversations of messages linked by references."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ValidationError

from zyron.errors import InvalidImport

# How much later than its parent a message with no usable time of its own is placed: the
# active branch and the branch reader both count on a child being newer than its parent.
TICK = timedelta(microseconds=1)
# The times an import accepts, in UTC: far inside what datetime and the columns hold, so
# moving a message by a tick (or a zone to UTC) never overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9001, 1, 1, tzinfo=UTC)
OUT_OF_RANGE = "a time from the year 1970 to 9000 (UTC) is required"


def sane_time(value: datetime) -> datetime:
    """Return the time in UTC (naive: taken as UTC); ValueError outside 1970..9000."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(OUT_OF_RANGE) from exc
    if not EARLIEST <= utc < LATEST:
        raise ValueError(OUT_OF_RANGE)
    return utc


# A time of a ChatGPT or Claude.ai file: naive is UTC (Zyron's own are AwareDatetime).
ImportTime = Annotated[datetime, AfterValidator(sane_time)]


@dataclass
class ImportedMessage:
    """A message as read from a file; `ref` and `parent_ref` are the file's own ids."""

    ref: str
    parent_ref: str | None
    role: Literal["user", "assistant"]
    parts: list[dict[str, Any]]
    created_at: datetime
    where: str  # where in the file it was read, for error messages
    status: str = "complete"
    model: str | None = None
    stop_reason: str | None = None
    usage: dict[str, int | None] = field(default_factory=dict)
    cost_nanousd: int | None = None
    client_id: str | None = None

    @property
    def content(self) -> str:
        """The text parts joined, as Zyron stores `content`."""
        return "".join(part["text"] for part in self.parts if part.get("type") == "text")


@dataclass
class ImportedConversation:
    """A conversation to become one session, identified across imports by `key`."""

    key: str  # the session's client_id: the same conversation imported again is skipped
    title: str
    created_at: datetime
    updated_at: datetime
    messages: list[ImportedMessage]
    where: str
    model: str | None = None
    system_prompt: str | None = None
    original_id: uuid.UUID | None = None  # a Zyron export's session id


@dataclass
class ImportedFile:
    """A file of a Zyron export, with its bytes."""

    ref: str
    filename: str
    media_type: str
    data: bytes
    created_at: datetime
    where: str


@dataclass
class ImportBatch:
    """Everything one file holds to import."""

    format: Literal["zyron", "chatgpt", "claude"]
    conversations: list[ImportedConversation]
    files: dict[str, ImportedFile] = field(default_factory=dict)


def refuse(where: str, problem: str) -> InvalidImport:
    """Return the 422 that names where in the file the problem is."""
    return InvalidImport(f"{where}: {problem}" if where else problem)


def validation_problem(exc: ValidationError, prefix: str) -> InvalidImport:
    """Name the first fields pydantic refused, as paths into the file."""
    problems = []
    for error in exc.errors()[:3]:
        path = prefix
        for step in error.get("loc", ()):
            path += f"[{step}]" if isinstance(step, int) else f".{step}"
        problems.append(f"{path or 'file'}: {error.get('msg', 'invalid')}")
    return InvalidImport("; ".join(problems))


def in_tree_order(messages: list[ImportedMessage], where: str) -> list[ImportedMessage]:
    """Return the messages with every parent before its children; refuse a broken tree."""
    by_ref: dict[str, ImportedMessage] = {}
    for message in messages:
        if message.ref in by_ref:
            raise refuse(message.where, f"the id {message.ref!r} is used twice")
        by_ref[message.ref] = message
    children: dict[str | None, list[ImportedMessage]] = {}
    for message in messages:
        if message.parent_ref is not None and message.parent_ref not in by_ref:
            raise refuse(
                message.where, f"parent {message.parent_ref!r} is no message of this conversation"
            )
        children.setdefault(message.parent_ref, []).append(message)
    ordered: list[ImportedMessage] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        message = stack.pop()
        ordered.append(message)
        stack.extend(reversed(children.get(message.ref, [])))
    if len(ordered) != len(messages):
        raise refuse(where, "its messages' parents form a cycle")
    return ordered


def newer_than_parents(messages: list[ImportedMessage]) -> None:
    """Move a message older than its parent to just after it (messages in tree order)."""
    times: dict[str, datetime] = {}
    for message in messages:
        if message.parent_ref is not None:
            floor = times[message.parent_ref] + TICK
            if message.created_at < floor:
                message.created_at = floor
        times[message.ref] = message.created_at


def make_newest(messages: list[ImportedMessage], leaf_ref: str | None) -> None:
    """Make `leaf_ref` the newest message, so the active branch ends there.

    Zyron's active branch is the path to the newest message; a file that names another leaf
    (ChatGPT's current_node) gets that leaf's time moved just past the newest, if it is a
    leaf. Only that one time changes.
    """
    if leaf_ref is None or not messages:
        return
    leaf = next((m for m in messages if m.ref == leaf_ref), None)
    if leaf is None or any(m.parent_ref == leaf_ref for m in messages):
        return
    newest = max(m.created_at for m in messages)
    others = [m for m in messages if m is not leaf and m.created_at >= leaf.created_at]
    if others:
        leaf.created_at = newest + TICK
