"""Where Claude's prompt cache breakpoints go (zyron.llm.prompt_cache), and the fake's cache."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.fakes.prompt_cache import PromptCache, TooManyBreakpoints
from zyron.llm.prompt_cache import MAX_BREAKPOINTS, min_cacheable_tokens, with_breakpoints

MARK = {"type": "ephemeral", "ttl": "5m"}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def marked(messages: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(message, block) of every block carrying cache_control."""
    return [
        (m, b)
        for m, message in enumerate(messages)
        if isinstance(message["content"], list)
        for b, block in enumerate(message["content"])
        if "cache_control" in block
    ]


def test_a_first_turn_marks_its_message_and_the_system_prompt() -> None:
    system, messages = with_breakpoints("Be brief.", [user("Hi")], "5m")
    assert system == [{"type": "text", "text": "Be brief.", "cache_control": MARK}]
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": MARK}]}
    ]


def test_a_long_conversation_marks_the_last_two_user_turns_only() -> None:
    turns = [user("q1"), assistant("a1"), user("q2"), assistant("a2"), user("q3")]
    original = copy.deepcopy(turns)
    system, messages = with_breakpoints(None, turns, "1h")
    assert system is None
    assert marked(messages) == [(2, 0), (4, 0)]
    assert messages[4]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    # Every user turn is sent as blocks, marked or not, so its prefix reads the same each time.
    assert messages[0]["content"] == [{"type": "text", "text": "q1"}]
    assert messages[1] == assistant("a1")  # replies as they were
    assert turns == original  # the input is not changed


def test_with_attachments_the_mark_goes_on_the_turns_last_block() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}
    turn = {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}
    _, messages = with_breakpoints(None, [turn], "5m")
    assert marked(messages) == [(0, 1)]
    assert "cache_control" not in messages[0]["content"][0]
    # A turn whose text is empty is marked on its file instead: an empty text block cannot be.
    empty = {"role": "user", "content": [image, {"type": "text", "text": ""}]}
    _, messages = with_breakpoints(None, [empty], "5m")
    assert marked(messages) == [(0, 0)]


def test_thinking_blocks_are_never_marked() -> None:
    thought = {"type": "thinking", "thinking": "Hmm.", "signature": "sig"}
    reply = {"role": "assistant", "content": [thought, {"type": "text", "text": "A."}]}
    _, messages = with_breakpoints("S", [user("q1"), reply, user("q2")], "5m")
    assert messages[1] == reply
    assert marked(messages) == [(0, 0), (2, 0)]


@pytest.mark.parametrize("turns", [1, 2, 3, 10, 40])
def test_never_more_than_four_breakpoints(turns: int) -> None:
    conversation: list[dict[str, Any]] = []
    for index in range(turns):
        conversation += [user(f"q{index}"), assistant(f"a{index}")]
    conversation.append(user("last"))
    system, messages = with_breakpoints("S", conversation, "5m")
    assert len(marked(messages)) + (1 if system else 0) <= MAX_BREAKPOINTS


def test_minimum_lengths_by_model() -> None:
    assert min_cacheable_tokens("claude-sonnet-5") == 1024
    assert min_cacheable_tokens("claude-haiku-4-5") == 4096
    assert min_cacheable_tokens("claude-haiku-4-5-20251001") == 4096  # a dated snapshot
    assert min_cacheable_tokens("claude-opus-5") == 512
    assert min_cacheable_tokens("some-new-claude") == 1024
    # A newer model is not its predecessor with a suffix: claude-opus-5-5 is not claude-opus-5.
    assert min_cacheable_tokens("claude-opus-5-5") == 1024


# The fake's cache, which the API tests bill against: it must behave as documented.


def request(system: str, *turns: dict[str, Any], model: str = "claude-sonnet-5") -> dict[str, Any]:
    marks_system, messages = with_breakpoints(system or None, list(turns), "5m")
    body: dict[str, Any] = {"model": model, "messages": messages}
    if marks_system:
        body["system"] = marks_system
    return body


LONG = "word " * 1200  # about 1500 tokens by the fake's rule


def test_the_fake_writes_then_reads_a_prefix() -> None:
    cache = PromptCache()
    first = cache.bill(request(LONG, user("q1")))
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation_input_tokens == first.prompt_tokens  # all of it, to the last mark
    assert first.input_tokens == 0
    second = cache.bill(request(LONG, user("q1"), assistant("a1"), user("q2")))
    assert second.cache_read_input_tokens == first.prompt_tokens
    assert second.cache_creation_input_tokens == second.prompt_tokens - first.prompt_tokens
    # The same prompt again reads all of it.
    again = cache.bill(request(LONG, user("q1"), assistant("a1"), user("q2")))
    assert again.cache_read_input_tokens == again.prompt_tokens


def test_the_fake_caches_nothing_below_the_minimum_or_past_the_ttl() -> None:
    cache = PromptCache()
    short = cache.bill(request("Be brief.", user("hi")))
    assert (short.cache_creation_input_tokens, short.cache_read_input_tokens) == (0, 0)
    assert short.input_tokens == short.prompt_tokens
    cache.bill(request(LONG, user("q1")))
    cache.advance(299)
    assert cache.bill(request(LONG, user("q1"))).cache_read_input_tokens > 0  # and refreshed
    cache.advance(299)
    assert cache.bill(request(LONG, user("q1"))).cache_read_input_tokens > 0
    cache.advance(301)
    assert cache.bill(request(LONG, user("q1"))).cache_read_input_tokens == 0


def test_the_fake_looks_back_twenty_blocks_and_refuses_five_marks() -> None:
    cache = PromptCache()
    first = cache.bill(request("", user(LONG)))
    # A cached prefix is found from a mark 19 blocks later: 20 positions, the mark's first.
    body = request("", user(LONG))
    del body["messages"][0]["content"][0]["cache_control"]
    body["messages"].append({"role": "assistant", "content": [{"type": "text", "text": "a"}] * 18})
    body["messages"].append(
        {"role": "user", "content": [{"type": "text", "text": "q2", "cache_control": MARK}]}
    )
    assert cache.bill(body).cache_read_input_tokens == first.prompt_tokens
    cache.clear()
    cache.bill(request("", user(LONG)))
    body["messages"][-2]["content"].append({"type": "text", "text": "b"})  # 20 later: too far
    assert cache.bill(body).cache_read_input_tokens == 0
    five = {
        "model": "claude-sonnet-5",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": MARK}] * 5}
        ],
    }
    with pytest.raises(TooManyBreakpoints):
        cache.bill(five)
    # The fake refuses what the API refuses, so the API tests would catch a misplaced mark.
    thought = {"type": "thinking", "thinking": "x", "signature": "s", "cache_control": MARK}
    for block in (thought, {"type": "text", "text": "", "cache_control": MARK}):
        with pytest.raises(TooManyBreakpoints):
            cache.bill({"model": "m", "messages": [{"role": "assistant", "content": [block]}]})
    hour = {"type": "ephemeral", "ttl": "1h"}
    mixed = [
        {"type": "text", "text": "a", "cache_control": MARK},
        {"type": "text", "text": "b", "cache_control": hour},
    ]
    with pytest.raises(TooManyBreakpoints, match="1h"):
        cache.bill({"model": "m", "messages": [{"role": "user", "content": mixed}]})
