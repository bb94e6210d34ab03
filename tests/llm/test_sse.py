"""The raw SSE reader the providers use instead of the SDKs' parsed events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from zyron.llm.sse import sse_events

BODY = (
    b": a comment\n\n"
    b'event: message_start\ndata: {"a":1}\n\n'
    b"event: ping\ndata: {}\n\n"
    b"data: no name\n\n"
    b"event: multi\ndata: one\ndata:two\n\n"
    b"event: empty\n\n"
    b"event: last\ndata: \xc3\xa9t\xc3\xa9\n\n"
    b'event: cut\ndata: {"half'
)
EXPECTED = [
    (b"message_start", b'{"a":1}'),
    (b"ping", b"{}"),
    (b"", b"no name"),
    (b"multi", b"one\ntwo"),
    (b"last", "été".encode()),
]


async def _read(chunks: list[bytes]) -> list[tuple[bytes, bytes]]:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return [event async for event in sse_events(body())]


def _split(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_events_split_anywhere_with_any_line_end(size: int, newline: bytes) -> None:
    """Every chunking, and LF, CRLF or CR line ends, give the same events."""
    body = BODY.replace(b"\n", newline)
    assert asyncio.run(_read(_split(body, size))) == EXPECTED


def test_a_crlf_split_between_its_cr_and_lf_is_one_line_end() -> None:
    """A CR at the end of a chunk whose LF starts the next is not a blank line."""
    events = asyncio.run(_read([b"event: a\r", b"\ndata: 1\r", b"\n\r", b"\n", b"data: 2\r\n\r\n"]))
    assert events == [(b"a", b"1"), (b"", b"2")]


def test_an_event_the_body_ends_in_before_its_blank_line_is_dropped() -> None:
    """A body cut mid-event (a proxy's idle cut) loses that event, whole, not half of it."""
    assert asyncio.run(_read([b"data: 1\n\ndata: 2\n"])) == [(b"", b"1")]


def test_an_empty_body_has_no_events() -> None:
    """Nothing in, nothing out."""
    assert asyncio.run(_read([])) == []
    assert asyncio.run(_read([b"", b": only a comment\n\n"])) == []
