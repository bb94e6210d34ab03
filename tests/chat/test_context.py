"""Unit tests of prompt building: alternating turns, failed turns, leading replies."""

from __future__ import annotations

import uuid

from zyron.chat.context import build_prompt, stored_turns
from zyron.db.models import Message, Role, Status


def _message(role: Role, content: str, status: Status = Status.COMPLETE) -> Message:
    return Message(
        id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        role=role,
        content=content,
        status=status,
    )


def test_new_conversation_is_one_user_turn() -> None:
    """Without history the prompt is the message alone."""
    assert build_prompt([], "hi") == [{"role": "user", "content": "hi"}]


def test_history_keeps_order_and_ends_with_the_message() -> None:
    """Earlier turns go oldest first, then the new message."""
    history = [("user", "a"), ("assistant", "b")]
    assert build_prompt(history, "c") == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]


def test_failed_turn_is_merged_so_roles_alternate() -> None:
    """A user message whose reply failed is joined with the next one."""
    messages = [
        _message(Role.USER, "first"),
        _message(Role.ASSISTANT, "", Status.ERROR),
        _message(Role.USER, "again"),
        _message(Role.ASSISTANT, "", Status.STREAMING),
    ]
    prompt = build_prompt(stored_turns(messages), "third")
    assert prompt == [{"role": "user", "content": "first\n\nagain\n\nthird"}]


def test_interrupted_and_cancelled_replies_keep_their_text() -> None:
    """What the user saw of a cut-short reply stays in the context."""
    messages = [
        _message(Role.USER, "q1"),
        _message(Role.ASSISTANT, "partial", Status.INTERRUPTED),
        _message(Role.USER, "q2"),
        _message(Role.ASSISTANT, "stopped", Status.CANCELLED),
    ]
    roles = [turn["role"] for turn in build_prompt(stored_turns(messages), "q3")]
    assert roles == ["user", "assistant", "user", "assistant", "user"]


def test_leading_assistant_turns_and_blank_turns_are_dropped() -> None:
    """The Messages API wants the first turn to be the user's; empty turns carry nothing."""
    history = [("assistant", "hello!"), ("user", "   "), ("assistant", "anyone?")]
    assert build_prompt(history, "yes") == [{"role": "user", "content": "yes"}]


def test_consecutive_assistant_turns_are_merged() -> None:
    """Guest history may hold two replies in a row; they become one turn."""
    history = [("user", "a"), ("assistant", "b"), ("assistant", "c")]
    prompt = build_prompt(history, "d")
    assert prompt[1] == {"role": "assistant", "content": "b\n\nc"}
    assert [turn["role"] for turn in prompt] == ["user", "assistant", "user"]
