"""GET /export, GET /sessions/{id}/export and POST /import: take your data away, bring it back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import IO, Annotated, Literal

from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from zyron.auth.deps import CurrentUser
from zyron.db.deps import UserDb
from zyron.db.types import utcnow
from zyron.errors import (
    ImportConflict,
    InvalidImport,
    InvalidToken,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    StorageQuotaExceeded,
    error_responses,
)
from zyron.files.deps import AfterCommit, FileStorage
from zyron.files.router import content_disposition
from zyron.files.storage import StorageError
from zyron.portability import export, service
from zyron.portability.schemas import ExportDocument, ImportSummary
from zyron.sessions.deps import OwnedSession
from zyron.state import get_state

router = APIRouter(tags=["export"], responses=error_responses(NotAuthenticated, InvalidToken))

CHUNK_BYTES = 1 << 20
_PRIVATE = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


@router.get(
    "/export",
    response_class=Response,
    responses={
        200: {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "A zip: `zyron-export.json` (the v1 format, docs/export-import.md) "
            "and each file's bytes as `files/<id>`.",
        },
        **error_responses(StorageError),
    },
)
async def export_account(
    request: Request, principal: CurrentUser, storage: FileStorage
) -> Response:
    """Export all of the caller's data as a zip: sessions with every branch, files, usage."""
    state = get_state(request)
    spool = await export.account_zip(
        state.sessionmaker,
        storage,
        principal.user_id,
        principal.claims,
        state.settings.signing_key(),
    )
    size = spool.seek(0, 2)
    spool.seek(0)
    name = f"zyron-export-{utcnow():%Y%m%d}.zip"
    return StreamingResponse(
        _chunks(spool),
        media_type="application/zip",
        headers={
            "Content-Disposition": content_disposition(name),
            "Content-Length": str(size),
            **_PRIVATE,
        },
        # Also closed when the body is never read (the client left before it started).
        background=BackgroundTask(spool.close),
    )


async def _chunks(spool: IO[bytes]) -> AsyncIterator[bytes]:
    """Read the temporary file off the event loop; close (delete) it however the send ends."""
    try:
        while chunk := await asyncio.to_thread(spool.read, CHUNK_BYTES):
            yield chunk
    finally:
        spool.close()


@router.get(
    "/sessions/{session_id}/export",
    response_class=Response,
    responses={
        200: {
            "model": ExportDocument,
            "content": {"text/markdown": {"schema": {"type": "string"}}},
            "description": "json: the session in the v1 format, every branch, its files listed "
            "without their bytes (GET /export includes them). markdown: the active branch.",
        },
        **error_responses(NotFound),
    },
)
async def export_session(
    request: Request,
    chat: OwnedSession,
    db: UserDb,
    format: Annotated[
        Literal["json", "markdown"],
        Query(description="json: the v1 format (docs/export-import.md); markdown: readable."),
    ] = "json",
) -> Response:
    """Export one session, as JSON (every branch) or Markdown (the active branch)."""
    stem = f"zyron-session-{chat.id}"
    if format == "markdown":
        text = await export.session_markdown(db, chat)
        return Response(
            text,
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": content_disposition(f"{stem}.md"), **_PRIVATE},
        )
    return Response(
        await export.session_json(db, chat, get_state(request).settings.signing_key()),
        media_type="application/json",
        headers={"Content-Disposition": content_disposition(f"{stem}.json"), **_PRIVATE},
    )


@router.post(
    "/import",
    responses=error_responses(
        InvalidImport, ImportConflict, PayloadTooLarge, StorageQuotaExceeded, StorageError
    ),
)
async def import_data(
    request: Request,
    principal: CurrentUser,
    db: UserDb,
    work: AfterCommit,
    file: Annotated[
        UploadFile,
        File(
            description="A Zyron export (.zip or .json), ChatGPT's conversations.json or its "
            "export .zip, or Claude.ai's conversations.json: the format is read from the content."
        ),
    ],
) -> ImportSummary:
    """Import conversations (multipart/form-data, field `file`); nothing is imported twice."""
    return await service.import_file(
        db, work, get_state(request).settings, principal.user_id, await file.read()
    )
