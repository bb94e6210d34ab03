"""Request and response bodies of /chat."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from zyron.request_body import JsonUUID, PositiveJsonInt, RequestBody, whole_float
from zyron.sessions.schemas import PARTS_DESCRIPTION, Parts, Usage


class HistoryTurn(RequestBody):
    """An earlier turn a guest sends along (guests have no stored history)."""

    role: Literal["user", "assistant"]
    content: str


BudgetTokens = Annotated[int, Field(ge=1024), BeforeValidator(whole_float)]


class ReasoningOptions(RequestBody):
    """Ask the model to think before it answers: a token budget, or an effort."""

    # One of the two, and the document says so: a second field, even null, is refused.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"maxProperties": 1})

    budget_tokens: BudgetTokens | None = Field(
        default=None,
        description="Tokens the model may think with (Claude's extended thinking: at least "
        "1024, and inside max_tokens). Only for models whose `reasoning_modes` (GET /models) "
        "include `budget`; another model is a 422 that says to send an effort.",
    )
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = Field(
        default=None,
        description="How hard to think (Claude's adaptive thinking; OpenAI-compatible "
        "servers' reasoning_effort). Works with every model that reasons; where a model takes "
        "only a budget, the effort picks one. Default: medium.",
    )

    @model_validator(mode="after")
    def _one_form(self) -> ReasoningOptions:
        if len(self.model_fields_set) > 1:
            raise ValueError("give budget_tokens or effort, not both")
        return self


class InlineAttachment(RequestBody):
    """A guest's file, sent with the message and never stored."""

    model_config = ConfigDict(extra="forbid")

    media_type: str = Field(
        min_length=1,
        max_length=100,
        description="The type the client believes; the bytes decide, and must not contradict it.",
    )
    data: str = Field(
        min_length=1,
        pattern=r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        json_schema_extra={"contentEncoding": "base64"},
        description="The file's bytes, base64. The message's inline files together hold at "
        "most MAX_INLINE_ATTACHMENT_BYTES (decoded), each within its kind's cap "
        "(MAX_IMAGE_BYTES, MAX_PDF_BYTES, MAX_FILE_BYTES): over them, 413.",
    )
    filename: str | None = Field(default=None, max_length=255, description="Display text only.")


class ChatRequest(RequestBody):
    """A message to the model, in a saved session (signed in) or as a guest."""

    message: str = Field(min_length=1, description="The user's message.")
    session_id: JsonUUID | None = Field(
        default=None,
        description="Continue this session; without it a new one is created. Guests have no "
        "sessions: 401.",
    )
    parent_id: JsonUUID | None = Field(
        default=None,
        description="Branch from this reply of the session (an edit: the new message follows "
        "it instead of the newest message). null: a new first message. Left out: continue "
        "the active branch. A reply id needs the `session_id` it belongs to (422 without "
        "it); guests have no messages to branch from (422).",
    )
    title: str | None = Field(
        default=None, min_length=1, max_length=200, description="Title of a new session."
    )
    stream: bool = Field(default=True, description="false: one JSON response instead of SSE.")
    model: str | None = Field(default=None, min_length=1, max_length=200)
    system: str | None = Field(
        default=None, description="System prompt for this request (overrides the session's)."
    )
    history: list[HistoryTurn] | None = Field(
        default=None, description="Guests only: earlier turns, oldest first."
    )
    max_tokens: PositiveJsonInt | None = Field(
        default=None,
        description="Reply length cap: at most the server's MAX_TOKENS; with `reasoning`, "
        "2048 to MAX_TOKENS + MAX_REASONING_TOKENS (thinking counts inside max_tokens).",
    )
    reasoning: ReasoningOptions | None = Field(
        default=None, description="Ask the model to think first; streamed as `reasoning`."
    )
    attachments: list[JsonUUID] | list[InlineAttachment] | None = Field(
        default=None,
        description="Files for the model: ids from POST /files (signed in), or inline base64 "
        "objects (guests). Signed in, inline objects are a 422 (upload them); as a guest, "
        "ids are a 401. Each id once. At most MAX_ATTACHMENTS. A kind the model does not "
        "take is a 422 naming the models that do.",
    )

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be blank")
        return value


class RegenerateRequest(RequestBody):
    """Options for a new reply to the same message; all optional."""

    stream: bool = Field(default=True, description="false: one JSON response instead of SSE.")
    model: str | None = Field(default=None, min_length=1, max_length=200)
    system: str | None = Field(
        default=None, description="System prompt for this reply (overrides the session's)."
    )
    max_tokens: PositiveJsonInt | None = Field(
        default=None,
        description="Reply length cap: at most the server's MAX_TOKENS; with `reasoning`, "
        "2048 to MAX_TOKENS + MAX_REASONING_TOKENS (thinking counts inside max_tokens).",
    )
    reasoning: ReasoningOptions | None = Field(
        default=None, description="Ask the model to think first; streamed as `reasoning`."
    )


class ChatMessage(BaseModel):
    """The assistant's reply; ids are null for guests, whose replies are not saved."""

    # Sent with every field: a generated client may count on each (defaults included).
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    id: uuid.UUID | None
    session_id: uuid.UUID | None
    role: Literal["assistant"] = "assistant"
    content: str
    parts: Parts = Field(default_factory=list, description=PARTS_DESCRIPTION)
    status: str
    model: str
    stop_reason: str | None
    usage: Usage
    cost_usd: float | None = Field(
        None, description="What the reply cost in US dollars; null for an unpriced model."
    )
    created_at: datetime


class ChatResponse(BaseModel):
    """The answer to POST /chat with stream=false."""

    # Sent with every field: a generated client may count on each (defaults included).
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    session_id: uuid.UUID | None
    user_message_id: uuid.UUID | None
    saved: bool
    message: ChatMessage
    usage: Usage
    turns_sent: int = Field(default=0, description="Earlier turns the model was sent.")
    turns_omitted: int = Field(
        default=0, description="Earlier turns left out to fit the model's context window."
    )
