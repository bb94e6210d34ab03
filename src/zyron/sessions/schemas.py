"""Request and response bodies of the /sessions routes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from zyron.llm.base import TokenUsage
from zyron.llm.prices import usd
from zyron.request_body import RequestBody
from zyron.sessions.parts import public_parts, stored_parts

MessageRole = Literal["user", "assistant"]

if TYPE_CHECKING:
    from zyron.sessions.repository import MessageRow


class SessionBase(BaseModel):
    """Fields shared by reads and writes of a session."""

    model_config = ConfigDict(from_attributes=True)


class SessionCreate(SessionBase, RequestBody):
    """A new session; everything optional."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    system_prompt: str | None = Field(default=None, max_length=100_000)


class SessionUpdate(SessionBase, RequestBody):
    """A partial update: only the fields sent change; null clears model and system_prompt."""

    # A title can change but not be cleared: the document says it is a string, never null.
    title: Annotated[
        str | None, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200})
    ] = Field(default=None, min_length=1, max_length=200)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    system_prompt: str | None = Field(default=None, max_length=100_000)

    @model_validator(mode="after")
    def _title_not_null(self) -> SessionUpdate:
        if "title" in self.model_fields_set and self.title is None:
            raise ValueError("title cannot be null")
        return self


class SessionRead(SessionBase):
    """A session as the API shows it."""

    id: uuid.UUID
    title: str
    model: str | None
    system_prompt: str | None
    created_at: datetime
    updated_at: datetime


def stored_usage(message: MessageRow) -> TokenUsage | None:
    """What a stored reply was billed, by kind; None where nothing was reported."""
    if message.input_tokens is None and message.output_tokens is None:
        return None
    return TokenUsage(
        input_tokens=message.input_tokens or 0,
        output_tokens=message.output_tokens or 0,
        cache_creation_input_tokens=message.cache_creation_input_tokens or 0,
        cache_read_input_tokens=message.cache_read_input_tokens or 0,
        reasoning_tokens=message.reasoning_tokens,
    )


class Usage(BaseModel):
    """Tokens the model read and wrote for a reply, by kind (docs/costs.md)."""

    # Sent with every field: a generated client may count on each (defaults included).
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    input_tokens: int = Field(description="Input neither read from nor written to the cache.")
    output_tokens: int = Field(description="Output, thinking included.")
    cache_creation_input_tokens: int = Field(0, description="Input written to the prompt cache.")
    cache_read_input_tokens: int = Field(0, description="Input read from the prompt cache.")
    reasoning_tokens: int | None = Field(
        None, description="Of the output, thinking, where the provider reports it."
    )

    @classmethod
    def of(cls, used: TokenUsage) -> Usage:
        """From a provider's report."""
        return cls.model_construct(
            input_tokens=used.input_tokens,
            output_tokens=used.output_tokens,
            cache_creation_input_tokens=used.cache_creation_input_tokens,
            cache_read_input_tokens=used.cache_read_input_tokens,
            reasoning_tokens=used.reasoning_tokens,
        )


PARTS_DESCRIPTION = (
    "The message in order: `{type: text, text}`, `{type: reasoning, text}` (the model's "
    "thinking; `redacted: true` where the provider withheld it) and `{type: file, file_id, "
    "media_type, filename, size}` (`missing: true` once the file was deleted). `content` is "
    "the text parts joined."
)


class TextPartRead(BaseModel):
    """Text written by the user or the model."""

    type: Literal["text"]
    text: str


class ReasoningPartRead(BaseModel):
    """The model's thinking; `redacted` where the provider withheld its text."""

    type: Literal["reasoning"]
    text: str
    redacted: bool | None = None


class FilePartRead(BaseModel):
    """An attachment; `missing` once the file was deleted."""

    type: Literal["file"]
    file_id: uuid.UUID
    media_type: str
    filename: str
    size: int
    missing: bool | None = None


_PART_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        # Each part's own schema, inline: none refers to another.
        "oneOf": [m.model_json_schema() for m in (TextPartRead, ReasoningPartRead, FilePartRead)],
        "discriminator": {"propertyName": "type"},
    },
}
# Parts are served as stored (already checked when written), so no model is built per part;
# the schema still says exactly what they are.
Parts = Annotated[list[dict[str, Any]], WithJsonSchema(_PART_SCHEMA)]


class MessageRead(BaseModel):
    """A message as the API shows it."""

    id: uuid.UUID
    session_id: uuid.UUID
    parent_id: uuid.UUID | None
    role: MessageRole
    content: str
    parts: Parts = Field(description=PARTS_DESCRIPTION)
    status: str
    model: str | None
    stop_reason: str | None
    usage: Usage | None
    cost_usd: float | None = Field(
        description="What the reply cost in US dollars; null for a question or an unpriced model."
    )
    created_at: datetime

    @classmethod
    def of(cls, message: MessageRow) -> MessageRead:
        """Build from a stored message, folding in `usage` (the fields messages_json writes)."""
        return cls.model_validate(_message_dict(message))


def messages_json(messages: Iterable[MessageRow]) -> bytes:
    """A list of messages as the JSON of `list[MessageRead]`, built without a model per message.

    For a page of 100, a MessageRead and a Usage per message, then pydantic's serialiser, were
    half of GET /sessions/{id}/messages' CPU. The output is byte for byte what pydantic writes
    (tests/sessions/test_messages_json.py checks it).
    """
    return orjson.dumps(
        [_message_dict(message) for message in messages],
        default=_uuid_subclass,
        option=orjson.OPT_UTC_Z,
    )


def _uuid_subclass(value: object) -> str:
    """asyncpg's UUIDs subclass uuid.UUID, which orjson writes only exactly; as pydantic does."""
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _message_dict(message: MessageRow) -> dict[str, Any]:
    """One message as MessageRead's fields, in their order."""
    used = stored_usage(message)
    return {
        "id": message.id,
        "session_id": message.session_id,
        "parent_id": message.parent_id,
        "role": message.role,
        "content": message.content,
        "parts": public_parts(stored_parts(message.parts, message.content)),
        "status": message.status,
        "model": message.model,
        "stop_reason": message.stop_reason,
        "usage": None if used is None else used.public(),  # Usage's fields, in its order
        "cost_usd": usd(message.cost_nanousd),
        "created_at": message.created_at,
    }
