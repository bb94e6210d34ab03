"""POST /import: read the file, refuse it whole or import it whole, in the request's transaction.

Everything is checked before anything is written; what can only fail while writing (the
storage, the database) fails the transaction, and the StorageWork deletes the objects stored
for rows that were not committed. Nothing is ever half imported.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.models import File
from zyron.errors import (
    ImportConflict,
    InvalidImport,
    PayloadTooLarge,
    UnsupportedMediaType,
    ZyronError,
)
from zyron.files import repository as files_repo
from zyron.files.deps import StorageWork, remove_objects
from zyron.files.service import check_file, check_storage_quota, display_name
from zyron.files.storage import StorageError, object_key
from zyron.portability import import_chatgpt, import_claude, import_zyron
from zyron.portability import repository as repo
from zyron.portability.archive import read_upload
from zyron.portability.imported import ImportBatch, ImportedConversation, ImportedFile
from zyron.portability.schemas import ImportSummary
from zyron.sessions.parts import file_part
from zyron.settings import Settings

log = logging.getLogger("zyron.portability")

USAGE_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "reasoning_tokens",
)


def parse(data: bytes, settings: Settings) -> ImportBatch:
    """Read the upload into conversations (and files); CPU-bound, so run off the event loop."""
    if len(data) > settings.max_import_bytes:
        raise PayloadTooLarge(
            f"The file is {len(data)} bytes; an import may be at most "
            f"{settings.max_import_bytes} (MAX_IMPORT_BYTES)."
        )
    upload = read_upload(data, settings)
    name = "file"
    if upload.format == "zyron":
        batch = import_zyron.read(upload.document, upload.zip, name, settings.signing_key())
    elif upload.format == "chatgpt":
        batch = import_chatgpt.read(upload.document, name)
    else:
        batch = import_claude.read(upload.document, name)
    _check_messages(batch, settings)
    return batch


async def import_file(
    db: AsyncSession, work: StorageWork, settings: Settings, user_id: uuid.UUID, data: bytes
) -> ImportSummary:
    """Import a file of any supported format; conversations imported before are skipped."""
    # Parsing, hashing and counting PDF pages are CPU-bound: in a worker thread, though
    # orjson and pydantic hold the GIL while they run (docs/export-import.md).
    batch = await asyncio.to_thread(parse, data, settings)
    fresh, skipped = await _fresh(db, user_id, batch.conversations)
    files = _files_to_import(batch, fresh)
    checked = await asyncio.to_thread(_checked_files, settings, files)
    stored, reused = await _store_files(db, work, settings, user_id, checked)
    messages = await _insert(db, user_id, fresh, stored)
    summary = ImportSummary(
        format=batch.format,
        sessions_created=len(fresh),
        sessions_skipped=skipped,
        messages_created=messages,
        files_created=len(stored) - reused,
        files_reused=reused,
    )
    log.info("imported", extra=summary.model_dump())
    return summary


def _check_messages(batch: ImportBatch, settings: Settings) -> None:
    """Hold a user's message to MAX_MESSAGE_CHARS, as POST /chat does."""
    cap = settings.max_message_chars
    for conversation in batch.conversations:
        for message in conversation.messages:
            if message.role == "user" and len(message.content) > cap:
                raise InvalidImport(
                    f"{message.where}: the message has {len(message.content)} characters; at "
                    f"most {cap} (MAX_MESSAGE_CHARS)."
                )


async def _fresh(
    db: AsyncSession, user_id: uuid.UUID, conversations: list[ImportedConversation]
) -> tuple[list[ImportedConversation], int]:
    """Split off the conversations the caller already has: same key, or their own session."""
    taken = await repo.taken_keys(db, user_id, {c.key for c in conversations})
    originals = {c.original_id for c in conversations if c.original_id is not None}
    owned = await repo.owned_session_ids(db, user_id, originals)
    fresh: list[ImportedConversation] = []
    for conversation in conversations:
        if conversation.key in taken or conversation.original_id in owned:
            continue
        taken.add(conversation.key)  # twice in one file: once
        fresh.append(conversation)
    return fresh, len(conversations) - len(fresh)


def _files_to_import(batch: ImportBatch, fresh: list[ImportedConversation]) -> list[ImportedFile]:
    """The files the new sessions use, and those no session of the file uses (plain uploads)."""
    used_by_any: set[str] = set()
    used_by_fresh: set[str] = set()
    fresh_ids = {id(c) for c in fresh}
    for conversation in batch.conversations:
        for message in conversation.messages:
            for part in message.parts:
                if part.get("type") == "file":
                    used_by_any.add(part["file_id"])
                    if id(conversation) in fresh_ids:
                        used_by_fresh.add(part["file_id"])
    return [
        file for ref, file in batch.files.items() if ref in used_by_fresh or ref not in used_by_any
    ]


@dataclass
class _Checked:
    file: ImportedFile
    filename: str
    media_type: str
    sha256: str


def _checked_files(settings: Settings, files: list[ImportedFile]) -> list[_Checked]:
    """Hold each file to the upload rules (type from the bytes, caps), naming the file."""
    checked = []
    for file in files:
        name = display_name(file.filename)
        try:
            media_type = check_file(settings, file.data, file.media_type, name)
        except UnsupportedMediaType as exc:
            raise InvalidImport(f"{file.where} ({name}): {exc.detail}") from exc
        except ZyronError as exc:
            exc.detail = f"{file.where} ({name}): {exc.detail}"
            raise
        checked.append(_Checked(file, name, media_type, hashlib.sha256(file.data).hexdigest()))
    return checked


@dataclass
class _Stored:
    id: uuid.UUID
    media_type: str
    filename: str
    size: int


async def _store_files(
    db: AsyncSession,
    work: StorageWork,
    settings: Settings,
    user_id: uuid.UUID,
    checked: list[_Checked],
) -> tuple[dict[str, _Stored], int]:
    """Store the new files (bytes, then rows); a file the caller has already is reused.

    The bytes are stored before the user's file lock is taken (a slow store must not hold
    up the user's other file changes); under it, the quota is counted again and the files
    to reuse looked up again, both authoritative until the commit.
    """
    wanted = {(c.sha256, c.filename) for c in checked}
    existing = await repo.files_by_content(db, user_id, wanted)
    new = [item for item in checked if (item.sha256, item.filename) not in existing]
    adding = sum(len(item.file.data) for item in new)
    await check_storage_quota(db, settings, user_id, adding, files=len(new))
    keys: list[tuple[_Checked, uuid.UUID, str]] = []
    for item in new:
        file_id = uuid.uuid4()
        key = object_key(user_id, file_id)
        try:
            await work.storage.put(key, item.file.data, item.media_type)
        except StorageError as exc:
            log.warning("import file not stored", extra={"reason": exc.reason})
            await remove_objects(work.storage, [key])
            raise
        work.stored(key)  # deleted again if the rows are not committed
        keys.append((item, file_id, key))
    await files_repo.lock_files_of(db, user_id)
    again = await repo.files_by_content(db, user_id, wanted)
    if any(key not in again for key in existing):
        raise ImportConflict(
            "A file this import would reuse was deleted while it ran; nothing was kept. "
            "Import the file again."
        )
    await check_storage_quota(db, settings, user_id, adding, files=len(new))
    stored: dict[str, _Stored] = {}
    reused = 0
    for item in checked:
        same: File | None = existing.get((item.sha256, item.filename))
        if same is not None:
            stored[item.file.ref] = _Stored(same.id, same.media_type, same.filename, same.size)
            reused += 1
    for item, file_id, key in keys:
        await files_repo.add_file(
            db,
            file_id=file_id,
            user_id=user_id,
            filename=item.filename,
            media_type=item.media_type,
            size=len(item.file.data),
            sha256=item.sha256,
            storage_key=key,
            now=item.file.created_at,
        )
        stored[item.file.ref] = _Stored(
            file_id, item.media_type, item.filename, len(item.file.data)
        )
    return stored, reused


@dataclass
class _Rows:
    sessions: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)


async def _insert(
    db: AsyncSession,
    user_id: uuid.UUID,
    conversations: list[ImportedConversation],
    stored: dict[str, _Stored],
) -> int:
    """Insert the sessions, their messages (new ids, same tree) and their files' links."""
    # Building a row per message is CPU work too: off the event loop.
    rows = await asyncio.to_thread(_rows_of, user_id, conversations, stored)
    # ImportConflict if a key free when read was taken since (a concurrent import of the
    # same file); any other error is not the caller's and propagates.
    await repo.add_sessions(db, rows.sessions)
    await repo.add_messages(db, rows.messages)
    await repo.add_links(db, rows.links)
    return len(rows.messages)


def _rows_of(
    user_id: uuid.UUID, conversations: list[ImportedConversation], stored: dict[str, _Stored]
) -> _Rows:
    """The column values of the new sessions, messages and links."""
    rows = _Rows()
    for conversation in conversations:
        session_id = uuid.uuid4()
        rows.sessions.append(
            {
                "id": session_id,
                "user_id": user_id,
                "title": conversation.title.replace("\x00", ""),
                "title_pending": False,
                "model": conversation.model,
                "system_prompt": None
                if conversation.system_prompt is None
                else conversation.system_prompt.replace("\x00", ""),
                "created_at": conversation.created_at,
                "updated_at": conversation.updated_at,
                "client_id": conversation.key,
            }
        )
        new_ids: dict[str, uuid.UUID] = {}
        for message in conversation.messages:  # parents first
            message_id = new_ids[message.ref] = uuid.uuid4()
            parts, linked = _resolved(_without_nul(message.parts), stored)
            usage = {column: message.usage.get(column) for column in USAGE_COLUMNS}
            rows.messages.append(
                {
                    "id": message_id,
                    "session_id": session_id,
                    "user_id": user_id,
                    "parent_id": None
                    if message.parent_ref is None
                    else new_ids[message.parent_ref],
                    "role": message.role,
                    "content": "".join(p["text"] for p in parts if p["type"] == "text"),
                    "parts": parts,
                    "status": message.status,
                    "model": message.model,
                    **usage,
                    "cost_nanousd": message.cost_nanousd,
                    "stop_reason": message.stop_reason,
                    "created_at": message.created_at,
                    "client_id": message.client_id,
                    "lease_expires_at": None,
                    "cancel_requested_at": None,
                }
            )
            rows.links.extend(
                {"message_id": message_id, "file_id": file_id, "user_id": user_id}
                for file_id in linked
            )
    return rows


def _resolved(
    parts: list[dict[str, Any]], stored: dict[str, _Stored]
) -> tuple[list[dict[str, Any]], list[uuid.UUID]]:
    """Point file parts at the imported files; one the import lacks becomes a missing file."""
    resolved: list[dict[str, Any]] = []
    linked: list[uuid.UUID] = []
    for part in parts:
        if part.get("type") != "file":
            resolved.append(part)
            continue
        file = stored.get(part["file_id"])
        if file is None or part.get("missing"):
            # A fresh id: the exported one may be another account's on this server.
            missing = file_part(
                uuid.uuid4(),
                media_type=part["media_type"],
                filename=part["filename"],
                size=part["size"],
            )
            resolved.append({**missing, "missing": True})
            continue
        resolved.append(
            dict(
                file_part(
                    file.id, media_type=file.media_type, filename=file.filename, size=file.size
                )
            )
        )
        if file.id not in linked:
            linked.append(file.id)
    return resolved, linked


def _without_nul(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop NUL characters from texts: Postgres stores none, in text or JSON (they show nothing)."""
    cleaned = []
    for part in parts:
        if "\x00" in part.get("text", ""):
            part = {**part, "text": part["text"].replace("\x00", "")}
        cleaned.append(part)
    return cleaned
