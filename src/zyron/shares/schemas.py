"""Request and response bodies of the share routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from zyron.request_body import JsonUUID, RequestBody
from zyron.sessions.schemas import FilePartRead, MessageRole, TextPartRead


class ShareCreate(RequestBody):
    """What to share: the session's active branch, or the branch that ends at a message."""

    up_to_message_id: JsonUUID | None = Field(
        default=None,
        description="A message of the session: share the path from the first message down to "
        "it (any branch). Left out: the active branch, up to the newest message. A message of "
        "another session is a 404.",
    )


class ShareRead(BaseModel):
    """A share link as its owner sees it (the token is shown only once, at creation)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    session_id: uuid.UUID | None = Field(
        description="The session it was taken of; null once that session was deleted (the "
        "link still works)."
    )
    title: str = Field(description="The session's title when the link was made.")
    up_to_message_id: uuid.UUID | None = Field(description="The last message the link shows.")
    created_at: datetime


class ShareCreated(ShareRead):
    """A new share link, with its token: keep it, it is never shown again."""

    token: str = Field(description="The secret that opens the link; only its hash is stored.")
    url: str = Field(description="The absolute URL of GET /shared/{token}.")


SHARED_PARTS_DESCRIPTION = (
    "The message in order: `{type: text, text}` and `{type: file, file_id, media_type, "
    "filename, size}` (`missing: true` for a file deleted before the link was made; the "
    "others are in `files`). The model's reasoning is not shared."
)
_SHARED_PART_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "oneOf": [m.model_json_schema() for m in (TextPartRead, FilePartRead)],
        "discriminator": {"propertyName": "type"},
    },
}
# Written once when the link is made, from parts already checked; served as stored.
SharedParts = Annotated[list[dict[str, Any]], WithJsonSchema(_SHARED_PART_SCHEMA)]


class SharedMessage(BaseModel):
    """A message as a share link shows it: no usage, cost or reasoning."""

    id: uuid.UUID
    role: MessageRole
    content: str
    parts: SharedParts = Field(description=SHARED_PARTS_DESCRIPTION)
    status: str
    model: str | None
    created_at: datetime


class SharedFile(BaseModel):
    """A file a share link shows, and where its bytes are."""

    id: uuid.UUID
    filename: str
    media_type: str
    size: int
    url: str = Field(description="The absolute URL of its bytes, GET /shared/{token}/files/{id}.")


class SharedConversation(BaseModel):
    """What a share link shows: the conversation as it was when the link was made."""

    title: str
    created_at: datetime = Field(description="When the link was made.")
    messages: list[SharedMessage] = Field(description="Oldest first: one branch, root to leaf.")
    files: list[SharedFile]
