"""What GET /search answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class SnippetPiece(BaseModel):
    """A run of a snippet's text: a match of the query, or the text around one."""

    text: str
    match: bool


class SearchHit(BaseModel):
    """A message, or a session's title, that matches the query."""

    kind: Literal["message", "title"] = Field(
        description="message: a message's text matched; title: the session's title did."
    )
    session_id: uuid.UUID
    session_title: str
    message_id: uuid.UUID | None = Field(description="The message; null for a title.")
    role: Literal["user", "assistant"] | None = Field(description="null for a title.")
    created_at: datetime = Field(description="When the message (or the session) was created.")
    snippet: list[SnippetPiece] = Field(
        description="The text around the matches, in order; pieces with match=true are the "
        "words the query found. Plain text: nothing in it is markup."
    )


class SearchPage(BaseModel):
    """One page of results, best first and newest first among equals."""

    results: list[SearchHit]
    next_before: str | None = Field(
        description="Pass as `before` for the next page; null when this page is the last. "
        "Pages never repeat or skip a result while new messages arrive."
    )
