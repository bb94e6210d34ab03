"""What `DefaultChatTransport` sends: the chat id, its UIMessages and the trigger."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from zyron.chat.schemas import ReasoningOptions
from zyron.request_body import JsonInt, RequestBody


class UIPart(RequestBody):
    """One part of a UIMessage; Zyron reads text, reasoning and file parts and skips the rest."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1, max_length=100)
    text: str | None = None
    url: str | None = None
    mediaType: str | None = Field(default=None, max_length=100)  # noqa: N815  (the SDK's name)
    filename: str | None = Field(default=None, max_length=255)


class UIMessage(RequestBody):
    """A message as useChat keeps it: an id of its own, a role, and parts."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200)
    role: Literal["system", "user", "assistant"]
    parts: list[UIPart] = Field(max_length=1000)
    metadata: Any = None


class UIChatRequest(RequestBody):
    """The body of POST /ui/chat: useChat's, plus the options a front end may add to it."""

    model_config = ConfigDict(extra="allow")  # front ends add fields of their own

    id: str = Field(min_length=1, max_length=200, description="The chat's id (useChat's).")
    messages: list[UIMessage] = Field(min_length=1)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = Field(default=None, min_length=1, max_length=200)  # noqa: N815  (the SDK's name)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    system: str | None = None
    max_tokens: JsonInt | None = Field(default=None, ge=1)
    reasoning: ReasoningOptions | None = None
