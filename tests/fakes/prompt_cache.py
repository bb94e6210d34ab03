"""Anthropic's prompt cache, emulated as its documentation describes it, for the fake upstream.

- The prompt is a sequence of blocks: tools, then the system blocks, then each message's
  content blocks. A block marked with `cache_control` is a breakpoint; at most four.
- At each breakpoint the prefix up to it is looked up, and so are the prefixes ending at the
  19 blocks before it (20 positions, the breakpoint's own first). The longest one found is
  read (`cache_read_input_tokens`), and its lifetime starts again.
- Breakpoints after it write their prefix (`cache_creation_input_tokens`), unless the prefix
  is shorter than the model's minimum; the rest of the prompt is `input_tokens`.
- An entry lives for its TTL (5 minutes, or 1 hour) from its last write or read.
- Thinking parameters are part of the messages' prefix, not of the system's.

Tokens are counted by this fake's own rule, a token per 4 characters of a block's canonical
JSON, so tests can compute what a prompt is billed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOOKBACK_BLOCKS = 20
MAX_BREAKPOINTS = 4
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
# Anthropic's minimums for the models the tests use (zyron.llm.prompt_cache has the same).
MIN_TOKENS = {"claude-opus-5": 512, "claude-sonnet-5": 1024, "claude-haiku-4-5": 4096}
DEFAULT_MIN_TOKENS = 1024


class TooManyBreakpoints(ValueError):
    """A request the API refuses for its cache marks: more than four, one on a block that
    cannot carry it (thinking, empty text), or a 1-hour mark after a 5-minute one."""


@dataclass(frozen=True)
class Billed:
    """What one request's prompt was billed, in the API's usage fields."""

    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cache_creation_1h_input_tokens: int

    @property
    def prompt_tokens(self) -> int:
        """The whole prompt."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def usage(self) -> dict[str, Any]:
        """The usage object of message_start."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_input_tokens
                - self.cache_creation_1h_input_tokens,
                "ephemeral_1h_input_tokens": self.cache_creation_1h_input_tokens,
            },
        }


@dataclass(frozen=True)
class _Block:
    key: str  # the hash of the prompt up to and including this block
    tokens: int  # the prompt's tokens up to and including this block
    ttl: str | None  # its cache_control's TTL, when it is a breakpoint


def count_tokens(block: Any) -> int:
    """This fake's tokens for one block: one per 4 characters of its canonical JSON."""
    return max(1, math.ceil(len(_canonical(block)) / 4))


class PromptCache:
    """The cache of one fake upstream (one organization), shared by its requests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._skew = 0.0
        # A prefix's key -> when it expires, and the TTL it was written with.
        self._entries: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> None:
        """Let time pass for the cache, so a TTL can run out within a test."""
        with self._lock:
            self._skew += seconds

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._skew = 0.0

    def bill(self, body: dict[str, Any]) -> Billed:
        """Look the request's prompt up, write what its breakpoints ask, and bill it."""
        _check_marks(body)
        blocks = _blocks(body)
        marks = [i for i, block in enumerate(blocks) if block.ttl is not None]
        if len(marks) > MAX_BREAKPOINTS:
            raise TooManyBreakpoints(
                f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                f"Found {len(marks)}."
            )
        ttls = [blocks[i].ttl for i in marks]
        if (
            "1h" in ttls
            and "5m" in ttls
            and ttls.index("5m") < len(ttls) - ttls[::-1].index("1h") - 1
        ):
            raise TooManyBreakpoints(
                "a ttl='1h' cache_control block must not come after a ttl='5m' one"
            )
        total = blocks[-1].tokens if blocks else 0
        model = str(body.get("model", ""))
        least = MIN_TOKENS.get(re.sub(r"-\d{8}$", "", model), DEFAULT_MIN_TOKENS)
        with self._lock:
            now = self._clock() + self._skew
            read_at = self._longest_hit(blocks, marks, now)
            read = blocks[read_at].tokens if read_at >= 0 else 0
            if read_at >= 0:  # a read starts the entry's lifetime again
                key = blocks[read_at].key
                ttl = self._entries[key][1]
                self._entries[key] = (now + ttl, ttl)
            written = written_1h = 0
            covered = read
            for mark in marks:
                block = blocks[mark]
                if mark <= read_at or block.tokens < least:
                    continue
                assert block.ttl is not None
                self._entries[block.key] = (now + TTL_SECONDS[block.ttl], TTL_SECONDS[block.ttl])
                segment = block.tokens - covered
                written += segment
                if block.ttl == "1h":
                    written_1h += segment
                covered = block.tokens
        return Billed(
            input_tokens=total - covered,
            cache_creation_input_tokens=written,
            cache_read_input_tokens=read,
            cache_creation_1h_input_tokens=written_1h,
        )

    def _longest_hit(self, blocks: list[_Block], marks: list[int], now: float) -> int:
        best = -1
        for mark in marks:
            # The mark's own position is the first of the 20 looked at.
            for index in range(mark, max(-1, mark - LOOKBACK_BLOCKS), -1):
                entry = self._entries.get(blocks[index].key)
                if entry is not None and entry[0] > now:
                    best = max(best, index)
                    break
        return best


def _check_marks(body: dict[str, Any]) -> None:
    """Refuse marks where the API refuses them: thinking blocks, empty text blocks."""
    for message in body.get("messages") or []:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if "cache_control" not in block:
                continue
            if block.get("type") in ("thinking", "redacted_thinking"):
                raise TooManyBreakpoints("thinking blocks cannot be marked with cache_control")
            if block.get("type") == "text" and not block.get("text"):
                raise TooManyBreakpoints("cache_control cannot be set for empty text blocks")


def _blocks(body: dict[str, Any]) -> list[_Block]:
    """The prompt's blocks in cache order, each with its prefix's key and tokens."""
    digest = hashlib.sha256(str(body.get("model", "")).encode())
    blocks: list[_Block] = []
    tokens = 0

    def add(block: Any, scope: str) -> None:
        nonlocal tokens
        ttl = None
        if isinstance(block, dict) and isinstance(block.get("cache_control"), dict):
            ttl = str(block["cache_control"].get("ttl", "5m"))
        digest.update(scope.encode() + _canonical(block).encode())
        tokens += count_tokens(block)
        blocks.append(_Block(digest.hexdigest(), tokens, ttl))

    for tool in body.get("tools") or []:
        add(tool, "tool")
    system = body.get("system")
    for block in [{"type": "text", "text": system}] if isinstance(system, str) else system or []:
        add(block, "system")
    # Changing the thinking settings invalidates the messages' cache, not the system's.
    digest.update(_canonical([body.get("thinking"), body.get("output_config")]).encode())
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content or []:
            add(block, str(message.get("role")))
    return blocks


def _canonical(block: Any) -> str:
    """The block as the cache sees it: its content, not its cache_control."""
    if isinstance(block, dict):
        block = {k: v for k, v in block.items() if k != "cache_control"}
    return json.dumps(block, sort_keys=True, separators=(",", ":"))
