"""Request and response bodies of /chat."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from zyron.sessions.schemas import Usage


class HistoryTurn(BaseModel):
    """An earlier turn a guest sends along (guests have no stored history)."""

    role: Literal["user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """A message to the model, in a saved session (signed in) or as a guest."""

    message: str = Field(min_length=1, description="The user's message.")
    session_id: uuid.UUID | None = Field(
        default=None, description="Continue this session; without it a new one is created."
    )
    parent_id: uuid.UUID | None = Field(
        default=None,
        description="Branch from this reply of the session (an edit: the new message follows "
        "it instead of the newest message). null: a new first message. Left out: continue "
        "the active branch.",
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
    max_tokens: int | None = Field(
        default=None, ge=1, description="Reply length cap, at most the server's MAX_TOKENS."
    )

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be blank")
        return value


class RegenerateRequest(BaseModel):
    """Options for a new reply to the same message; all optional."""

    stream: bool = Field(default=True, description="false: one JSON response instead of SSE.")
    model: str | None = Field(default=None, min_length=1, max_length=200)
    system: str | None = Field(
        default=None, description="System prompt for this reply (overrides the session's)."
    )
    max_tokens: int | None = Field(
        default=None, ge=1, description="Reply length cap, at most the server's MAX_TOKENS."
    )


class ChatMessage(BaseModel):
    """The assistant's reply; ids are null for guests, whose replies are not saved."""

    id: uuid.UUID | None
    session_id: uuid.UUID | None
    role: Literal["assistant"] = "assistant"
    content: str
    status: str
    model: str
    stop_reason: str | None
    usage: Usage
    created_at: datetime


class ChatResponse(BaseModel):
    """The answer to POST /chat with stream=false."""

    session_id: uuid.UUID | None
    user_message_id: uuid.UUID | None
    saved: bool
    message: ChatMessage
    usage: Usage
    turns_sent: int = Field(default=0, description="Earlier turns the model was sent.")
    turns_omitted: int = Field(
        default=0, description="Earlier turns left out to fit the model's context window."
    )
