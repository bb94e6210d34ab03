"""Making, reading and revoking share links.

A link shows a snapshot: the messages of one branch as they were when it was made, written
once into the share's row and never changed, so later edits, regenerations and deletions of
the session leave it as it was. Its files are not copied: share_files rows say which of the
owner's files it shows, and while any share shows a file, the file stays (zyron.files.service).

The token is 32 random bytes (secrets.token_urlsafe), shown once; only its SHA-256 is stored,
so a copy of the database opens no link.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.models import ChatSession, File, Share, Status
from zyron.db.types import utcnow
from zyron.errors import InvalidInput, NotFound, NothingToShare, ReplyInProgress
from zyron.files import repository as files_repo
from zyron.files import service as files_service
from zyron.files.deps import StorageWork
from zyron.sessions import branches
from zyron.sessions.parts import mark_missing, public_parts, stored_parts
from zyron.sessions.repository import MESSAGE_COLUMNS, MessageRow
from zyron.shares import repository as repo
from zyron.shares.repository import HeldShare
from zyron.shares.schemas import SharedMessage

log = logging.getLogger("zyron.shares")

TOKEN_BYTES = 32
# What secrets.token_urlsafe(32) makes: 43 characters of the URL-safe base64 alphabet.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
# The transaction-local setting anon's policies read (migration 0012).
HELD_SHARE_SETTING = "zyron.share_token_hash"
# A link is read whole, in one response: bounded in messages and in bytes.
MAX_SHARED_MESSAGES = 1000
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
# Shown to the holder of a token that opens nothing, whatever the reason (malformed, unknown,
# revoked): one answer, so none tells a guess apart from a revoked link.
NO_SUCH_LINK = "No such share link."
NO_SUCH_SESSION = "No such session."


def new_token() -> str:
    """Return a fresh, unguessable token."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """Return what is stored of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    """Tell whether a token has the shape new_token() gives (anything else opens nothing)."""
    return TOKEN_SHAPE.fullmatch(token) is not None


def shared_message(message: MessageRow) -> dict[str, Any]:
    """One message as a link shows it, as JSON: text and file parts, no reasoning, no usage.

    The reasoning goes: its text is the model's private scratchpad, which chat products do
    not publish with a conversation, and its signature must never leave the server.
    """
    parts = [
        part
        for part in public_parts(stored_parts(message.parts, message.content))
        if part["type"] != "reasoning"
    ]
    shown = SharedMessage(
        id=message.id,
        role=message.role,
        content=message.content,
        parts=parts,
        status=message.status,
        model=message.model,
        created_at=message.created_at,
    )
    return shown.model_dump(mode="json")


def file_ids_shown(messages: list[dict[str, Any]]) -> list[uuid.UUID]:
    """Return the ids of the files the messages' parts show (not those marked missing), in order."""
    seen: dict[uuid.UUID, None] = {}
    for message in messages:
        for part in message["parts"]:
            if part["type"] == "file" and not part.get("missing"):
                seen[uuid.UUID(part["file_id"])] = None
    return list(seen)


async def create_share(
    db: AsyncSession, chat: ChatSession, *, up_to_message_id: uuid.UUID | None
) -> tuple[Share, str]:
    """Snapshot a branch of the session into a new share; return it and its token.

    The branch is the active one, or the path down to `up_to_message_id` (a message of any
    branch of this session; 404 otherwise). Every message on it must be finished: a reply
    still being produced is a 409, as nothing would ever complete it in the snapshot. A
    session deleted meanwhile is a 404, and no share is written.
    """
    await files_repo.lock_files_of(db, chat.user_id)  # no file it shows is deleted meanwhile
    # Read again behind the lock, which a session's deletion takes too: one deleted since the
    # request found it is gone, not a session without messages.
    if not await repo.session_exists(db, chat.user_id, chat.id):
        raise NotFound(NO_SUCH_SESSION)
    rows: list[MessageRow] = list(
        await branches.branch(
            db,
            chat.user_id,
            chat.id,
            leaf_id=up_to_message_id,
            limit=MAX_SHARED_MESSAGES + 1,
            columns=MESSAGE_COLUMNS,
        )
    )
    if not rows:
        if up_to_message_id is not None:
            raise NotFound("No such message in this session.")
        raise NothingToShare()
    if len(rows) > MAX_SHARED_MESSAGES:
        raise InvalidInput(
            f"up_to_message_id: the branch has more than {MAX_SHARED_MESSAGES} messages, more "
            "than a share link shows; share up to an earlier message."
        )
    if any(row.status == Status.STREAMING for row in rows):
        raise ReplyInProgress(
            "A reply on this branch is still being produced; share once it has ended."
        )
    messages = [shared_message(row) for row in rows]
    wanted = file_ids_shown(messages)
    files = await files_repo.files_by_id(db, chat.user_id, wanted)
    for gone in (file_id for file_id in wanted if file_id not in files):
        # Deleted without its parts being marked (cannot happen through the API): shown as
        # deleted, which is what it is.
        for message in messages:
            message["parts"] = mark_missing(message["parts"], gone)
    size = len(orjson.dumps(messages))
    if size > MAX_SNAPSHOT_BYTES:
        raise InvalidInput(
            f"up_to_message_id: the branch takes {size} bytes, more than a share link shows "
            f"({MAX_SNAPSHOT_BYTES}); share up to an earlier message."
        )
    token = new_token()
    share = await repo.add_share(
        db,
        user_id=chat.user_id,
        session_id=chat.id,
        token_hash=token_hash(token),
        title=chat.title,
        up_to_message_id=rows[-1].id,
        snapshot=messages,
        file_ids=[file_id for file_id in wanted if file_id in files],
        now=utcnow(),
    )
    if share is None:
        # Deleted by a transaction that did not queue on the lock: its foreign key refused it.
        raise NotFound(NO_SUCH_SESSION)
    log.info(
        "share created",
        extra={
            "share_id": str(share.id),
            "session_id": str(chat.id),
            "messages": len(messages),
            "files": len(files),
        },
    )
    return share, token


async def list_shares(
    db: AsyncSession,
    user_id: uuid.UUID,
    *,
    limit: int,
    before: uuid.UUID | None,
    session_id: uuid.UUID | None = None,
) -> Sequence[Share]:
    """Return the user's shares (of one session), newest first, made before the share `before`.

    `before` must be one of the user's shares (404 otherwise): it says where the page starts.
    """
    anchor = None
    if before is not None:
        anchor = await repo.owned_share(db, user_id, before)
        if anchor is None:
            raise NotFound("No such share.")
    return await repo.list_shares(db, user_id, limit=limit, session_id=session_id, before=anchor)


async def revoke_share(db: AsyncSession, work: StorageWork, share: Share) -> None:
    """Delete the share; the files it alone kept (no message, no other share) go with it."""
    await files_repo.lock_files_of(db, share.user_id)
    shown = await repo.share_file_ids(db, share.user_id, share.id)
    await repo.delete_share(db, share)
    keys = await files_service.delete_unused(db, work, share.user_id, shown)
    log.info("share revoked", extra={"share_id": str(share.id), "files_deleted": len(keys)})


async def held_share(db: AsyncSession, token: str) -> HeldShare:
    """Return the share the token opens; NotFound, the same for every reason, otherwise."""
    found = await repo.held_share(db, token_hash(token)) if well_formed(token) else None
    if found is None:
        raise NotFound(NO_SUCH_LINK)
    return found


async def held_files(db: AsyncSession, share: HeldShare, token: str) -> list[File]:
    """Return the files the share shows, in the order its messages show them."""
    files = {file.id: file for file in await repo.held_files(db, token_hash(token))}
    order = {file_id: at for at, file_id in enumerate(file_ids_shown(share.snapshot))}
    return sorted(files.values(), key=lambda file: order.get(file.id, len(order)))


async def held_file(db: AsyncSession, token: str, file_id: uuid.UUID) -> File:
    """Return a file the share the token opens shows; NotFound otherwise."""
    found = await repo.held_file(db, token_hash(token), file_id)
    if found is None:
        raise NotFound("No such file in this share link.")
    return found
