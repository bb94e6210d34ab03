"""How the Anthropic provider reads usage from message_start and message_delta."""

from __future__ import annotations

import pytest

from zyron.llm.anthropic import _Reading, _UsageCounts
from zyron.llm.base import TextDelta


@pytest.mark.parametrize("breakdown", [{}, {"ephemeral_1h_input_tokens": None}])
def test_a_partial_cache_breakdown_counts_as_not_sent(breakdown: dict[str, object]) -> None:
    """An endpoint that leaves out (or nulls) the 1-hour count: writes take the TTL asked for."""
    counts = _UsageCounts("1h")
    counts.start(
        {"input_tokens": 5, "cache_creation_input_tokens": 40, "cache_creation": breakdown}
    )
    assert counts.total().cache_creation_1h_input_tokens == 40


@pytest.mark.parametrize(
    "usage", [{"input_tokens": "5"}, {"output_tokens": 1.5}, {"input_tokens": True}]
)
def test_a_count_that_is_not_an_integer_is_malformed(usage: dict[str, object]) -> None:
    """Token counts are whole numbers; anything else is not the protocol."""
    with pytest.raises(TypeError):
        _UsageCounts(None).start(usage)


def test_events_are_read_and_bad_shapes_raise() -> None:
    """A delta gives its text; one whose text is not a string raises for the caller to map."""
    reading = _Reading("claude", _UsageCounts(None))
    delta = b'{"type":"content_block_delta","delta":{"type":"text_delta","text":"hi"}}'
    assert reading.event(b"content_block_delta", delta) == TextDelta("hi")
    assert reading.event(b"ping", b"{}") is None
    reading.event(b"message_delta", b'{"delta":{"stop_reason":"end_turn"},"usage":{}}')
    assert reading.stop_reason == "end_turn"
    with pytest.raises(TypeError):
        reading.event(b"content_block_delta", b'{"delta":{"type":"text_delta","text":7}}')
