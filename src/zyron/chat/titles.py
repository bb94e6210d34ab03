"""Titles for sessions created without one: asked of a model after the first reply."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

from zyron.errors import UpstreamError
from zyron.llm.base import Provider, TextDelta

log = logging.getLogger("zyron.chat")

MAX_TITLE_CHARS = 80
# Longer than this, the answer is a reply rather than a title (small local models often
# answer the question instead): the message's first words make a better title.
MAX_TITLE_WORDS = 10
TITLE_MAX_TOKENS = 24
FALLBACK_WORDS = 8
# Enough of the exchange to say what it is about; a title needs no more.
_MESSAGE_CHARS, _REPLY_CHARS = 1000, 500

_SYSTEM = "You write short titles for chat conversations."
_INSTRUCTION = (
    "Write a title of at most six words for the conversation below. "
    "Answer with the title only: no quotes, no punctuation at the end.\n\n"
    "User: {message}\n\nAssistant: {reply}"
)
_PREFIX = re.compile(r"^(title|subject)\s*:\s*", re.IGNORECASE)
# Quotes and markdown a model wraps a title in (curly quotes written as escapes).
_WRAPPING = "\"'`*#_ \t\u201c\u201d\u2018\u2019\u00ab\u00bb"


@dataclass(frozen=True, slots=True)
class TitleRequest:
    """What a title is made from, and the model that makes it."""

    provider: Provider
    model: str  # the provider's name for the model
    message: str  # the user's first message


async def make_title(request: TitleRequest, reply: str, *, within: float) -> str:
    """Ask the model for a title; fall back to the message's first words if it cannot give one."""
    prompt = _INSTRUCTION.format(
        message=request.message[:_MESSAGE_CHARS], reply=reply[:_REPLY_CHARS]
    )
    parts: list[str] = []
    try:
        async with asyncio.timeout(within):
            async for event in request.provider.stream(
                model=request.model,
                system=_SYSTEM,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=TITLE_MAX_TOKENS,
            ):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
    except (UpstreamError, TimeoutError) as exc:
        log.info("title from the model failed", extra={"reason": type(exc).__name__})
    return clean_title("".join(parts)) or fallback_title(request.message)


def clean_title(text: str) -> str | None:
    """Reduce a model's answer to one tidy line (no quotes, labels or markdown); None if unfit."""
    for line in text.splitlines():
        line = _PREFIX.sub("", line.strip()).strip(_WRAPPING).rstrip(".!:;,").strip(_WRAPPING)
        words = line.split()
        if not words:
            continue
        if len(words) > MAX_TITLE_WORDS:
            return None
        return _shorten(" ".join(words))
    return None


def fallback_title(message: str) -> str:
    """Return the message's first words, as a title."""
    words = message.split()
    title = " ".join(words[:FALLBACK_WORDS])
    if len(words) > FALLBACK_WORDS:
        title += "…"
    return _shorten(title) or "Chat"


def _shorten(text: str) -> str:
    if len(text) <= MAX_TITLE_CHARS:
        return text
    cut = text[: MAX_TITLE_CHARS - 1].rsplit(" ", 1)[0]
    return cut + "…"
