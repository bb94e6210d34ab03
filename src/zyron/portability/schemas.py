"""The export format (version 1) and the answer of POST /import.

The same models describe what GET /export and GET /sessions/{id}/export write and read a
Zyron export back in: docs/export-import.md is their reference.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from zyron.portability.imported import sane_time
from zyron.sessions.schemas import MessageRole

FORMAT = "zyron.export"
VERSION = 1
# The document inside the zip of GET /export, and where each file's bytes sit beside it.
DOCUMENT_NAME = "zyron-export.json"
FILES_DIR = "files/"

ImportFormat = Literal["zyron", "chatgpt", "claude"]
MessageStatus = Literal["streaming", "complete", "cancelled", "interrupted", "error"]


# A time read back by an import: with its zone, in UTC, in the years 1970..9000.
SaneTime = Annotated[AwareDatetime, AfterValidator(sane_time)]


class ExportModel(BaseModel):
    """A part of the export: unknown fields are ignored when one is read back."""

    model_config = ConfigDict(extra="ignore")


class ExportTextPart(ExportModel):
    """Text written by the user or the model."""

    type: Literal["text"]
    text: str


class ExportReasoningPart(ExportModel):
    """The model's thinking, with the provider's signature or redacted data, as stored."""

    type: Literal["reasoning"]
    text: str
    provider: str | None = Field(None, description="The provider instance that produced it.")
    signature: str | None = Field(
        None, description="The provider's signature of the thinking: sent back with it."
    )
    redacted: str | None = Field(None, description="The data of a redacted thinking block.")
    seal: str | None = Field(
        None,
        description="The exporting server's HMAC of provider, text, signature and redacted: "
        "an import keeps the signature only if the seal is its own and valid.",
    )


class ExportFilePart(ExportModel):
    """An attachment: `file_id` is an id of `files`; `missing` once the file was deleted."""

    type: Literal["file"]
    file_id: uuid.UUID
    media_type: str
    filename: str
    size: int
    missing: bool | None = None


ExportPart = Annotated[
    ExportTextPart | ExportReasoningPart | ExportFilePart, Field(discriminator="type")
]


# The columns' ranges: a value past them is refused by the import, not by the database.
Tokens = Annotated[int, Field(ge=0, le=2**31 - 1)]
NanoUsd = Annotated[int, Field(ge=0, le=2**63 - 1)]


class ExportUsage(ExportModel):
    """What a reply was billed, by kind, as stored (null: not reported)."""

    input_tokens: Tokens | None = None
    output_tokens: Tokens | None = None
    cache_creation_input_tokens: Tokens | None = None
    cache_read_input_tokens: Tokens | None = None
    reasoning_tokens: Tokens | None = None


class ExportMessage(ExportModel):
    """One message of any branch; `parent_id` links the tree."""

    id: uuid.UUID
    parent_id: uuid.UUID | None
    role: MessageRole
    content: str = Field(description="The text parts joined.")
    parts: list[ExportPart]
    status: MessageStatus
    model: str | None = Field(None, max_length=200)
    usage: ExportUsage = Field(default_factory=ExportUsage)
    cost_nanousd: NanoUsd | None = Field(None, description="What the reply cost, in nano-dollars.")
    stop_reason: str | None = Field(None, max_length=64)
    created_at: SaneTime
    client_id: str | None = Field(None, max_length=200)


class ExportSession(ExportModel):
    """A session with every message of every branch, oldest first."""

    id: uuid.UUID
    title: str = Field(min_length=1, max_length=200)
    model: str | None = Field(None, max_length=200)
    system_prompt: str | None = None
    created_at: SaneTime
    updated_at: SaneTime
    client_id: str | None = Field(None, max_length=200)
    messages: list[ExportMessage]


class ExportFile(ExportModel):
    """A file's metadata; `path` names its bytes in the zip (null: not included)."""

    id: uuid.UUID
    filename: str = Field(max_length=255)
    media_type: str = Field(max_length=100)
    size: NanoUsd
    sha256: str = Field(max_length=64)
    created_at: SaneTime
    path: str | None = Field(
        None,
        description="The zip entry holding the bytes; null in a single-session export, and "
        "where the stored bytes were missing.",
    )


class ExportUsageDay(ExportModel):
    """A row of daily usage (what this server billed): exported, never imported."""

    day: date
    model: str
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    reasoning_tokens: int
    cost_nanousd: int
    unpriced_replies: int
    replies: int


class ExportUser(ExportModel):
    """Who the data belongs to."""

    id: uuid.UUID
    email: str | None
    display_name: str | None
    created_at: datetime | None


class ExportDocument(ExportModel):
    """Version 1 of the export: everything of one account, or one session."""

    format: Literal["zyron.export"]
    version: Literal[1]
    scope: Literal["account", "session"]
    exported_at: datetime
    user: ExportUser
    sessions: list[ExportSession]
    files: list[ExportFile]
    usage: list[ExportUsageDay]


class ImportDocument(ExportModel):
    """What an import reads of a Zyron export: its sessions and files."""

    format: Literal["zyron.export"]
    version: Literal[1]
    sessions: list[ExportSession]
    files: list[ExportFile] = Field(default_factory=list)


class ImportSummary(BaseModel):
    """What an import did: conversations already imported before are skipped."""

    format: ImportFormat = Field(description="The format the file was read as.")
    sessions_created: int
    sessions_skipped: int = Field(
        description="Conversations imported before (same key), or sessions the caller owns."
    )
    messages_created: int
    files_created: int
    files_reused: int = Field(
        description="Files of the import the caller already had (same name and bytes)."
    )
