"""What `DefaultChatTransport` sends: the chat id, its UIMessages and the trigger."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from zyron.chat.schemas import ReasoningOptions
from zyron.request_body import PositiveJsonInt, RequestBody


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
    messages: list[UIMessage] = Field(
        min_length=1,
        description="useChat's messages, oldest first. They end with the user's message, "
        "with a text part, or it is a 422; except a signed-in regenerate, which names the "
        "reply to replace (its last message, or `messageId`). A guest's earlier messages "
        "are the history: at most MAX_HISTORY_MESSAGES. Text parts hold at most "
        "MAX_MESSAGE_CHARS; file parts are `…/files/{id}` URLs signed in, base64 `data:` "
        "URLs as a guest (422 otherwise), at most MAX_ATTACHMENTS.",
    )
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = Field(default=None, min_length=1, max_length=200)  # noqa: N815  (the SDK's name)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    system: str | None = None
    max_tokens: PositiveJsonInt | None = None
    reasoning: ReasoningOptions | None = None
