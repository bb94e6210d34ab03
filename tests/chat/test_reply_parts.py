"""A reply's parts as they stream: order, signatures, positions across reasoning and text."""

from __future__ import annotations

from zyron.chat.reply_parts import ReplyParts, positioned
from zyron.sessions.parts import public_parts


def test_text_only_is_one_part_and_positions_are_its_length() -> None:
    """Without reasoning: one text part, the length is the text's, nothing to sign."""
    parts = ReplyParts("anthropic")
    for chunk in ("Hel", "lo", "!"):
        parts.add_text(chunk)
    assert (parts.text, parts.length, parts.has_reasoning) == ("Hello!", 6, False)
    assert parts.parts() == [{"type": "text", "text": "Hello!"}]


def test_interleaved_blocks_keep_their_order_and_signatures() -> None:
    """Thinking, a redacted block, text, more thinking, text: each its own part, in order."""
    parts = ReplyParts("anthropic")
    parts.add_reasoning("ab")
    parts.add_reasoning("c")
    parts.end_reasoning(signature="s1", redacted=None)
    parts.end_reasoning(signature=None, redacted="opaque")
    parts.add_text("xy")
    parts.add_reasoning("d")
    parts.end_reasoning(signature="s2", redacted=None)
    parts.add_text("z")
    stored = parts.parts()
    assert stored == [
        {"type": "reasoning", "text": "abc", "provider": "anthropic", "signature": "s1"},
        {"type": "reasoning", "text": "", "provider": "anthropic", "redacted": "opaque"},
        {"type": "text", "text": "xy"},
        {"type": "reasoning", "text": "d", "provider": "anthropic", "signature": "s2"},
        {"type": "text", "text": "z"},
    ]
    assert parts.text == "xyz"
    assert parts.length == 7
    # Positions from the stored parts are the ids the live stream gave.
    assert list(positioned(stored, parts.text)) == [
        ("reasoning", 3, "abc"),
        ("delta", 5, "xy"),
        ("reasoning", 6, "d"),
        ("delta", 7, "z"),
    ]
    # Clients never see a signature or redacted data.
    assert public_parts(stored) == [
        {"type": "reasoning", "text": "abc"},
        {"type": "reasoning", "text": "", "redacted": True},
        {"type": "text", "text": "xy"},
        {"type": "reasoning", "text": "d"},
        {"type": "text", "text": "z"},
    ]


def test_a_row_without_parts_reads_from_its_content() -> None:
    """A streaming text-only row has only `content` so far: one text position."""
    assert list(positioned([], "Hello")) == [("delta", 5, "Hello")]
    assert list(positioned(None, "")) == []


def test_clear_forgets_a_failed_attempt() -> None:
    """A retried attempt starts afresh: nothing of the failed one (a redacted block) stays."""
    parts = ReplyParts("anthropic")
    parts.end_reasoning(signature=None, redacted="stale")
    parts.clear()
    parts.add_text("fresh")
    assert parts.parts() == [{"type": "text", "text": "fresh"}]
    assert (parts.length, parts.has_reasoning) == (5, False)


def test_a_resume_from_redis_notices_trimmed_entries() -> None:
    """An event that starts past what the client has means entries were lost: use the row."""
    from zyron.chat.follow import _gap
    from zyron.streams.events import StreamEvent

    assert not _gap(StreamEvent(5, "delta", {"text": "lo"}), 3)
    assert _gap(StreamEvent(9, "reasoning", {"text": "ab"}), 3)
    assert _gap(StreamEvent(9, "delta", {"text": "ab"}), -1)
    assert not _gap(StreamEvent(0, "session", {}), -1)
    assert _gap(StreamEvent(10, "done", {}), -1)
    assert not _gap(StreamEvent(10, "done", {}), 9)
