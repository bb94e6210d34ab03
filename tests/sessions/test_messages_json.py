"""The fast message-page serialiser writes exactly what pydantic writes for list[MessageRead]."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter

from zyron.sessions.schemas import MessageRead, messages_json

PYDANTIC = TypeAdapter(list[MessageRead])


@dataclass
class Row:
    """The columns GET /sessions/{id}/messages reads, with a question's defaults."""

    role: str = "user"
    content: str = "hello"
    parts: list[dict[str, Any]] = field(default_factory=list)
    status: str = "complete"
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    session_id: uuid.UUID = field(default_factory=uuid.uuid4)
    parent_id: uuid.UUID | None = None
    model: str | None = None
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_nanousd: int | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


ROWS = {
    "question": Row(),
    "question at a whole second": Row(created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    "unicode and escapes": Row(content='é "quoted" \\ \n\t \u2028 😀 \x01'),
    "empty streaming reply": Row(role="assistant", content="", status="streaming"),
    "reply with usage and cost": Row(
        role="assistant",
        content="hi",
        parent_id=uuid.uuid4(),
        model="claude-sonnet-5",
        stop_reason="end_turn",
        input_tokens=12,
        output_tokens=3,
        cache_read_input_tokens=40_000,
        cost_nanousd=1_234,
    ),
    "usage with output only": Row(role="assistant", content="x", output_tokens=1),
    "thinking, redacted thinking, text": Row(
        role="assistant",
        content="answer",
        reasoning_tokens=7,
        input_tokens=1,
        output_tokens=9,
        cost_nanousd=10**9 + 1,
        parts=[
            {"type": "reasoning", "text": "think", "signature": "secret"},
            {"type": "reasoning", "text": "", "redacted": "opaque data"},
            {"type": "text", "text": "answer"},
        ],
    ),
    "file parts, one missing": Row(
        content="look",
        parts=[
            {
                "type": "file",
                "file_id": str(uuid.uuid4()),
                "media_type": "image/png",
                "filename": "a.png",
                "size": 10,
            },
            {
                "type": "file",
                "file_id": str(uuid.uuid4()),
                "media_type": "application/pdf",
                "filename": "b.pdf",
                "size": 2**40,
                "missing": True,
            },
            {"type": "text", "text": "look"},
        ],
    ),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_one_message_matches_pydantic(name: str) -> None:
    """Each kind of message is written byte for byte as the response model would write it."""
    row = ROWS[name]
    assert messages_json([row]) == PYDANTIC.dump_json([MessageRead.of(row)])


def test_uuid_subclasses_as_asyncpg_returns_them() -> None:
    """asyncpg's own UUID type (a uuid.UUID subclass) is written as a UUID."""

    class DriverUUID(uuid.UUID):
        """Like asyncpg.pgproto.UUID."""

    row = Row(id=DriverUUID(int=1), session_id=DriverUUID(int=2), parent_id=DriverUUID(int=3))
    assert messages_json([row]) == PYDANTIC.dump_json([MessageRead.of(row)])


def test_a_page_matches_pydantic() -> None:
    """A whole page, in order, and an empty page."""
    rows = list(ROWS.values())
    assert messages_json(rows) == PYDANTIC.dump_json([MessageRead.of(r) for r in rows])
    assert messages_json([]) == b"[]"
