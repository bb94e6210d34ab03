"""The parts a message is made of, as stored in `messages.parts` and as the API shows them.

Stored parts may carry what only the server sees: a reasoning part's provider signature or
redacted data (sent back to the provider exactly as received). `public_parts` strips those.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NotRequired, TypedDict


class TextPart(TypedDict):
    """Text written by the user or the model."""

    type: Literal["text"]
    text: str


class ReasoningPart(TypedDict):
    """The model's thinking; `signature` and `redacted` stay on the server."""

    type: Literal["reasoning"]
    text: str
    provider: NotRequired[str]  # the name of the provider instance that produced it
    signature: NotRequired[str]  # Anthropic's signature of a thinking block
    redacted: NotRequired[str]  # the data of an Anthropic redacted_thinking block


class FilePart(TypedDict):
    """An attachment; `missing` once the file was deleted."""

    type: Literal["file"]
    file_id: str
    media_type: str
    filename: str
    size: int
    missing: NotRequired[bool]


Part = TextPart | ReasoningPart | FilePart

# What a client may see of a stored part, per type: everything else stays on the server.
_PUBLIC_KEYS: dict[str, tuple[str, ...]] = {
    "text": ("type", "text"),
    "reasoning": ("type", "text"),
    "file": ("type", "file_id", "media_type", "filename", "size", "missing"),
}


def text_part(text: str) -> TextPart:
    """Return a text part."""
    return {"type": "text", "text": text}


def file_part(file_id: uuid.UUID | str, *, media_type: str, filename: str, size: int) -> FilePart:
    """Return a file part for an attachment."""
    return {
        "type": "file",
        "file_id": str(file_id),
        "media_type": media_type,
        "filename": filename,
        "size": size,
    }


def stored_parts(parts: Sequence[dict[str, Any]] | None, content: str) -> list[dict[str, Any]]:
    """Return a row's parts; a streaming reply without reasoning has only `content` so far."""
    if parts:
        return list(parts)
    return [dict(text_part(content))] if content else []


def public_parts(parts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the parts as clients see them: no signatures, no redacted data."""
    shown = []
    for part in parts:
        keys = _PUBLIC_KEYS.get(part.get("type", ""))
        if keys is None:
            continue
        public = {key: part[key] for key in keys if key in part}
        if part.get("type") == "reasoning" and "redacted" in part:
            public["redacted"] = True  # that there was thinking is shown, never its data
        shown.append(public)
    return shown


def mark_missing(parts: Iterable[dict[str, Any]], file_id: uuid.UUID) -> list[dict[str, Any]]:
    """Return the parts with the file's parts marked missing (the file was deleted)."""
    marked = []
    for part in parts:
        if part.get("type") == "file" and part.get("file_id") == str(file_id):
            part = {**part, "missing": True}
        marked.append(part)
    return marked
