"""GET /export and GET /sessions/{id}/export: the caller's data in the v1 format, or Markdown.

The zip of a whole account is written to a temporary file, a session and a file at a time,
so memory holds one session's messages or one file's bytes, never the account.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import IO, Any

import orjson
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from zyron.auth.repository import user_by_id
from zyron.db.models import ChatSession, File, UsageDaily
from zyron.db.types import utcnow
from zyron.db.unit_of_work import unit_of_work
from zyron.files.sniff import PDF_TYPE
from zyron.files.storage import ObjectNotFound, Storage
from zyron.portability import repository as repo
from zyron.portability.schemas import DOCUMENT_NAME, FILES_DIR, FORMAT, VERSION
from zyron.portability.seal import sealed
from zyron.sessions import branches
from zyron.sessions.parts import stored_parts

log = logging.getLogger("zyron.portability")

# Far more than any session holds: a Markdown export is the whole active branch.
MAX_BRANCH = 1_000_000
_JSON_OPTIONS = orjson.OPT_UTC_Z
_COPY_BYTES = 1 << 20


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=_JSON_OPTIONS)


def _default(value: object) -> str:
    """asyncpg's UUIDs subclass uuid.UUID, which orjson writes only exactly."""
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


async def _user(db: AsyncSession, user_id: uuid.UUID) -> dict[str, Any]:
    user = await user_by_id(db, user_id)
    return {
        "id": user_id,
        "email": user.email if user else None,
        "display_name": user.display_name if user else None,
        "created_at": user.created_at if user else None,
    }


def _message(row: Row[Any], key: str) -> dict[str, Any]:
    """A message as the export writes it: parts as stored, signatures included and sealed."""
    return {
        "id": row.id,
        "parent_id": row.parent_id,
        "role": row.role,
        "content": row.content,
        "parts": [sealed(key, part) for part in stored_parts(row.parts, row.content)],
        "status": row.status,
        "model": row.model,
        "usage": {
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
            "cache_creation_input_tokens": row.cache_creation_input_tokens,
            "cache_read_input_tokens": row.cache_read_input_tokens,
            "reasoning_tokens": row.reasoning_tokens,
        },
        "cost_nanousd": row.cost_nanousd,
        "stop_reason": row.stop_reason,
        "created_at": row.created_at,
        "client_id": row.client_id,
    }


def _session(chat: ChatSession, messages: Iterable[Row[Any]], key: str) -> dict[str, Any]:
    return {
        "id": chat.id,
        "title": chat.title,
        "model": chat.model,
        "system_prompt": chat.system_prompt,
        "created_at": chat.created_at,
        "updated_at": chat.updated_at,
        "client_id": chat.client_id,
        "messages": [_message(row, key) for row in messages],
    }


def _file(file: File, path: str | None) -> dict[str, Any]:
    return {
        "id": file.id,
        "filename": file.filename,
        "media_type": file.media_type,
        "size": file.size,
        "sha256": file.sha256,
        "created_at": file.created_at,
        "path": path,
    }


def _usage(row: UsageDaily) -> dict[str, Any]:
    return {
        "day": row.day.isoformat(),
        "model": row.model,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cache_creation_input_tokens": row.cache_creation_input_tokens,
        "cache_read_input_tokens": row.cache_read_input_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "cost_nanousd": row.cost_nanousd,
        "unpriced_replies": row.unpriced_replies,
        "replies": row.replies,
    }


def _head(scope: str, user: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "scope": scope,
        "exported_at": utcnow(),
        "user": user,
    }


async def session_json(db: AsyncSession, chat: ChatSession, key: str) -> bytes:
    """One session in the v1 format: its files listed (path null), their bytes not included."""
    messages = await repo.messages_of(db, chat.user_id, chat.id)
    files = await repo.session_files(db, chat.user_id, chat.id)
    document = {
        **_head("session", await _user(db, chat.user_id)),
        "sessions": [_session(chat, messages, key)],
        "files": [_file(file, None) for file in files],
        "usage": [],
    }
    return _dumps(document)


async def session_markdown(db: AsyncSession, chat: ChatSession) -> str:
    """The active branch as Markdown: the title, then a section per message."""
    rows = await branches.branch(
        db,
        chat.user_id,
        chat.id,
        leaf_id=None,
        limit=MAX_BRANCH,
        columns=repo.EXPORT_COLUMNS,
    )
    lines = [f"# {_one_line(chat.title)}", ""]
    for row in rows:
        lines += [f"## {'User' if row.role == 'user' else 'Assistant'}", ""]
        attachments = []
        for part in stored_parts(row.parts, row.content):
            if part.get("type") == "text" and part.get("text"):
                lines += [part["text"], ""]
            elif part.get("type") == "reasoning":
                thinking = "(redacted)" if part.get("redacted") else part.get("text", "")
                lines += [
                    "<details><summary>Thinking</summary>",
                    "",
                    thinking,
                    "",
                    "</details>",
                    "",
                ]
            elif part.get("type") == "file":
                attachments.append(part)
        for part in attachments:
            name = _link_text(str(part.get("filename", "file")))
            if part.get("missing"):
                lines.append(f"- {name} (deleted)")
            else:
                lines.append(f"- [{name}](/files/{part.get('file_id')})")
        if attachments:
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _link_text(text: str) -> str:
    """A filename fit inside a Markdown link's brackets."""
    return "".join("\\" + ch if ch in "[]\\*_`" else ch for ch in _one_line(text))


@asynccontextmanager
async def snapshot(
    sessionmaker: async_sessionmaker[AsyncSession], claims: Mapping[str, Any]
) -> AsyncIterator[AsyncSession]:
    """Open a read-only transaction as the user in which every query sees the same moment.

    Postgres: REPEATABLE READ READ ONLY (under READ COMMITTED each statement would see its
    own). SQLite: its transactions (BEGIN IMMEDIATE) are serializable already.
    """
    bind = sessionmaker.kw["bind"]
    if bind.dialect.name == "postgresql":
        # Set as the transaction begins, before the identity's set_config: Postgres takes
        # the isolation level only before the first query.
        bind = bind.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        sessionmaker = async_sessionmaker(**{**sessionmaker.kw, "bind": bind})
    async with unit_of_work(sessionmaker, role="authenticated", claims=claims) as db:
        yield db


async def account_zip(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
    user_id: uuid.UUID,
    claims: Mapping[str, Any],
    key: str,
) -> IO[bytes]:
    """Write everything of the account to a zip in a temporary file; return it rewound.

    Every row is read in one snapshot (above), the sessions' JSON spooled to a second
    temporary file a session at a time; only once that transaction is over are the files'
    bytes fetched from storage (no transaction is held through downloads), then the document
    is written after them. Zip writes run in a worker thread: they compress and hit the disk.
    """
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the response, which closes it
    try:
        with tempfile.TemporaryFile() as body:
            async with snapshot(sessionmaker, claims) as db:
                files = await repo.files_of(db, user_id)
                head = _dumps(_head("account", await _user(db, user_id)))
                for index, chat in enumerate(await repo.sessions_of(db, user_id)):
                    messages = await repo.messages_of(db, user_id, chat.id)
                    chunk = _dumps(_session(chat, messages, key))
                    await asyncio.to_thread(body.write, (b"," if index else b"") + chunk)
                usage = [_usage(row) for row in await repo.usage_of(db, user_id)]
            with zipfile.ZipFile(spool, "w", allowZip64=True) as archive:
                listed = await _write_files(archive, storage, files)
                tail = b'],"files":' + _dumps(listed) + b',"usage":' + _dumps(usage) + b"}"
                await asyncio.to_thread(_write_document, archive, head, body, tail)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _write_document(archive: zipfile.ZipFile, head: bytes, body: IO[bytes], tail: bytes) -> None:
    """Write the document: the head's fields, the spooled sessions, then files and usage."""
    body.seek(0)
    with archive.open(_info(DOCUMENT_NAME, deflate=True), "w", force_zip64=True) as entry:
        entry.write(head[:-1] + b',"sessions":[')
        shutil.copyfileobj(body, entry, _COPY_BYTES)
        entry.write(tail)


async def _write_files(
    archive: zipfile.ZipFile, storage: Storage, files: Sequence[File]
) -> list[dict[str, Any]]:
    listed = []
    for file in files:
        path: str | None = f"{FILES_DIR}{file.id}"
        try:
            data = await storage.get(file.storage_key)
        except ObjectNotFound:
            log.error("stored object missing", extra={"file_id": str(file.id)})
            path = None
        else:
            # Images and PDFs are compressed already: stored as they are.
            compressed = file.media_type.startswith("image/") or file.media_type == PDF_TYPE
            info = _info(f"{FILES_DIR}{file.id}", deflate=not compressed)
            await asyncio.to_thread(archive.writestr, info, data)
        listed.append(_file(file, path))
    return listed


def _info(name: str, *, deflate: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_zip_time(utcnow()))
    info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    return info


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
