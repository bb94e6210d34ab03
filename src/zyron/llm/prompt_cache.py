"""Automatic prompt caching for Claude: where the cache breakpoints go (docs/costs.md).

Anthropic caches the prompt's prefix up to a block marked with `cache_control`. A request may
mark at most four blocks; the API looks up to 20 blocks back from each mark for a prefix it
has cached, and caches nothing shorter than the model's minimum (it says so by charging no
cache write, not by an error). Thinking blocks and empty text blocks cannot be marked.
Sources: https://platform.claude.com/docs/en/build-with-claude/prompt-caching, and the SDK's
`CacheControlEphemeralParam` (`type: "ephemeral"`, `ttl: "5m" | "1h"`).

The marks, three at most:
- the system prompt, so a long one is read even by a conversation's first turn;
- the last user turn, which writes the whole prompt for the next turn to read;
- the user turn before it, which reads what the previous turn wrote, however many blocks
  (files, thinking) the reply between them added.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zyron.llm.base import CacheTtl
from zyron.llm.prices import snapshot_of

MAX_BREAKPOINTS = 4
# The smallest prompt each model caches, from Anthropic's page; others get DEFAULT_MIN_TOKENS.
# MODELS_FILE's `cache_min_tokens` overrides (docs/models.md).
MIN_CACHEABLE_TOKENS = {
    "claude-opus-5": 512,
    "claude-sonnet-5": 1024,
    "claude-opus-4-8": 1024,
    "claude-opus-4-7": 2048,
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
    "claude-sonnet-4-6": 1024,
    "claude-sonnet-4-5": 1024,
    "claude-haiku-4-5": 4096,
}
DEFAULT_MIN_TOKENS = 1024
# What may carry a mark: a text block with text, or a file.
_MARKABLE = frozenset({"text", "image", "document"})


def min_cacheable_tokens(upstream_id: str) -> int:
    """The smallest prompt the model caches: by its id, or a dated snapshot of it."""
    return MIN_CACHEABLE_TOKENS.get(snapshot_of(upstream_id), DEFAULT_MIN_TOKENS)


def with_breakpoints(
    system: str | None, messages: Sequence[dict[str, Any]], ttl: CacheTtl
) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """Return the system blocks and messages with cache marks placed; the input is not changed.

    Every user turn's content becomes a list of blocks, so a turn reads the same whether or
    not it carries the mark this time.
    """
    mark = {"type": "ephemeral", "ttl": ttl}
    system_blocks = [{"type": "text", "text": system, "cache_control": mark}] if system else None
    placed = [_as_blocks(message) for message in messages]
    users = [i for i, message in enumerate(placed) if message["role"] == "user"]
    budget = MAX_BREAKPOINTS - (1 if system_blocks else 0)
    for index in users[-2:][-budget:]:
        _mark_last_block(placed[index]["content"], mark)
    return system_blocks, placed


def _as_blocks(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    if message["role"] != "user":
        return message
    if isinstance(content, str):
        return {**message, "content": [{"type": "text", "text": content}]}
    return {**message, "content": [dict(block) for block in content]}


def _mark_last_block(blocks: list[dict[str, Any]], mark: dict[str, str]) -> None:
    for block in reversed(blocks):
        if block.get("type") in _MARKABLE and (block.get("type") != "text" or block.get("text")):
            block["cache_control"] = mark
            return
