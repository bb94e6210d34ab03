"""What a file is, decided from its bytes: PNG, JPEG, GIF and WebP images, PDF, UTF-8 text.

Pure functions, no I/O: the files routes use them for uploads, and the chat side for guests'
inline attachments and for counting tokens (image sizes, PDF pages).

Own code rather than `filetype` or `puremagic`: those know hundreds of formats and would
still leave the decisions that matter here to this module (text is no magic number; a
declared type must not be contradicted; an image must have a readable header). The magic
numbers of the five binary types are a few lines, kept next to the header parsing that
`image_size` needs anyway.
"""

from __future__ import annotations

import re
import struct
from typing import Literal

from zyron.errors import UnsupportedMediaType

Kind = Literal["image", "pdf", "text"]

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
PDF_TYPE = "application/pdf"
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/csv", "application/json"})
SUPPORTED_TYPES = IMAGE_TYPES | {PDF_TYPE} | TEXT_TYPES

# What a client may call a type we detect under another name.
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "text/x-markdown": "text/markdown",
    "application/x-pdf": "application/pdf",
}
# A type of which the name says the client knows nothing: never a contradiction.
_NO_CLAIM = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_TEXT_BY_EXTENSION = {
    "md": "text/markdown",
    "markdown": "text/markdown",
    "csv": "text/csv",
    "json": "application/json",
}


def _declared(declared_type: str | None) -> str:
    """Return the declared type without parameters, lower-cased, aliases resolved."""
    base = (declared_type or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def _magic(data: bytes) -> str | None:
    """Return the binary type the leading bytes announce, if any."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return PDF_TYPE
    return None


def _is_text(data: bytes) -> bool:
    """Tell whether the bytes are UTF-8 text: they decode, and hold no NUL byte."""
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _claims_text(declared: str) -> bool:
    return (
        declared.startswith("text/") or declared == "application/json" or declared.endswith("+json")
    )


def _text_type(declared: str, filename: str) -> str:
    """Return the text type the declared type, else the extension, names; else text/plain."""
    if declared in ("text/markdown", "text/csv", "application/json"):
        return declared
    if declared.endswith("+json"):
        return "application/json"
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return _TEXT_BY_EXTENSION.get(extension, "text/plain")


def sniff(data: bytes, declared_type: str | None = None, filename: str = "") -> str:
    """Return the media type of `data`; UnsupportedMediaType if unsupported or contradicted.

    The bytes decide. A declared image or PDF type must be the one detected; a declared text
    type must meet text. A declared text type (or else the extension) may refine text into
    Markdown, CSV or JSON, never turn bytes into an image. Declared types outside these
    families (application/octet-stream, or what browsers send for .csv or .ts files) claim
    nothing that could be checked, and are ignored.
    """
    declared = _declared(declared_type)
    detected = _magic(data)
    if detected is not None:
        if detected in IMAGE_TYPES:
            try:
                image_size(data, detected)
            except ValueError as exc:
                raise UnsupportedMediaType(
                    f"The file starts like {detected} but its header cannot be read."
                ) from exc
        if declared not in _NO_CLAIM and declared != detected and _claims_known(declared):
            raise UnsupportedMediaType(
                f"The file was sent as {declared} but its bytes are {detected}."
            )
        return detected
    if not _is_text(data):
        raise UnsupportedMediaType(
            "Unsupported file type: send PNG, JPEG, GIF or WebP images, PDF, or UTF-8 text."
        )
    if declared in IMAGE_TYPES or declared == PDF_TYPE or declared.startswith("image/"):
        raise UnsupportedMediaType(f"The file was sent as {declared} but its bytes are text.")
    return _text_type(declared if _claims_text(declared) else "", filename)


def _claims_known(declared: str) -> bool:
    """Tell whether a declared type names a family this module detects (so it can clash)."""
    return declared.startswith("image/") or declared == PDF_TYPE or _claims_text(declared)


def kind(media_type: str) -> Kind:
    """Return the kind of a supported media type: image, pdf or text."""
    if media_type in IMAGE_TYPES:
        return "image"
    if media_type == PDF_TYPE:
        return "pdf"
    if media_type in TEXT_TYPES:
        return "text"
    raise ValueError(f"unsupported media type {media_type!r}")


def image_size(data: bytes, media_type: str) -> tuple[int, int]:
    """Return (width, height) in pixels from the image's header; ValueError if unreadable."""
    try:
        if media_type == "image/png":
            size = _png_size(data)
        elif media_type == "image/gif":
            size = struct.unpack("<HH", data[6:10])
        elif media_type == "image/jpeg":
            size = _jpeg_size(data)
        elif media_type == "image/webp":
            size = _webp_size(data)
        else:
            raise ValueError(f"not an image type: {media_type!r}")
    except struct.error as exc:
        raise ValueError("truncated image header") from exc
    width, height = int(size[0]), int(size[1])
    if width <= 0 or height <= 0:
        raise ValueError("image header gives no size")
    return width, height


def _png_size(data: bytes) -> tuple[int, int]:
    # The first chunk must be IHDR: length (4), type (4), then width and height.
    if data[12:16] != b"IHDR":
        raise ValueError("PNG without IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# Start-of-frame markers: C0-CF less DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})


def _jpeg_size(data: bytes) -> tuple[int, int]:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise ValueError("JPEG marker expected")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE:
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            break
        position += 2 + length
    raise ValueError("JPEG without a frame header")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        # Lossy: a 3-byte frame tag, the start code, then 14-bit width and height.
        if data[23:26] != b"\x9d\x01\x2a":
            raise ValueError("VP8 without start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        # Lossless: signature 0x2f, then width-1 and height-1 in 14 bits each.
        if data[20:21] != b"\x2f":
            raise ValueError("VP8L without signature")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        # Extended: flags (4), then canvas width-1 and height-1 in 24 bits each.
        canvas = data[24:30]
        if len(canvas) < 6:
            raise ValueError("truncated VP8X")
        width = int.from_bytes(canvas[0:3], "little") + 1
        height = int.from_bytes(canvas[3:6], "little") + 1
        return width, height
    raise ValueError("WebP without a known image chunk")


# A page object: `/Type /Page`, not `/Type /Pages` (the tree's inner nodes).
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z0-9])")


def pdf_pages(data: bytes) -> int:
    """Return the PDF's page count, best effort: its `/Type /Page` objects, at least 1.

    Pages inside compressed object streams are not seen, so this can count too few, never
    (short of incremental updates that rewrite pages) too many.
    """
    return max(1, len(_PAGE.findall(data)))
