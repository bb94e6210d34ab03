"""The share link routes: the owner makes, lists and revokes links; anyone with a token reads."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from zyron.auth.deps import CurrentUser
from zyron.db.deps import UserDb
from zyron.errors import (
    ErrorBody,
    InvalidInput,
    InvalidToken,
    NotAuthenticated,
    NotFound,
    NothingToShare,
    ReplyInProgress,
    error_responses,
)
from zyron.files import service as files_service
from zyron.files.deps import AfterCommit, FileStorage
from zyron.files.router import FILE_BYTES, file_response
from zyron.files.storage import StorageError
from zyron.limits.client_ip import parse_address
from zyron.limits.deps import hit
from zyron.limits.rates import RateLimited
from zyron.sessions.deps import OwnedSession
from zyron.shares import service
from zyron.shares.deps import OwnedShare, ShareDb, SharedLink
from zyron.shares.schemas import (
    ShareCreate,
    ShareCreated,
    SharedConversation,
    SharedFile,
    SharedMessage,
    ShareRead,
)
from zyron.state import get_state

MAX_SHARES_PAGE = 200
SIGNED_IN = error_responses(NotAuthenticated, InvalidToken)

# The owner's routes.
router = APIRouter(tags=["shares"])


# The holder of a token's: no account, no Authorization header read.
async def _count_read(request: Request) -> None:
    """Count a share link read against its address's limit, before the database is asked."""
    await hit(request, "shared_ip")


# No account: a link is read by anyone who holds it, so reads are limited per address.
public_router = APIRouter(
    prefix="/shared",
    tags=["shares"],
    dependencies=[Depends(_count_read)],
    responses=error_responses(RateLimited),
)

Limit = Annotated[int, Query(ge=1, le=MAX_SHARES_PAGE, description="At most 200.")]
Before = Annotated[
    uuid.UUID | None,
    Query(description="A share id: return the shares made before it (paging back)."),
]


@router.post(
    "/sessions/{session_id}/shares",
    status_code=status.HTTP_201_CREATED,
    responses={
        **SIGNED_IN,
        **error_responses(NotFound, NothingToShare, ReplyInProgress),
        # InvalidInput (a branch too long for a link) shares the 422 with the body's checks.
        422: {
            "model": ErrorBody,
            "description": f"`{InvalidInput.code}`: the branch has more than "
            f"{service.MAX_SHARED_MESSAGES} messages or takes more than "
            f"{service.MAX_SNAPSHOT_BYTES} bytes (share up to an earlier message), or a field "
            "of the body is invalid; `invalid_json`. The detail names the field",
        },
    },
)
async def create_share(
    request: Request, chat: OwnedSession, db: UserDb, body: ShareCreate | None = None
) -> ShareCreated:
    """Make a share link: a snapshot of a branch of the session that anyone with the link reads.

    The token is in this answer only. `409 reply_in_progress` while a reply on the branch is
    still being produced, `409 nothing_to_share` for a session without messages, `422
    validation_error` for a branch too long for a link.
    """
    up_to = body.up_to_message_id if body is not None else None
    share, token = await service.create_share(db, chat, up_to_message_id=up_to)
    return ShareCreated(
        **ShareRead.model_validate(share).model_dump(),
        token=token,
        url=link(request, "read_shared", token=token),
    )


@router.get("/sessions/{session_id}/shares", responses={**SIGNED_IN, **error_responses(NotFound)})
async def list_session_shares(
    chat: OwnedSession, db: UserDb, limit: Limit = 50, before: Before = None
) -> list[ShareRead]:
    """List the session's share links, newest first."""
    shares = await service.list_shares(
        db, chat.user_id, limit=limit, before=before, session_id=chat.id
    )
    return [ShareRead.model_validate(share) for share in shares]


@router.get("/shares", responses={**SIGNED_IN, **error_responses(NotFound)})
async def list_shares(
    principal: CurrentUser, db: UserDb, limit: Limit = 50, before: Before = None
) -> list[ShareRead]:
    """List all the caller's share links, newest first: those of deleted sessions too."""
    shares = await service.list_shares(db, principal.user_id, limit=limit, before=before)
    return [ShareRead.model_validate(share) for share in shares]


@router.delete(
    "/shares/{share_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**SIGNED_IN, **error_responses(NotFound)},
)
async def revoke_share(share: OwnedShare, db: UserDb, work: AfterCommit) -> Response:
    """Revoke a share link: its token opens nothing from now on; files it alone kept go."""
    await service.revoke_share(db, work, share)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@public_router.get("/{token}", name="read_shared", responses=error_responses(NotFound))
async def read_shared(
    request: Request, response: Response, token: str, share: SharedLink, db: ShareDb
) -> SharedConversation:
    """Read a share link, without an account: the conversation as it was, and its files."""
    # Kept by no cache, so a revoked link is gone at once; unlisted, so never indexed.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    files = await service.held_files(db, share, token)
    return SharedConversation(
        title=share.title,
        created_at=share.created_at,
        messages=[SharedMessage.model_validate(message) for message in share.snapshot],
        files=[
            SharedFile(
                id=file.id,
                filename=file.filename,
                media_type=file.media_type,
                size=file.size,
                url=link(request, "read_shared_file", token=token, file_id=file.id),
            )
            for file in files
        ],
    )


@public_router.get(
    "/{token}/files/{file_id}",
    name="read_shared_file",
    response_class=Response,
    responses={**FILE_BYTES, **error_responses(NotFound, StorageError)},
)
async def read_shared_file(
    token: str, file_id: uuid.UUID, share: SharedLink, db: ShareDb, storage: FileStorage
) -> Response:
    """Return the bytes of a file the share link shows, as GET /files/{id} does its owner's."""
    file = await service.held_file(db, token, file_id)
    return file_response(file, await files_service.read(storage, file))


def link(request: Request, route: str, **params: Any) -> str:
    """Return the absolute URL of a route as the client reached this server.

    The host and root path are the request's. The scheme too, unless the peer is one of
    TRUSTED_PROXIES and says in X-Forwarded-Proto that the client came over another (a proxy
    that terminates TLS): from anyone else the header is ignored, as X-Forwarded-For is.
    """
    url = request.url_for(route, **params)
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if proto in ("http", "https") and proto != url.scheme and _from_trusted_proxy(request):
        url = url.replace(scheme=proto)
    return str(url)


def _from_trusted_proxy(request: Request) -> bool:
    trusted = get_state(request).clients.trusted
    peer = parse_address(request.client.host) if request.client else None
    return peer is not None and any(peer in network for network in trusted)
