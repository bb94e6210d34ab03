"""Turn a conversation's stored turns into a prompt the Messages API accepts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from zyron.db.models import Role, Status
from zyron.llm.base import PromptMessage
from zyron.sessions.repository import TurnRow

# A reply cut short still carries what the user saw; an error or one in flight does not.
_REPLY_STATUSES_SENT = {Status.COMPLETE, Status.INTERRUPTED, Status.CANCELLED}


def stored_turns(messages: Iterable[TurnRow]) -> list[tuple[str, str]]:
    """Keep the turns worth sending: user messages and replies that have text."""
    turns = []
    for message in messages:
        if message.role == Role.ASSISTANT and message.status not in _REPLY_STATUSES_SENT:
            continue
        turns.append((message.role, message.content))
    return turns


def build_prompt(history: Sequence[tuple[str, str]], message: str) -> list[PromptMessage]:
    """Return alternating turns that start with the user and end with `message`."""
    prompt: list[PromptMessage] = []
    for role, content in [*history, (Role.USER.value, message)]:
        if not content.strip():
            continue
        # A failed turn leaves two user messages in a row: join them, as the API wants turns
        # to alternate.
        if prompt and prompt[-1]["role"] == role:
            prompt[-1]["content"] += "\n\n" + content
        else:
            prompt.append({"role": _role(role), "content": content})
    while prompt and prompt[0]["role"] != "user":
        prompt.pop(0)
    return prompt


def _role(role: str) -> Literal["user", "assistant"]:
    return "assistant" if role == Role.ASSISTANT else "user"
