"""Turn a conversation's stored turns into a prompt that fits the model's context window."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from zyron.db.models import Role, Status
from zyron.errors import ContextTooLong
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


class Counter(Protocol):
    """Counts a model's tokens (zyron.llm.tokens.TokenCounter)."""

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
    prompt: Sequence[PromptMessage],
    *,
    system: str | None,
    window: int,
    reply_budget: int,
    counter: Counter,
    model: str,
) -> FittedPrompt:
    """Keep the system prompt, the last message and the newest whole turns that fit.

    `prompt` alternates user and assistant and ends with the user's new message (as
    build_prompt returns it). Earlier turns go in (user, assistant) pairs, newest first, so
    the kept part starts with a user turn: never a reply whose question was cut off.
    """
    budget = window - reply_budget
    used = counter.count(system) if system else 0
    last = prompt[-1]
    used += counter.count(last["content"])
    if used > budget:
        raise ContextTooLong(
            f"The message and system prompt take about {used} tokens; model '{model}' takes "
            f"{budget} with room for a {reply_budget}-token reply. Send a shorter message, or "
            "a smaller max_tokens."
        )
    earlier = prompt[:-1]
    keep = 0
    # Pairs from the newest: earlier[-2] is a user turn, earlier[-1] the reply to it.
    while keep + 2 <= len(earlier):
        question, answer = earlier[-keep - 2], earlier[-keep - 1]
        cost = counter.count(question["content"]) + counter.count(answer["content"])
        if used + cost > budget:
            break
        used += cost
        keep += 2
    return FittedPrompt(
        messages=[*earlier[len(earlier) - keep :], last],
        turns_sent=keep,
        turns_omitted=len(earlier) - keep,
        input_tokens=used,
    )
