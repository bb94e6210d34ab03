"""Uploads, reads and deletions of files; what the chat side calls to attach them."""

from __future__ import annotations

import hashlib
import logging
import unicodedata
import uuid
from collections.abc import Collection, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.models import ChatSession, File
from zyron.db.types import utcnow
from zyron.errors import (
    FileShared,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    StorageQuotaExceeded,
)
from zyron.files import repository as repo
from zyron.files.deps import StorageWork, remove_objects
from zyron.files.sniff import kind, pdf_pages, sniff
from zyron.files.storage import ObjectNotFound, Storage, StorageError, object_key
from zyron.limits.overrides import user_limits
from zyron.sessions import repository as sessions_repo
from zyron.sessions.parts import mark_missing
from zyron.settings import Settings

log = logging.getLogger("zyron.files")

MAX_FILENAME_CHARS = 255
DEFAULT_FILENAME = "file"


def display_name(raw: str | None) -> str:
    """Return a filename fit to show: no directories, no control characters, 255 at most."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Cc: control characters; Cf: invisible format characters (a right-to-left override
    # can make "gpj.exe" read as "exe.jpg").
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf"))
    name = name.strip()
    if name in ("", ".", ".."):
        return DEFAULT_FILENAME
    return name[:MAX_FILENAME_CHARS]


def size_cap(settings: Settings, media_type: str) -> tuple[int, str]:
    """Return the byte cap of a file of this type, and the setting it comes from."""
    per_kind = {
        "image": (settings.max_image_bytes, "MAX_IMAGE_BYTES"),
        "pdf": (settings.max_pdf_bytes, "MAX_PDF_BYTES"),
        "text": (settings.max_text_file_bytes, "MAX_TEXT_FILE_BYTES"),
    }[kind(media_type)]
    if per_kind[0] <= settings.max_file_bytes:
        return per_kind
    return settings.max_file_bytes, "MAX_FILE_BYTES"


def check_file(settings: Settings, data: bytes, declared_type: str | None, filename: str) -> str:
    """Return the file's media type, or raise why it is refused (empty, type, size, pages)."""
    if not data:
        raise InvalidInput("file: the file is empty.")
    if len(data) > settings.max_file_bytes:
        raise PayloadTooLarge(
            f"The file is {len(data)} bytes; a file may have at most "
            f"{settings.max_file_bytes} (MAX_FILE_BYTES)."
        )
    media_type = sniff(data, declared_type, filename)
    cap, setting = size_cap(settings, media_type)
    if len(data) > cap:
        raise PayloadTooLarge(
            f"The file is {len(data)} bytes; a {media_type} file may have at most {cap} "
            f"({setting})."
        )
    if media_type == "application/pdf" and settings.max_pdf_pages:
        pages = pdf_pages(data)
        if pages > settings.max_pdf_pages:
            raise PayloadTooLarge(
                f"The PDF has {pages} pages; at most {settings.max_pdf_pages} (MAX_PDF_PAGES)."
            )
    return media_type


async def upload(
    db: AsyncSession,
    work: StorageWork,
    settings: Settings,
    user_id: uuid.UUID,
    *,
    data: bytes,
    declared_type: str | None,
    filename: str | None,
) -> File:
    """Check the file, store its bytes, then insert its row; a refusal leaves nothing behind."""
    name = display_name(filename)
    media_type = check_file(settings, data, declared_type, name)
    # Counted before the bytes are stored (a file that cannot fit costs no write), and again
    # under the user's file lock, which is held from there to the commit: the bytes are
    # stored without it, so a slow store never holds up the user's other file changes.
    await check_storage_quota(db, settings, user_id, len(data))
    file_id = uuid.uuid4()
    key = object_key(user_id, file_id)
    # Stored before the row is written: a row never points at bytes that are not there.
    try:
        await work.storage.put(key, data, media_type)
    except StorageError as exc:
        log.warning("file not stored", extra={"reason": exc.reason, "size": len(data)})
        await remove_objects(work.storage, [key])  # a half-written one, if the backend left it
        raise
    work.stored(key)  # deleted again if the row is not committed (a refusal below included)
    await repo.lock_files_of(db, user_id)
    await check_storage_quota(db, settings, user_id, len(data))
    row = await repo.add_file(
        db,
        file_id=file_id,
        user_id=user_id,
        filename=name,
        media_type=media_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_key=key,
        now=utcnow(),
    )
    log.info(
        "file uploaded",
        extra={"file_id": str(file_id), "media_type": media_type, "size": len(data)},
    )
    return row


async def check_storage_quota(
    db: AsyncSession, settings: Settings, user_id: uuid.UUID, size: int, *, files: int = 1
) -> None:
    """Refuse `files` new files of `size` bytes in all that would take the user past
    MAX_STORAGE_BYTES_PER_USER (or what an administrator set for them)."""
    limits = await user_limits(db, settings, user_id)
    quota = limits.storage_bytes
    if not quota or not files:
        return
    used = await repo.used_bytes(db, user_id)
    if used + size > quota:
        what = (
            f"this one ({size} bytes) does"
            if files == 1
            else f"these {files} files ({size} bytes) do"
        )
        raise StorageQuotaExceeded(
            f"Your files take {used} of your {quota} bytes ({limits.setting('storage_bytes')}); "
            f"{what} not fit. Delete some files first.",
            limit="storage_quota",
        )


async def read(storage: Storage, file: File) -> bytes:
    """Return the file's bytes."""
    try:
        return await storage.get(file.storage_key)
    except ObjectNotFound as exc:
        # The row says the bytes exist: they were lost outside Zyron (or a bug). Loud in logs.
        log.error("stored object missing", extra={"file_id": str(file.id)})
        raise NotFound("The file's contents are missing.") from exc
    except StorageError as exc:
        log.warning("file not read", extra={"file_id": str(file.id), "reason": exc.reason})
        raise


async def delete_file(db: AsyncSession, work: StorageWork, file: File) -> None:
    """Mark the file missing in the messages that use it, delete its row, then its bytes.

    A file a share link shows is refused (409), untouched: the link promises to serve it.
    """
    await repo.lock_files_of(db, file.user_id)
    shares = await repo.shares_showing(db, file.user_id, file.id)
    if shares:
        raise FileShared(
            f"{len(shares)} share link(s) show this file ({', '.join(map(str, shares))}); "
            "revoke them first (DELETE /shares/{id})."
        )
    messages = await repo.messages_using(db, file.user_id, file.id)
    for message in messages:
        message.parts = mark_missing(message.parts or [], file.id)
    await db.flush()
    keys = await repo.delete_files(db, file.user_id, [file.id])
    work.orphaned(keys)
    log.info("file deleted", extra={"file_id": str(file.id), "messages_marked": len(messages)})


async def delete_session(db: AsyncSession, work: StorageWork, chat: ChatSession) -> None:
    """Delete a session, its messages, and the files that only its messages used.

    Files uploaded but never attached, files another session's messages still use, and files
    a share link shows, stay.
    """
    await repo.lock_files_of(db, chat.user_id)
    used = await repo.session_file_ids(db, chat.user_id, chat.id)
    await sessions_repo.delete_session(db, chat)
    keys = await delete_unused(db, work, chat.user_id, used)
    if keys:
        log.info("session files deleted", extra={"session_id": str(chat.id), "files": len(keys)})


async def delete_unused(
    db: AsyncSession, work: StorageWork, user_id: uuid.UUID, file_ids: Collection[uuid.UUID]
) -> list[str]:
    """Delete those of the files no message links and no share shows: rows now, bytes after.

    Returns the storage keys of the files deleted (their bytes go once the commit is done).
    """
    still_used = await repo.linked_file_ids(db, user_id, file_ids)
    still_used |= await repo.shared_file_ids(db, user_id, file_ids)
    keys = await repo.delete_files(db, user_id, set(file_ids) - still_used)
    work.orphaned(keys)
    return keys


async def owned_files(db: AsyncSession, user_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> list[File]:
    """Return the user's files in the order given; 422 for a repeated id, 404 for any other's.

    The 404 names no id: nobody learns which of several ids exist.
    """
    if len(set(ids)) != len(ids):
        raise InvalidInput("attachments: the same file is attached more than once.")
    found = await repo.files_by_id(db, user_id, ids)
    if len(found) != len(ids):
        raise NotFound("No such file.")
    return [found[file_id] for file_id in ids]


async def link(
    db: AsyncSession, user_id: uuid.UUID, message_id: uuid.UUID, files: Sequence[File]
) -> None:
    """Record that the message uses the files (what deleting a file or session follows)."""
    await repo.add_links(db, user_id, message_id, [file.id for file in files])
