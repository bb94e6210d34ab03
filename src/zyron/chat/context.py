"""Turn a conversation's stored turns into a prompt that fits the model's context window."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from zyron.db.models import Role, Status
from zyron.errors import ContextTooLong
from zyron.llm.base import Attachment, PromptMessage
from zyron.sessions.parts import stored_parts
from zyron.sessions.repository import TurnRow

# A reply cut short still carries what the user saw; an error or one in flight does not.
_REPLY_STATUSES_SENT = {Status.COMPLETE, Status.INTERRUPTED, Status.CANCELLED}


class Turn(NamedTuple):
    """An earlier turn: its text, a user turn's files, a reply's stored parts (reasoning)."""

    role: str
    content: str
    attachments: Sequence[Attachment] = ()
    parts: Sequence[dict[str, Any]] = ()


def stored_turns(
    messages: Iterable[TurnRow], attachments: Mapping[str, Attachment] | None = None
) -> list[Turn]:
    """Keep the turns worth sending: user messages and replies that have text.

    `attachments` are the loaded files by id; a user turn's file parts become them.
    """
    turns = []
    for message in messages:
        if message.role == Role.ASSISTANT and message.status not in _REPLY_STATUSES_SENT:
            continue
        parts = stored_parts(message.parts, message.content)
        files: list[Attachment] = []
        if attachments is not None and message.role == Role.USER:
            files = [
                attachments[part["file_id"]]
                for part in parts
                if part.get("type") == "file" and part["file_id"] in attachments
            ]
        reasoned = any(part.get("type") == "reasoning" for part in parts)
        turns.append(Turn(message.role, message.content, files, parts if reasoned else ()))
    return turns


def build_history(turns: Iterable[Turn | tuple[str, str]]) -> list[PromptMessage]:
    """Return earlier turns alternating and starting with the user's.

    A user message whose reply failed is joined with the next user message, as the APIs
    want turns to alternate; the list may end with such an unanswered user turn.
    """
    history: list[PromptMessage] = []
    for turn in turns:
        role, content, files, parts = Turn(*turn)
        if not content.strip():
            continue
        if history and history[-1]["role"] == _role(role):
            _join(history[-1], content, files)
        elif history or _role(role) == "user":  # the first turn must be the user's
            message = PromptMessage(role=_role(role), content=content)
            if files:
                message["attachments"] = list(files)
            if parts:
                message["parts"] = list(parts)
            history.append(message)
    return history


def join_message(
    history: Sequence[PromptMessage],
    message: str,
    attachments: Sequence[Attachment] = (),
) -> list[PromptMessage]:
    """Append the new message (with its files), joined to an unanswered user turn before it."""
    prompt = [_copy(m) for m in history]
    if prompt and prompt[-1]["role"] == "user":
        _join(prompt[-1], message, attachments)
    else:
        new = PromptMessage(role="user", content=message)
        if attachments:
            new["attachments"] = list(attachments)
        prompt.append(new)
    return prompt


def _copy(message: PromptMessage) -> PromptMessage:
    copy = PromptMessage(role=message["role"], content=message["content"])
    if "attachments" in message:
        copy["attachments"] = list(message["attachments"])
    if "parts" in message:
        copy["parts"] = message["parts"]
    return copy


def _join(turn: PromptMessage, content: str, attachments: Sequence[Attachment]) -> None:
    """Add a user turn to the one before it: text after text, files after files."""
    turn["content"] += "\n\n" + content
    if attachments:
        turn["attachments"] = [*turn.get("attachments", ()), *attachments]
    turn.pop("parts", None)  # a joined turn is no longer the reply as stored


def attachment_tokens(message: PromptMessage) -> int:
    """Return what a turn's files cost in the prompt."""
    return sum(attachment.tokens for attachment in message.get("attachments", ()))


def _role(role: str) -> Literal["user", "assistant"]:
    return "assistant" if role == Role.ASSISTANT else "user"


class Counter(Protocol):
    """Counts a model's tokens (zyron.llm.tokens.TokenCounter)."""

    @property
    def prompt_overhead(self) -> int:
        """Return the tokens a chat format adds once per prompt, whatever its turns."""
        ...

    def count(self, text: str) -> int:
        """Return the tokens `text` takes as one message."""
        ...


@dataclass(frozen=True, slots=True)
class FittedPrompt:
    """The turns that fit the model's window, and how many earlier ones were left out."""

    messages: list[PromptMessage]
    turns_sent: int  # earlier turns sent before the new message
    turns_omitted: int  # earlier turns left out, oldest first, to fit
    input_tokens: int  # the prompt's size as counted (exact or estimated)


def fit_prompt(
    history: Sequence[PromptMessage],
    message: str,
    *,
    attachments: Sequence[Attachment] = (),
    system: str | None,
    window: int,
    reasoning: bool = False,
    reply_budget: int,
    counter: Counter,
    model: str,
) -> FittedPrompt:
    """Keep the system prompt, the new message and the newest whole turns that fit.

    `history` alternates user and assistant and starts with a user turn (as build_history
    returns it). An unanswered user turn at its end (a failed reply) goes in first, joined to
    the message, if it fits; it is history like any other and never what makes the message
    too long. Then earlier turns go in (user, assistant) pairs, newest first, so the kept part
    starts with a user turn: never a reply whose question was cut off.
    """
    budget = window - reply_budget
    used = counter.prompt_overhead + (counter.count(system) if system else 0)
    used += counter.count(message) + sum(attachment.tokens for attachment in attachments)
    if used > budget:
        files = ", its attachments" if attachments else ""
        raise ContextTooLong(
            f"The message{files} and system prompt take about {used} tokens; model '{model}' "
            f"takes {budget} with room for a {reply_budget}-token reply. Send a shorter "
            "message or fewer files, or a smaller max_tokens."
        )
    earlier = list(history)
    sent: list[PromptMessage] = []
    if earlier and earlier[-1]["role"] == "user":
        pending = earlier.pop()
        joined = join_message([pending], message)[0]["content"]
        cost = counter.count(joined) - counter.count(message) + attachment_tokens(pending)
        if used + cost <= budget:
            used += cost
            sent = [pending]
    keep = 0
    # Pairs from the newest: earlier[-2] is a user turn, earlier[-1] the reply to it. They
    # still go in when an unanswered turn did not fit: a huge paste whose reply failed must
    # not cost the rest of the conversation.
    while keep + 2 <= len(earlier):
        question, answer = earlier[-keep - 2], earlier[-keep - 1]
        cost = counter.count(question["content"]) + counter.count(answer["content"])
        cost += attachment_tokens(question)
        if reasoning:  # a thinking turn may send earlier thinking back: count it, to be safe
            cost += sum(
                counter.count(part["text"])
                for part in answer.get("parts", ())
                if part.get("type") == "reasoning" and part.get("text")
            )
        if used + cost > budget:
            break
        used += cost
        keep += 2
    turns_sent = keep + len(sent)
    return FittedPrompt(
        messages=join_message([*earlier[len(earlier) - keep :], *sent], message, attachments),
        turns_sent=turns_sent,
        turns_omitted=len(history) - turns_sent,
        input_tokens=used,
    )
