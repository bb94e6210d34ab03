"""The files that go to the model with a message: checked, loaded and counted.

Signed-in callers attach files uploaded with POST /files, by id; guests send them inline,
base64, checked exactly as uploads are and never stored. Earlier turns' files go with the
history. Each attachment is counted by its provider's documented formula (images by size,
PDFs by pages, text files as text), so context fitting still drops whole turns only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from zyron.chat.schemas import InlineAttachment
from zyron.db.models import File, Role
from zyron.errors import InvalidInput, NotAuthenticated, PayloadTooLarge, UnsupportedAttachment
from zyron.files import repository as files_repo
from zyron.files import service as files
from zyron.files.sniff import image_size, kind, pdf_pages
from zyron.llm.attachments import (
    PDF_PAGE_TOKENS,
    anthropic_image_tokens,
    openai_image_tokens,
    text_document,
)
from zyron.llm.base import Attachment, AttachmentKind, ModelSpec, Provider
from zyron.llm.registry import accepts
from zyron.llm.tokens import TokenCounter
from zyron.sessions.parts import file_part, stored_parts
from zyron.sessions.repository import TurnRow
from zyron.state import AppState

# What the model is told of a file it does not get costs a sentence.
NOTE_TOKENS = 40

_KIND_NAMES = {"image": "images", "pdf": "PDFs", "text": "text files"}


def base64_length(size: int) -> int:
    """How long `size` bytes are in base64: every 3 bytes, or part of them, become 4."""
    return 4 * -(-size // 3)


def check_count(attachments: Sequence[object] | None, limit: int) -> None:
    """Refuse more attachments than MAX_ATTACHMENTS."""
    if attachments is not None and len(attachments) > limit:
        raise InvalidInput(f"attachments: at most {limit} files per message (MAX_ATTACHMENTS)")


def stored_ids(attachments: Sequence[uuid.UUID | InlineAttachment] | None) -> list[uuid.UUID]:
    """Return a signed-in caller's file ids; inline files are for guests."""
    ids: list[uuid.UUID] = []
    for item in attachments or ():
        if not isinstance(item, uuid.UUID):
            raise InvalidInput(
                "attachments: signed-in callers upload files with POST /files and attach "
                "them by id; inline files are for guests"
            )
        ids.append(item)
    return ids


def guest_inline(
    attachments: Sequence[uuid.UUID | InlineAttachment] | None,
) -> list[InlineAttachment]:
    """Return a guest's inline files; stored ids need an account."""
    items: list[InlineAttachment] = []
    for item in attachments or ():
        if isinstance(item, uuid.UUID):
            raise NotAuthenticated(
                "Sign in to attach uploaded files; guests send attachments inline "
                "({media_type, data: base64, filename?})."
            )
        items.append(item)
    return items


def check_accepted(state: AppState, spec: ModelSpec, kinds: Iterable[AttachmentKind]) -> None:
    """Refuse a file the model cannot read, naming the models that can."""
    for name in kinds:
        if not accepts(spec, name):
            able = ", ".join(state.models.accepting(name)) or "none on this server"
            raise UnsupportedAttachment(
                f"Model '{spec.id}' does not take {_KIND_NAMES[name]}; models that do: {able}."
            )


def kinds_of(message: TurnRow) -> list[AttachmentKind]:
    """Return the kinds of a stored message's files that are still there."""
    return [
        kind(part["media_type"])
        for part in stored_parts(message.parts, message.content)
        if part.get("type") == "file" and not part.get("missing")
    ]


def attachment(
    media_type: str,
    filename: str,
    data: bytes,
    provider: Provider,
    counter: TokenCounter,
) -> Attachment:
    """Make an attachment for a provider, with its cost in the prompt."""
    file_kind = kind(media_type)
    if file_kind == "image":
        width, height = image_size(data, media_type)
        if provider.kind == "anthropic":
            tokens = anthropic_image_tokens(width, height)
        else:
            tokens = openai_image_tokens(width, height)
    elif file_kind == "pdf":
        tokens = pdf_pages(data) * PDF_PAGE_TOKENS
    else:
        tokens = counter.count(text_document(filename, data))
    return Attachment(file_kind, media_type, filename, data, tokens)


def inline_attachments(
    state: AppState,
    items: Sequence[InlineAttachment],
    spec: ModelSpec,
    provider: Provider,
) -> list[Attachment]:
    """Check a guest's inline files as uploads are checked; nothing is stored."""
    settings = state.settings
    loaded: list[Attachment] = []
    total = 0
    for index, item in enumerate(items):
        try:
            data = base64.b64decode(item.data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"attachments.{index}.data: not valid base64") from None
        total += len(data)
        if total > settings.max_inline_attachment_bytes:
            raise PayloadTooLarge(
                f"Inline attachments may have {settings.max_inline_attachment_bytes} bytes in "
                "all (MAX_INLINE_ATTACHMENT_BYTES); sign in and upload larger files."
            )
        filename = files.display_name(item.filename)
        media_type = files.check_file(settings, data, item.media_type, filename)
        check_accepted(state, spec, [kind(media_type)])
        loaded.append(attachment(media_type, filename, data, provider, state.models.counter(spec)))
    return loaded


async def owned_attachments(
    state: AppState,
    db: AsyncSession,
    user_id: uuid.UUID,
    ids: Sequence[uuid.UUID],
    spec: ModelSpec,
    provider: Provider,
) -> tuple[list[File], list[Attachment]]:
    """Load the caller's files for a new message: 404 for any not theirs, 422 if unreadable."""
    if not ids:
        return [], []
    owned = await files.owned_files(db, user_id, ids)
    check_accepted(state, spec, [kind(file.media_type) for file in owned])
    datas = await asyncio.gather(*(files.read(state.storage, file) for file in owned))
    counter = state.models.counter(spec)
    return owned, [
        attachment(file.media_type, file.filename, data, provider, counter)
        for file, data in zip(owned, datas, strict=True)
    ]


def parts_for(files_attached: Sequence[File], text: str) -> list[dict[str, Any]]:
    """Return a user message's parts: its files, then its text."""
    parts: list[dict[str, Any]] = [
        dict(file_part(file.id, media_type=file.media_type, filename=file.filename, size=file.size))
        for file in files_attached
    ]
    parts.append({"type": "text", "text": text})
    return parts


async def history_attachments(
    state: AppState,
    db: AsyncSession,
    user_id: uuid.UUID,
    turns: Iterable[TurnRow],
    spec: ModelSpec,
    provider: Provider,
) -> dict[str, Attachment]:
    """Load the files earlier user turns carry, by id; a deleted one becomes a note.

    A file the model cannot read (the session switched models since) is left out with a
    note, not refused: the conversation stays usable.
    """
    wanted: dict[str, dict[str, Any]] = {}
    for turn in turns:
        if turn.role != Role.USER or not turn.parts:
            continue
        for part in stored_parts(turn.parts, turn.content):
            if part.get("type") == "file":
                wanted.setdefault(part["file_id"], part)
    if not wanted:
        return {}
    present = await files_repo.files_by_id(
        db,
        user_id,
        [uuid.UUID(file_id) for file_id, part in wanted.items() if not part.get("missing")],
    )
    counter = state.models.counter(spec)
    loaded: dict[str, Attachment] = {}
    readable: list[File] = []
    for file_id, part in wanted.items():
        file = present.get(uuid.UUID(file_id))
        file_kind = kind(part["media_type"])
        if file is None:
            loaded[file_id] = Attachment(
                file_kind, part["media_type"], part["filename"], b"", NOTE_TOKENS, missing=True
            )
        elif not accepts(spec, file_kind):
            loaded[file_id] = Attachment(
                file_kind, file.media_type, file.filename, b"", NOTE_TOKENS, omitted=True
            )
        else:
            readable.append(file)
    datas = await asyncio.gather(*(files.read(state.storage, file) for file in readable))
    for file, data in zip(readable, datas, strict=True):
        loaded[str(file.id)] = attachment(file.media_type, file.filename, data, provider, counter)
    return loaded
