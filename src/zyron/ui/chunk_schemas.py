"""The UI message stream's chunks Zyron sends, as JSON Schemas for the OpenAPI document.

Documentation only, like zyron.chat.stream_schemas: tests validate real chunks against them.
Each SSE event is `data: <one chunk as JSON>`; the stream ends with `data: [DONE]`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel

from zyron.sessions.schemas import Usage


class _Closed(BaseModel):
    """Chunks carry exactly their fields (old `ai` releases refuse unknown ones), in camelCase."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class StartMetadata(_Closed):
    """Where the exchange is saved (all null, `saved: false`, for a guest)."""

    session_id: uuid.UUID | None
    user_message_id: uuid.UUID | None
    assistant_message_id: uuid.UUID | None
    saved: bool


class FinishMetadata(_Closed):
    """How the reply ended, with its model and usage."""

    finish_reason: Literal["stop", "length", "content-filter", "tool-calls", "other"]
    stop_reason: str | None = Field(description="Zyron's own stop reason (the native `done`).")
    model: str | None
    usage: Usage | None


class StartChunk(_Closed):
    """The reply's message starts; `messageId` is the reply's id."""

    type: Literal["start"]
    message_id: str
    message_metadata: StartMetadata


class StepChunk(_Closed):
    """A step's bounds (one per reply)."""

    type: Literal["start-step", "finish-step"]


class PartBoundChunk(_Closed):
    """A text or reasoning part opens or closes."""

    type: Literal["text-start", "text-end", "reasoning-start", "reasoning-end"]
    id: str


class PartDeltaChunk(_Closed):
    """A piece of a text or reasoning part."""

    type: Literal["text-delta", "reasoning-delta"]
    id: str
    delta: str


class FinishChunk(_Closed):
    """The reply is finished."""

    type: Literal["finish"]
    message_metadata: FinishMetadata


class AbortChunk(_Closed):
    """The reply was cancelled."""

    type: Literal["abort"]


class ErrorChunk(_Closed):
    """The reply failed."""

    type: Literal["error"]
    error_text: str


# One chunk of the UI message stream (AI SDK protocol v1), told apart by `type`.
UIMessageChunk = Annotated[
    StartChunk
    | StepChunk
    | PartBoundChunk
    | PartDeltaChunk
    | FinishChunk
    | AbortChunk
    | ErrorChunk,
    Field(discriminator="type"),
]

UI_MESSAGE_CHUNK: TypeAdapter[Any] = TypeAdapter(UIMessageChunk)
