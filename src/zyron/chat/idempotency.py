"""Idempotency-Key for POST /chat: a retried request gets the first one's reply, not a new one."""

from __future__ import annotations

import hashlib
import json
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.chat.schemas import ChatRequest
from zyron.db.models import IdempotencyKey
from zyron.errors import ZyronError

MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(ZyronError):
    """The same key came with a different request."""

    status_code = 422
    code = "idempotency_key_reused"
    default_detail = (
        "This Idempotency-Key was already used with a different request body; "
        "use a new key for a new request."
    )


def fingerprint(body: ChatRequest) -> str:
    """Hash what the request asks for; `stream` only chooses the answer's form, so it is out."""
    canonical = body.model_dump(mode="json", exclude={"stream"})
    # Left out and null differ for parent_id (continue vs. a new first message); left out, it
    # is absent, so keys stored before the field existed still match.
    if "parent_id" not in body.model_fields_set:
        del canonical["parent_id"]
    for name in ("reasoning", "attachments"):  # fields added later: absent when unused
        if canonical[name] is None:
            del canonical[name]
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


async def find(db: AsyncSession, user_id: uuid.UUID, key: str) -> IdempotencyKey | None:
    """Return the exchange this user's key produced before, if any."""
    result = await db.execute(
        select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    )
    return result.scalar_one_or_none()


def remember(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    key: str,
    request_hash: str,
    session_id: uuid.UUID,
    user_message_id: uuid.UUID,
    assistant_message_id: uuid.UUID,
) -> None:
    """Record the key with the exchange, in the transaction that saves the user's message."""
    db.add(
        IdempotencyKey(
            user_id=user_id,
            key=key,
            request_hash=request_hash,
            session_id=session_id,
            user_message_id=user_message_id,
            assistant_message_id=assistant_message_id,
        )
    )
