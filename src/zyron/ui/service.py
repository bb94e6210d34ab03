"""POST /ui/chat's way: useChat's messages into a chat request, then the usual reply."""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.auth.principal import Principal
from zyron.chat import service
from zyron.chat.schemas import ChatRequest, HistoryTurn, InlineAttachment, RegenerateRequest
from zyron.chat.service import ClientIds, Started
from zyron.db.models import ChatSession, Message, Role, Status
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import InvalidInput, NotFound
from zyron.llm.base import TokenUsage
from zyron.sessions.branches import branch
from zyron.sessions.parts import public_parts, stored_parts
from zyron.sessions.repository import MESSAGE_COLUMNS
from zyron.sessions.schemas import stored_usage
from zyron.state import AppState
from zyron.ui.chunks import finish_metadata
from zyron.ui.schemas import UIChatRequest, UIMessage

log = logging.getLogger("zyron.ui")


async def send(
    state: AppState, body: UIChatRequest, principal: Principal | None, *, address: str
) -> Started:
    """Start the reply useChat asked for: to its last message, a regenerate, or an edit."""
    if principal is None:
        return await _guest(state, body, address)
    return await _signed_in(state, body, principal, address)


async def _guest(state: AppState, body: UIChatRequest, address: str) -> Started:
    """A guest: the earlier messages are the history; nothing is saved.

    A regenerate is the same: useChat sends the messages up to the question again.
    """
    *earlier, last = body.messages
    question = _question(last)
    try:
        request = ChatRequest(
            message=question,
            history=[
                HistoryTurn(role=m.role, content=_text(m)) for m in earlier if m.role != "system"
            ],
            attachments=_inline_files(last) or None,
            **_options(body),
        )
    except ValidationError as exc:  # a file part whose fields do not fit an attachment
        raise _invalid(exc) from exc
    started = await service.send_message(
        state, request, None, address=address, idempotency_key=None
    )
    assert isinstance(started, Started)  # only a signed-in request can be an idempotent replay
    return started


async def _signed_in(
    state: AppState, body: UIChatRequest, principal: Principal, address: str
) -> Started:
    """Signed in: the history is the session's; only the last message (or the trigger) is new.

    The chat id names the session: a Zyron session id, or useChat's own, which a new session
    keeps. On a submit, `messageId` names the message edited (the new one branches from the
    message before it, and keeps the id). A regenerate names the reply to replace, or the
    question to answer again; useChat's plain regenerate() names nothing, and its messages
    end at the question.
    """
    last = body.messages[-1]
    async with unit_of_work(
        state.sessionmaker, role="authenticated", claims=principal.claims
    ) as db:
        chat = await find_chat(db, principal.user_id, body.id)
        named = None
        regenerating = body.trigger == "regenerate-message"
        wanted = body.messageId or (last.id if regenerating else None)
        if wanted is not None:
            if chat is None:
                raise NotFound("No such chat.")
            named = await find_message(db, principal.user_id, chat.id, wanted)
            if named is None:
                raise NotFound("messageId: no such message in this chat.")
        if regenerating:
            assert named is not None
            assert chat is not None
            reply_id = named.id
            if named.role == Role.USER:  # answer the question again: its newest reply
                reply_id = await newest_reply(db, principal.user_id, chat.id, named.id)
    if regenerating:
        return await service.regenerate(
            state, principal, reply_id, RegenerateRequest(**_options(body))
        )
    question = _question(last)
    branch: dict[str, Any] = {}
    if named is not None:  # an edit: the new message follows what the edited one followed
        if named.role != Role.USER:
            raise InvalidInput("messageId: an edit names the user message it replaces")
        branch["parent_id"] = named.parent_id
    try:
        request = ChatRequest(
            message=question,
            session_id=chat.id if chat is not None else None,
            attachments=_stored_files(last) or None,
            **branch,
            **_options(body),
        )
    except ValidationError as exc:
        raise _invalid(exc) from exc
    ids = ClientIds(session=None if chat is not None else body.id, message=last.id)
    try:
        started = await service.send_message(
            state, request, principal, address=address, idempotency_key=None, client_ids=ids
        )
    except IntegrityError:
        # A first request of the same new chat, racing this one, made the session first.
        if chat is not None:
            raise
        async with unit_of_work(
            state.sessionmaker, role="authenticated", claims=principal.claims
        ) as db:
            chat = await find_chat(db, principal.user_id, body.id)
        if chat is None:
            raise
        request = request.model_copy(update={"session_id": chat.id})
        started = await service.send_message(
            state,
            request,
            principal,
            address=address,
            idempotency_key=None,
            client_ids=ClientIds(session=None, message=last.id),
        )
    assert isinstance(started, Started)  # no Idempotency-Key, so never a replay
    return started


async def newest_reply(
    db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID, question_id: uuid.UUID
) -> uuid.UUID:
    """The newest reply to a user message (what regenerate replaces); 404 if it has none."""
    result = await db.execute(
        select(Message.id)
        .where(
            Message.user_id == user_id,
            Message.session_id == session_id,
            Message.parent_id == question_id,
            Message.role == Role.ASSISTANT,
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    )
    reply_id = result.scalar_one_or_none()
    if reply_id is None:
        raise NotFound("This message has no reply to regenerate.")
    return reply_id


async def find_chat(db: AsyncSession, user_id: uuid.UUID, chat_id: str) -> ChatSession | None:
    """The user's session named by `chat_id`: its Zyron id, or the id a front end gave it."""
    match = ChatSession.client_id == chat_id
    with contextlib.suppress(ValueError):
        match = or_(match, ChatSession.id == uuid.UUID(chat_id))
    result = await db.execute(
        select(ChatSession).where(ChatSession.user_id == user_id, match).limit(1)
    )
    return result.scalar_one_or_none()


async def find_message(
    db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID, message_id: str
) -> Message | None:
    """A message of the session named by its Zyron id or by the id a front end gave it."""
    match = Message.client_id == message_id
    with contextlib.suppress(ValueError):
        match = or_(match, Message.id == uuid.UUID(message_id))
    result = await db.execute(
        select(Message)
        .where(Message.user_id == user_id, Message.session_id == session_id, match)
        # An edit keeps the edited message's id: the newest of the two is the one on show.
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


def _options(body: UIChatRequest) -> dict[str, Any]:
    """The reply options a front end may add to useChat's body, for ChatRequest."""
    options = {
        "model": body.model,
        "system": body.system,
        "max_tokens": body.max_tokens,
        "reasoning": body.reasoning,
    }
    return {name: value for name, value in options.items() if value is not None}


def _question(message: UIMessage) -> str:
    """The text of the message to answer, which must be the user's."""
    if message.role != "user":
        raise InvalidInput("messages: the last message must be the user's")
    question = _text(message)
    if not question.strip():
        raise InvalidInput("messages: the last message has no text")
    return question


def _invalid(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return InvalidInput(f"messages: {where}: {first['msg']}")


def _text(message: UIMessage) -> str:
    """The message's text parts, joined (its thinking is not sent back)."""
    return "".join(part.text or "" for part in message.parts if part.type == "text")


def _stored_files(message: UIMessage) -> list[uuid.UUID]:
    """A signed-in user's file parts: URLs of files uploaded with POST /files."""
    ids = []
    for index, part in enumerate(message.parts):
        if part.type != "file":
            continue
        path = urlsplit(part.url or "").path.rstrip("/")
        head, _, tail = path.rpartition("/")
        try:
            if not head.endswith("/files") and head != "/files":
                raise ValueError(path)
            ids.append(uuid.UUID(tail))
        except ValueError:
            raise InvalidInput(
                f"messages[-1].parts[{index}]: a file must be the URL of an uploaded file "
                "(…/files/{id}, from POST /files)"
            ) from None
    return ids


def _inline_files(message: UIMessage) -> list[InlineAttachment]:
    """A guest's file parts, which carry their bytes as data URLs."""
    files = []
    for index, part in enumerate(message.parts):
        if part.type != "file":
            continue
        url = part.url or ""
        header, _, data = url.partition(",")
        if not header.startswith("data:") or not header.endswith(";base64"):
            raise InvalidInput(
                f"messages[-1].parts[{index}]: a guest's file must be a base64 data: URL"
            )
        try:
            base64.b64decode(data, validate=True)
        except binascii.Error as exc:
            raise InvalidInput(f"messages[-1].parts[{index}]: the data is not base64") from exc
        media_type = part.mediaType or header.removeprefix("data:").removesuffix(";base64")
        files.append(InlineAttachment(media_type=media_type, data=data, filename=part.filename))
    return files


# What a UIMessage is made of, read off the active branch: the API's columns and the client id.
UI_COLUMNS = (*MESSAGE_COLUMNS, Message.client_id)


async def ui_messages(
    state: AppState, principal: Principal | None, chat_id: str, *, files_url: str
) -> list[dict[str, Any]]:
    """The chat's active branch as UIMessages (useChat's initial messages); [] when unknown.

    A reply still streaming is left out: useChat's resume brings it, and would show it twice.
    """
    if principal is None:
        return []
    async with unit_of_work(
        state.sessionmaker, role="authenticated", claims=principal.claims
    ) as db:
        chat = await find_chat(db, principal.user_id, chat_id)
        if chat is None:
            return []
        rows = await branch(
            db,
            principal.user_id,
            chat.id,
            leaf_id=None,
            limit=state.settings.max_messages_page,
            columns=UI_COLUMNS,
        )
    return [_ui_message(row, chat.id, files_url) for row in rows if row.status != Status.STREAMING]


async def streaming_reply(
    state: AppState, principal: Principal | None, chat_id: str
) -> Message | None:
    """The chat's reply in progress, if one is: what GET /ui/chat/{id}/stream replays."""
    if principal is None:
        return None
    async with unit_of_work(
        state.sessionmaker, role="authenticated", claims=principal.claims
    ) as db:
        chat = await find_chat(db, principal.user_id, chat_id)
        if chat is None:
            return None
        result = await db.execute(
            select(Message)
            .where(
                Message.session_id == chat.id,
                Message.user_id == principal.user_id,
                Message.role == Role.ASSISTANT,
                Message.status == Status.STREAMING,
            )
            .order_by(Message.created_at.desc())
            .limit(1)
        )
        return result.scalar_one_or_none()


def _ui_message(row: Any, session_id: uuid.UUID, files_url: str) -> dict[str, Any]:
    """One stored message as useChat keeps it: its id (the front end's, if it gave one)."""
    parts: list[dict[str, Any]] = []
    for part in public_parts(stored_parts(row.parts, row.content)):
        if part["type"] == "text":
            parts.append({"type": "text", "text": part["text"], "state": "done"})
        elif part["type"] == "reasoning":
            parts.append({"type": "reasoning", "text": part["text"], "state": "done"})
        elif part["type"] == "file" and not part.get("missing"):
            file_part = {
                "type": "file",
                "mediaType": part["media_type"],
                "url": f"{files_url}/{part['file_id']}",
            }
            if part.get("filename"):
                file_part["filename"] = part["filename"]
            parts.append(file_part)
    # The keys the live stream's start and finish chunks give, so both read alike.
    metadata: dict[str, Any] = {"sessionId": str(session_id), "saved": True}
    if row.role == Role.ASSISTANT:
        metadata |= {
            "userMessageId": str(row.parent_id),
            "assistantMessageId": str(row.id),
            "status": row.status,
            **finish_metadata(
                row.stop_reason,
                row.model,
                (stored_usage(row) or TokenUsage()).public(),
            ),
        }
    else:
        metadata["userMessageId"] = str(row.id)
    return {
        "id": row.client_id or str(row.id),
        "role": row.role,
        "parts": parts,
        "metadata": metadata,
    }
