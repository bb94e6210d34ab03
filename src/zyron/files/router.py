"""The /files routes: upload, list, download and delete the caller's files."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Query, Request, Response, UploadFile, status

from zyron.auth.deps import CurrentUser
from zyron.db import models
from zyron.db.deps import UserDb
from zyron.errors import (
    FileShared,
    InvalidInput,
    InvalidToken,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    StorageQuotaExceeded,
    UnsupportedMediaType,
    error_responses,
)
from zyron.files import repository as repo
from zyron.files import service
from zyron.files.deps import AfterCommit, FileStorage, OwnedFile
from zyron.files.schemas import FileRead
from zyron.files.sniff import SUPPORTED_TYPES
from zyron.files.storage import StorageError
from zyron.state import get_state

router = APIRouter(
    prefix="/files",
    tags=["files"],
    responses=error_responses(NotAuthenticated, InvalidToken),
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        PayloadTooLarge, StorageQuotaExceeded, UnsupportedMediaType, StorageError
    ),
)
async def upload_file(
    request: Request,
    principal: CurrentUser,
    db: UserDb,
    work: AfterCommit,
    file: Annotated[
        UploadFile | None, File(description="The file: its type is decided from its bytes.")
    ] = None,
) -> FileRead:
    """Upload a file (multipart/form-data, field `file`): an image, a PDF or UTF-8 text."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("Send the file as multipart/form-data, in a field named 'file'.")
    if file is None:
        raise InvalidInput("file: Field required (a multipart part named 'file').")
    row = await service.upload(
        db,
        work,
        get_state(request).settings,
        principal.user_id,
        data=await file.read(),
        declared_type=file.content_type,
        filename=file.filename,
    )
    return FileRead.model_validate(row)


@router.get("", responses=error_responses(NotFound))
async def list_files(
    request: Request,
    principal: CurrentUser,
    db: UserDb,
    limit: Annotated[int, Query(ge=1, description="At most MAX_FILES_PAGE (200).")] = 50,
    before: Annotated[
        uuid.UUID | None,
        Query(description="A file id: return the files uploaded before it (paging back)."),
    ] = None,
) -> list[FileRead]:
    """List the caller's files, newest first."""
    cap = get_state(request).settings.max_files_page
    if limit > cap:
        raise InvalidInput(f"limit: at most {cap}")
    anchor = None
    if before is not None:
        anchor = await repo.owned_file(db, principal.user_id, before)
        if anchor is None:
            raise NotFound("No such file.")
    files = await repo.list_files(db, principal.user_id, limit=limit, before=anchor)
    return [FileRead.model_validate(row) for row in files]


# The 200 of a route that serves a file's bytes (here, and a share link's files).
FILE_BYTES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            media_type: {"schema": {"type": "string", "format": "binary"}}
            for media_type in sorted(SUPPORTED_TYPES)
        },
        "description": "The file's bytes, with the type decided at upload (text with "
        "`; charset=utf-8`).",
    }
}


@router.get(
    "/{file_id}",
    response_class=Response,
    responses={**FILE_BYTES, **error_responses(NotFound, StorageError)},
)
async def download_file(file: OwnedFile, storage: FileStorage) -> Response:
    """Return the file's bytes, as an attachment of the type decided at upload."""
    return file_response(file, await service.read(storage, file))


def file_response(file: models.File, data: bytes) -> Response:
    """Return a file's bytes as an attachment that a browser neither sniffs nor runs."""
    return Response(
        content=data,
        media_type=file.media_type,
        headers={
            "Content-Disposition": content_disposition(file.filename),
            # The type is ours, decided from the bytes: browsers must not guess another.
            "X-Content-Type-Options": "nosniff",
            # Opened in a tab anyway, it runs nothing and loads nothing.
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        },
    )


@router.delete(
    "/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(NotFound, FileShared),
)
async def delete_file(file: OwnedFile, db: UserDb, work: AfterCommit) -> Response:
    """Delete a file; messages that used it keep a part marked missing (409 if a share shows it)."""
    await service.delete_file(db, work, file)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def content_disposition(filename: str) -> str:
    """Return `attachment` with an ASCII fallback name and the exact one as RFC 5987 filename*."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;%' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
