"""A reply's parts as they stream in: text and reasoning, in order, with their positions.

A reply is one sequence of characters: its parts' texts, one after another (reasoning first
when the model thinks before it answers). An event's id is a position in that sequence, so
resuming after id N means "everything after the first N characters" across reasoning and
text alike; for a text-only reply that is the text's length, as it always was.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zyron.sessions.parts import stored_parts


class ReplyParts:
    """Collect a streaming reply's text and reasoning; cheap to append, joined on demand."""

    __slots__ = ("_blocks", "_text", "has_reasoning", "length", "provider")

    # Per streamed event this is one list append and a compare: it runs on the hot path.

    def __init__(self, provider: str = "") -> None:
        self.provider = provider  # the provider's name on reasoning parts: whose signature
        # [type, chunks, extra]: chunks joined only when the parts are read.
        self._blocks: list[tuple[str, list[str], dict[str, Any]]] = []
        self._text: list[str] | None = None  # the open text block's chunks
        self.has_reasoning = False
        self.length = 0  # characters so far, reasoning and text: the last event's id

    def clear(self) -> None:
        """Forget everything: an attempt that failed before any output is retried afresh."""
        self._blocks.clear()
        self._text = None
        self.has_reasoning = False
        self.length = 0

    def add_text(self, text: str) -> None:
        """Append reply text."""
        self.length += len(text)
        if self._text is not None:
            self._text.append(text)
        else:
            self._text = [text]
            self._blocks.append(("text", self._text, {}))

    def add_reasoning(self, text: str) -> None:
        """Append thinking; a new block starts after text or a finished (signed) block."""
        self.has_reasoning = True
        self.length += len(text)
        self._text = None
        last = self._blocks[-1] if self._blocks else None
        if last is not None and last[0] == "reasoning" and not last[2]:
            last[1].append(text)
        else:
            self._blocks.append(("reasoning", [text], {}))

    def end_reasoning(self, *, signature: str | None, redacted: str | None) -> None:
        """Close the open thinking block with its signature, or add a redacted block."""
        self.has_reasoning = True
        self._text = None
        if redacted is not None:
            self._blocks.append(("reasoning", [], {"redacted": redacted}))
            return
        last = self._blocks[-1] if self._blocks else None
        if last is not None and last[0] == "reasoning" and not last[2]:
            last[2]["signature"] = signature or ""
        else:  # a signature for a block with no text (the API sends none, but be exact)
            self._blocks.append(("reasoning", [], {"signature": signature or ""}))

    @property
    def text(self) -> str:
        """Return the reply's text so far: its `content`."""
        return "".join(
            chunk for kind, chunks, _ in self._blocks if kind == "text" for chunk in chunks
        )

    def parts(self) -> list[dict[str, Any]]:
        """Return the parts as stored: reasoning keeps its signature and provider."""
        parts: list[dict[str, Any]] = []
        for kind, chunks, extra in self._blocks:
            part: dict[str, Any] = {"type": kind, "text": "".join(chunks)}
            if kind == "reasoning":
                if self.provider:
                    part["provider"] = self.provider
                part.update(extra)
            parts.append(part)
        return parts


def positioned(parts: list[dict[str, Any]] | None, content: str) -> Iterator[tuple[str, int, str]]:
    """Yield a stored reply's (event name, end position, text) per part with text."""
    position = 0
    for part in stored_parts(parts, content):
        kind = part.get("type")
        if kind not in ("text", "reasoning"):
            continue
        text = part.get("text", "")
        if not text:
            continue
        position += len(text)
        yield ("delta" if kind == "text" else "reasoning"), position, text
