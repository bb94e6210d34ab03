"""Attachments as providers take them: notes, inline text files, data URLs and token costs."""

from __future__ import annotations

import base64
import html
import math

from zyron.llm.base import Attachment, PromptMessage

# Anthropic's documented estimate: tokens = width x height / 750, after the image is scaled
# to fit 1568 px on its long edge (and about 1.15 megapixels).
ANTHROPIC_MAX_EDGE = 1568
ANTHROPIC_MAX_PIXELS = 1_150_000
ANTHROPIC_PIXELS_PER_TOKEN = 750
# OpenAI's "high" detail: fit 2048 x 2048, then the short side to 768, then 170 tokens per
# 512 px tile plus 85.
OPENAI_TILE_TOKENS, OPENAI_BASE_TOKENS = 170, 85
# A PDF page goes to Claude as its text and as an image: Anthropic documents 1,500 to 3,000
# tokens of text per page, plus the page's image. The high end and a full page image
# (1568 x 1568 / 750 ~ 1,600 tokens, rounded up) err on the safe side.
PDF_PAGE_TOKENS = 3_000 + 1_600


def anthropic_image_tokens(width: int, height: int) -> int:
    """Return what Claude counts for an image of this size."""
    scale = min(1.0, ANTHROPIC_MAX_EDGE / max(width, height, 1))
    pixels = (width * scale) * (height * scale)
    if pixels > ANTHROPIC_MAX_PIXELS:
        pixels = ANTHROPIC_MAX_PIXELS
    return max(1, math.ceil(pixels / ANTHROPIC_PIXELS_PER_TOKEN))


def openai_image_tokens(width: int, height: int) -> int:
    """Return what OpenAI's vision models count for an image at high detail."""
    w, h = float(max(width, 1)), float(max(height, 1))
    fit = min(1.0, 2048 / max(w, h))
    w, h = w * fit, h * fit
    short = min(1.0, 768 / min(w, h))
    w, h = w * short, h * short
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return OPENAI_BASE_TOKENS + OPENAI_TILE_TOKENS * tiles


def note(attachment: Attachment) -> str | None:
    """Return what the model is told instead of a file it does not get, or None."""
    if attachment.missing:
        return (
            f"[The attached file '{attachment.filename}' was deleted and is no longer available.]"
        )
    if attachment.omitted:
        return (
            f"[An attached {attachment.kind} ('{attachment.filename}') is not shown: "
            "this model does not take it.]"
        )
    return None


def text_document(filename: str, data: bytes) -> str:
    """Return a text file as it goes inline into a prompt."""
    body = data.decode("utf-8", errors="replace")
    # Escaped: a name with a quote or "</file>" must not break the framing.
    return f'<file name="{html.escape(filename)}">\n{body}\n</file>'


def inline_text(message: PromptMessage) -> str:
    """Return a turn's text with its text files and notes before it, for text-only models."""
    pieces = []
    for attachment in message.get("attachments", ()):
        said = note(attachment)
        if said is not None:
            pieces.append(said)
        elif attachment.kind == "text":
            pieces.append(text_document(attachment.filename, attachment.data))
    if not pieces:
        return message["content"]
    return "\n\n".join([*pieces, message["content"]])


def base64_data(attachment: Attachment) -> str:
    """Return the bytes as base64 text."""
    return base64.b64encode(attachment.data).decode("ascii")


def data_url(attachment: Attachment) -> str:
    """Return the bytes as a data URL."""
    return f"data:{attachment.media_type};base64,{base64_data(attachment)}"
