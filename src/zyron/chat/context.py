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


def build_history(turns: Sequence[tuple[str, str]]) -> list[PromptMessage]:
    """Return earlier turns alternating and starting with the user's.

    A user message whose reply failed is joined with the next user message, as the APIs
    want turns to alternate; the list may end with such an unanswered user turn.
    """
    history: list[PromptMessage] = []
    for role, content in turns:
        if not content.strip():
            continue
        if history and history[-1]["role"] == _role(role):
            history[-1]["content"] += "\n\n" + content
        elif history or _role(role) == "user":  # the first turn must be the user's
            history.append({"role": _role(role), "content": content})
    return history


def join_message(history: Sequence[PromptMessage], message: str) -> list[PromptMessage]:
    """Append the new message, joined to an unanswered user turn before it."""
    prompt = [PromptMessage(role=m["role"], content=m["content"]) for m in history]
    if prompt and prompt[-1]["role"] == "user":
        prompt[-1]["content"] += "\n\n" + message
    else:
        prompt.append({"role": "user", "content": message})
    return prompt


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
    system: str | None,
    window: int,
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
    used += counter.count(message)
    if used > budget:
        raise ContextTooLong(
            f"The message and system prompt take about {used} tokens; model '{model}' takes "
            f"{budget} with room for a {reply_budget}-token reply. Send a shorter message, or "
            "a smaller max_tokens."
        )
    earlier = list(history)
    sent: list[PromptMessage] = []
    if earlier and earlier[-1]["role"] == "user":
        pending = earlier.pop()
        joined = join_message([pending], message)[0]["content"]
        cost = counter.count(joined) - counter.count(message)
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
        if used + cost > budget:
            break
        used += cost
        keep += 2
    turns_sent = keep + len(sent)
    return FittedPrompt(
        messages=join_message([*earlier[len(earlier) - keep :], *sent], message),
        turns_sent=turns_sent,
        turns_omitted=len(history) - turns_sent,
        input_tokens=used,
    )
