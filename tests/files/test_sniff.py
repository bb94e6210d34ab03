"""zyron.files.sniff: types from bytes, declared types that clash, image sizes, PDF pages."""

from __future__ import annotations

import pytest

from tests.files import samples
from zyron.errors import UnsupportedMediaType
from zyron.files.sniff import image_size, kind, pdf_pages, sniff


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (samples.png(), "image/png"),
        (samples.jpeg(), "image/jpeg"),
        (samples.gif(), "image/gif"),
        (samples.webp_lossless(), "image/webp"),
        (samples.webp_lossy(), "image/webp"),
        (samples.webp_extended(), "image/webp"),
        (samples.pdf(), "application/pdf"),
        (b"hello\n", "text/plain"),
        ("h\u00e9llo \u2603\n".encode(), "text/plain"),
    ],
)
def test_type_comes_from_the_bytes(data: bytes, expected: str) -> None:
    """Each supported type is recognised with no declared type, and with octet-stream."""
    assert sniff(data, None, "") == expected
    assert sniff(data, "application/octet-stream", "upload.bin") == expected


def test_extension_and_declared_type_refine_text() -> None:
    """Text becomes Markdown, CSV or JSON by its declared type, else its extension."""
    assert sniff(b"# Title\n", None, "notes.md") == "text/markdown"
    assert sniff(b"a,b\n1,2\n", None, "table.CSV") == "text/csv"
    assert sniff(b'{"a": 1}', None, "data.json") == "application/json"
    assert sniff(b'{"a": 1}', "application/json", "data.txt") == "application/json"
    assert sniff(b"# Title\n", "text/markdown; charset=utf-8", "x") == "text/markdown"
    assert sniff(b"def f(): pass\n", "text/x-python", "f.py") == "text/plain"
    # What Windows browsers declare for CSV, and others for TypeScript: no claim to check.
    assert sniff(b"a,b\n", "application/vnd.ms-excel", "t.csv") == "text/csv"
    assert sniff(b"let x = 1;\n", "video/mp2t", "x.ts") == "text/plain"


def test_an_extension_never_turns_bytes_into_an_image() -> None:
    """Text named .png is text; PNG bytes named .txt are a PNG."""
    assert sniff(b"not an image", None, "picture.png") == "text/plain"
    assert sniff(samples.png(), None, "notes.txt") == "image/png"


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (samples.pdf(), "image/png"),
        (samples.png(), "image/jpeg"),
        (samples.png(), "application/pdf"),
        (samples.png(), "text/plain"),
        (b"plain text", "image/png"),
        (b"plain text", "application/pdf"),
    ],
)
def test_a_declared_type_the_bytes_contradict_is_refused(data: bytes, declared: str) -> None:
    """Declared image/png for PDF bytes (and the like) is a 415."""
    with pytest.raises(UnsupportedMediaType, match="sent as"):
        sniff(data, declared, "file")


def test_aliases_of_the_detected_type_are_no_contradiction() -> None:
    """image/jpg and image/pjpeg name JPEG."""
    assert sniff(samples.jpeg(), "image/jpg", "a.jpg") == "image/jpeg"
    assert sniff(samples.jpeg(), "IMAGE/PJPEG", "a.jpg") == "image/jpeg"


@pytest.mark.parametrize(
    "data",
    [samples.ZIP, samples.EXE, samples.INVALID_UTF8, b"text\x00with a NUL", b"\xff\xfe\x00h"],
    ids=["zip", "exe", "latin-1", "nul", "utf-16"],
)
def test_unsupported_bytes_are_refused(data: bytes) -> None:
    """ZIP, an EXE header, invalid UTF-8 and NUL bytes are 415, whatever is declared."""
    for declared in (None, "text/plain", "application/zip"):
        with pytest.raises(UnsupportedMediaType):
            sniff(data, declared, "file.txt")


def test_an_image_whose_header_cannot_be_read_is_refused() -> None:
    """PNG magic followed by garbage is not a PNG."""
    with pytest.raises(UnsupportedMediaType, match="header"):
        sniff(b"\x89PNG\r\n\x1a\n" + b"garbage", None, "x.png")
    with pytest.raises(UnsupportedMediaType, match="header"):
        sniff(b"\xff\xd8\xff\xe0\x00\x04ab", None, "x.jpg")


@pytest.mark.parametrize(
    ("data", "media_type", "size"),
    [
        (samples.png(3, 2), "image/png", (3, 2)),
        (samples.png(1920, 1080), "image/png", (1920, 1080)),
        (samples.jpeg(640, 480), "image/jpeg", (640, 480)),
        (samples.gif(7, 6), "image/gif", (7, 6)),
        (samples.webp_lossless(9, 8), "image/webp", (9, 8)),
        (samples.webp_lossy(11, 10), "image/webp", (11, 10)),
        (samples.webp_extended(300, 200), "image/webp", (300, 200)),
    ],
)
def test_image_size(data: bytes, media_type: str, size: tuple[int, int]) -> None:
    """Width and height are read from each image type's header."""
    assert image_size(data, media_type) == size


def test_image_size_refuses_what_is_not_an_image() -> None:
    """A non-image type, or a truncated header, is a ValueError."""
    with pytest.raises(ValueError, match="not an image"):
        image_size(samples.pdf(), "application/pdf")
    with pytest.raises(ValueError, match=r"truncated|IHDR"):
        image_size(samples.png()[:18], "image/png")


@pytest.mark.parametrize("pages", [1, 2, 7])
def test_pdf_pages(pages: int) -> None:
    """The page objects are counted, not the page tree's /Pages node."""
    assert pdf_pages(samples.pdf(pages)) == pages


def test_pdf_pages_is_at_least_one() -> None:
    """A PDF whose pages cannot be seen (compressed object streams) counts as one page."""
    assert pdf_pages(b"%PDF-1.7\n...compressed...\n%%EOF") == 1


def test_kind() -> None:
    """Each supported type has its kind; anything else is a ValueError."""
    assert [kind(t) for t in ("image/webp", "application/pdf", "text/csv")] == [
        "image",
        "pdf",
        "text",
    ]
    with pytest.raises(ValueError, match="unsupported"):
        kind("application/zip")
