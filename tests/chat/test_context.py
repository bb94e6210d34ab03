"""Unit tests of prompt building: alternating turns, failed turns, leading replies."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from zyron.chat.context import (
    FittedPrompt,
    Turn,
    build_history,
    fit_prompt,
    join_message,
    stored_turns,
)
from zyron.db.models import Message, Role, Status
from zyron.errors import ContextTooLong
from zyron.llm.base import Attachment, PromptMessage


def _message(role: Role, content: str, status: Status = Status.COMPLETE) -> Message:
    return Message(
        id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        role=role,
        content=content,
        status=status,
    )


def build_prompt(history: Sequence[Turn | tuple[str, str]], message: str) -> list[PromptMessage]:
    """The whole prompt with no window to fit: the history, then the message."""
    return join_message(build_history(history), message)


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


class _Chars:
    """A counter where a token is a character: sizes are easy to reason about."""

    prompt_overhead = 0

    def count(self, text: str) -> int:
        return len(text)


def _conversation(turns: int, size: int) -> list[tuple[str, str]]:
    history = []
    for index in range(turns):
        history.append(("user", f"q{index}".ljust(size, ".")))
        history.append(("assistant", f"a{index}".ljust(size, ".")))
    return history


def _fit(history: list[tuple[str, str]], message: str, **kwargs: int) -> FittedPrompt:
    options = {"window": 1000, "reply_budget": 100} | kwargs
    return fit_prompt(
        build_history(history),
        message,
        system=None,
        window=options["window"],
        reply_budget=options["reply_budget"],
        counter=_Chars(),
        model="tiny",
    )


def test_everything_fits_in_a_large_window() -> None:
    """A window with room for it all sends it all."""
    fitted = _fit(_conversation(3, 10), "now", window=10_000)
    assert fitted.turns_sent == 6
    assert fitted.turns_omitted == 0
    assert [m["content"][:2] for m in fitted.messages] == ["q0", "a0", "q1", "a1", "q2", "a2", "no"]


def test_long_history_keeps_the_newest_whole_turns() -> None:
    """Oldest turns go first; what is kept is whole and starts with a user turn."""
    # 200 turns of 100 characters; 900 characters of room for history and the message.
    fitted = _fit(_conversation(100, 100), "now", window=1000, reply_budget=100)
    assert fitted.turns_sent == 8  # 4 pairs of 200: 803 of 900 used, a 5th pair would not fit
    assert fitted.turns_omitted == 192
    assert fitted.messages[0]["role"] == "user"
    assert fitted.messages[0]["content"].startswith("q96")
    assert fitted.messages[-1] == {"role": "user", "content": "now"}
    assert all(len(m["content"]) == 100 for m in fitted.messages[:-1])  # never cut mid-turn
    assert fitted.input_tokens <= 900


def test_a_turn_is_never_split_from_its_reply() -> None:
    """If the reply fits but its question does not, neither is sent."""
    history = [("user", "x" * 500), ("assistant", "y" * 10)]
    fitted = _fit(history, "now", window=600, reply_budget=100)
    assert fitted.messages == [{"role": "user", "content": "now"}]
    assert (fitted.turns_sent, fitted.turns_omitted) == (0, 2)


def test_system_prompt_is_always_kept_and_counted() -> None:
    """The system prompt's size comes off the room for history."""
    history = _conversation(5, 100)
    without = _fit(history, "now", window=1000)
    fitted = fit_prompt(
        build_history(history),
        "now",
        system="s" * 300,
        window=1000,
        reply_budget=100,
        counter=_Chars(),
        model="tiny",
    )
    assert fitted.turns_sent < without.turns_sent
    assert fitted.input_tokens <= 900


def test_tiny_window_sends_only_the_message() -> None:
    """A window that fits only the message sends it alone."""
    fitted = _fit(_conversation(5, 50), "hello", window=110, reply_budget=100)
    assert fitted.messages == [{"role": "user", "content": "hello"}]
    assert fitted.turns_omitted == 10


def test_message_that_cannot_fit_is_a_clear_error() -> None:
    """A message larger than the window minus the reply is refused, naming the model."""
    with pytest.raises(ContextTooLong, match="tiny"):
        _fit([], "x" * 1000, window=1000, reply_budget=100)


def test_failed_turn_merged_before_fitting_keeps_alternation() -> None:
    """Two user turns in a row (a failed reply) are one turn, so pairs stay aligned."""
    history = [("user", "a" * 50), ("assistant", "b" * 50), ("user", "lost" * 10)]
    fitted = _fit(history, "now", window=10_000)
    assert [m["role"] for m in fitted.messages] == ["user", "assistant", "user"]
    assert fitted.messages[-1]["content"].endswith("now")


def test_an_unanswered_turn_never_makes_the_message_too_long() -> None:
    """A big message whose reply failed is history: left out, not a lock on the session."""
    history = [("user", "a" * 10), ("assistant", "b" * 10), ("user", "x" * 950)]
    fitted = _fit(history, "hi", window=1000, reply_budget=100)
    # The failed paste does not fit; the exchange before it still goes in.
    assert fitted.messages == [
        {"role": "user", "content": "a" * 10},
        {"role": "assistant", "content": "b" * 10},
        {"role": "user", "content": "hi"},
    ]
    assert (fitted.turns_sent, fitted.turns_omitted) == (2, 1)
    assert fitted.input_tokens == 22


def test_an_unanswered_turn_that_fits_goes_first() -> None:
    """The newest context is the question that got no answer: it is kept before older pairs."""
    history = [*_conversation(3, 100), ("user", "lost" * 10)]
    fitted = _fit(history, "now", window=400, reply_budget=100)
    # 300 of room: "now" (3), the lost question joined to it (42), one pair (200).
    assert fitted.messages[-1] == {"role": "user", "content": "lost" * 10 + "\n\nnow"}
    assert [m["content"][:2] for m in fitted.messages[:-1]] == ["q2", "a2"]
    assert (fitted.turns_sent, fitted.turns_omitted) == (3, 4)


def _image(tokens: int, name: str = "a.png") -> Attachment:
    return Attachment("image", "image/png", name, b"\x89PNG", tokens)


def test_attachments_count_and_a_turn_with_files_drops_whole() -> None:
    """A turn's files count with its text; one that does not fit goes out with its files."""
    history = build_history(
        [
            Turn("user", "q0", [_image(500)]),
            Turn("assistant", "a0"),
            Turn("user", "q1"),
            Turn("assistant", "a1"),
        ]
    )
    fitted = fit_prompt(
        history,
        "now",
        system=None,
        window=400,
        reply_budget=100,
        counter=_Chars(),
        model="tiny",
    )
    assert (fitted.turns_sent, fitted.turns_omitted) == (2, 2)
    assert [m["content"] for m in fitted.messages] == ["q1", "a1", "now"]
    assert all("attachments" not in m for m in fitted.messages)
    # With room for it, the image goes in with its question, and counts.
    roomy = fit_prompt(
        history, "now", system=None, window=1000, reply_budget=100, counter=_Chars(), model="tiny"
    )
    assert roomy.turns_sent == 4
    assert roomy.messages[0].get("attachments") == [_image(500)]
    assert roomy.input_tokens == 500 + len("q0a0q1a1now")


def test_the_new_message_with_its_files_must_fit() -> None:
    """Files too large for the window with the message: context_too_long, naming them."""
    with pytest.raises(ContextTooLong, match="attachments"):
        fit_prompt(
            [],
            "look",
            attachments=[_image(950)],
            system=None,
            window=1000,
            reply_budget=100,
            counter=_Chars(),
            model="tiny",
        )
    fitted = fit_prompt(
        [],
        "look",
        attachments=[_image(800)],
        system=None,
        window=1000,
        reply_budget=100,
        counter=_Chars(),
        model="tiny",
    )
    assert fitted.messages == [{"role": "user", "content": "look", "attachments": [_image(800)]}]


def test_an_unanswered_turns_files_join_the_message() -> None:
    """A failed turn is joined to the new message, files first: both turns' files go."""
    history = build_history([Turn("user", "first", [_image(10, "one.png")])])
    fitted = fit_prompt(
        history,
        "second",
        attachments=[_image(10, "two.png")],
        system=None,
        window=1000,
        reply_budget=100,
        counter=_Chars(),
        model="tiny",
    )
    [message] = fitted.messages
    assert message["content"] == "first\n\nsecond"
    assert [a.filename for a in message.get("attachments", [])] == ["one.png", "two.png"]


def test_earlier_thinking_counts_when_this_turn_thinks() -> None:
    """A reply's thinking may go back on a thinking turn: fitting counts it then, not else."""
    history = build_history(
        [
            Turn("user", "q0"),
            Turn(
                "assistant",
                "a0",
                parts=[{"type": "reasoning", "text": "t" * 500}, {"type": "text", "text": "a0"}],
            ),
        ]
    )
    fitted = [
        fit_prompt(
            history,
            "now",
            system=None,
            window=300,
            reply_budget=100,
            counter=_Chars(),
            model="tiny",
            reasoning=reasoning,
        )
        for reasoning in (False, True)
    ]
    plain, thinking = fitted
    assert (plain.turns_sent, thinking.turns_sent) == (2, 0)
