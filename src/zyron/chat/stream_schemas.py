"""The native reply stream's events as JSON Schemas, for the OpenAPI document and its tests.

Documentation only: the stream itself is written without these models (one would cost per
event). tests/api/test_stream_schemas.py validates real streamed events against them, so the
document cannot drift from what is sent.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from zyron.sessions.schemas import Usage


class _Closed(BaseModel):
    """Events carry exactly their fields: a new one must be documented to be sent."""

    model_config = ConfigDict(extra="forbid")


class SessionEventData(_Closed):
    """First event of every stream: where the exchange is saved (all null for a guest)."""

    session_id: uuid.UUID | None
    user_message_id: uuid.UUID | None = Field(description="Null for a reply rebuilt without it.")
    assistant_message_id: uuid.UUID | None = Field(description="The reply's id: resume with it.")
    saved: bool = Field(description="False for a guest: nothing is stored.")


class ReasoningEventData(_Closed):
    """A piece of the model's thinking, in order."""

    text: str


class DeltaEventData(_Closed):
    """A piece of the reply's text, in order."""

    text: str


class DoneEventData(_Closed):
    """The reply ended: complete, cut by max_tokens, or cancelled (`stop_reason: cancelled`)."""

    message_id: uuid.UUID | None = Field(description="The reply's id; null for a guest.")
    stop_reason: str | None = Field(
        description="Anthropic's names: end_turn, max_tokens, stop_sequence, refusal, "
        "cancelled; null where the upstream gave none."
    )
    model: str | None
    usage: Usage
    cost_usd: float | None = Field(description="Null for a model without prices.")
    turns_sent: int | None = Field(
        description="Earlier turns the model was sent; null in a replay of a finished reply."
    )
    turns_omitted: int | None = Field(
        description="Earlier turns left out to fit the model's window; null in a replay."
    )


class ErrorEventData(_Closed):
    """The reply failed; `error` is a code of the error table (README, Errors)."""

    error: str
    detail: str
    retryable: bool
    message_id: uuid.UUID | None = Field(description="The reply's id; null for a guest.")


class TitleEventData(_Closed):
    """The session's new title; can follow `done` for a session titled "New chat"."""

    session_id: uuid.UUID
    title: str


_ID = Field(
    description="`id:` of the event: its position in the reply, the Last-Event-ID to resume "
    "from (README, Stream events)."
)


class SessionEvent(_Closed):
    """`event: session`."""

    id: str = _ID
    event: Literal["session"]
    data: SessionEventData


class ReasoningEvent(_Closed):
    """`event: reasoning`."""

    id: str = _ID
    event: Literal["reasoning"]
    data: ReasoningEventData


class DeltaEvent(_Closed):
    """`event: delta`."""

    id: str = _ID
    event: Literal["delta"]
    data: DeltaEventData


class DoneEvent(_Closed):
    """`event: done`: the last event but an optional `title`."""

    id: str = _ID
    event: Literal["done"]
    data: DoneEventData


class ErrorEvent(_Closed):
    """`event: error`: the last event."""

    id: str = _ID
    event: Literal["error"]
    data: ErrorEventData


class TitleEvent(_Closed):
    """`event: title`."""

    id: str = _ID
    event: Literal["title"]
    data: TitleEventData


# One server-sent event of a reply: its `event:` field names the kind, `data:` is the JSON.
ReplyStreamEvent = Annotated[
    SessionEvent | ReasoningEvent | DeltaEvent | DoneEvent | ErrorEvent | TitleEvent,
    Field(discriminator="event"),
]

REPLY_STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(ReplyStreamEvent)
