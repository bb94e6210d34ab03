"""POST /ui/chat's way: useChat's messages into a chat request, then the usual reply."""

from __future__ import annotations

import base64
import binascii

from pydantic import ValidationError

from zyron.auth.principal import Principal
from zyron.chat import service
from zyron.chat.schemas import ChatRequest, HistoryTurn, InlineAttachment
from zyron.chat.service import Started
from zyron.errors import InvalidInput, ZyronError
from zyron.state import AppState
from zyron.ui.schemas import UIChatRequest, UIMessage


class SignedInNotYet(ZyronError):
    """Signed-in callers of POST /ui/chat: the next slice of the work (docs/frontends.md)."""

    status_code = 501
    code = "not_implemented"
    default_detail = (
        "POST /ui/chat serves guests for now; signed-in callers use POST /chat until sessions "
        "keep useChat's ids (docs/frontends.md)."
    )


async def send(
    state: AppState, body: UIChatRequest, principal: Principal | None, *, address: str
) -> Started:
    """Start the reply to the chat's last user message; the earlier messages are the history."""
    if principal is not None:
        raise SignedInNotYet()
    if body.trigger != "submit-message":
        raise InvalidInput("trigger: a guest regenerates by sending the messages again")
    *earlier, last = body.messages
    if last.role != "user":
        raise InvalidInput("messages: the last message must be the user's")
    question = _text(last)
    if not question.strip():
        raise InvalidInput("messages: the last message has no text")
    try:
        request = ChatRequest(
            message=question,
            history=[
                HistoryTurn(role=m.role, content=_text(m)) for m in earlier if m.role != "system"
            ],
            attachments=_inline_files(last) or None,
            model=body.model,
            system=body.system,
            max_tokens=body.max_tokens,
            reasoning=body.reasoning,
        )
    except ValidationError as exc:  # a file part whose fields do not fit an attachment
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(f"messages: {where}: {first['msg']}") from exc
    started = await service.send_message(
        state, request, None, address=address, idempotency_key=None
    )
    assert isinstance(started, Started)  # only a signed-in request can be an idempotent replay
    return started


def _text(message: UIMessage) -> str:
    """The message's text parts, joined (its thinking is not sent back)."""
    return "".join(part.text or "" for part in message.parts if part.type == "text")


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
