"""Read server-sent events from an upstream's raw body: names and data, left undecoded.

The SDKs' own readers rebuild each event line by line and validate it against the whole
event union with pydantic: about 50 µs an event, more than the rest of the relay together
(docs/benchmarks.md). This reader splits the body on blank lines and hands back bytes, so a
provider decodes (with orjson) only what it uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[bytes, bytes]]:
    """Yield `(event, data)` for each event of an SSE body; `event` is b"" when it has none.

    Follows the WHATWG event-stream rules that matter for a response body: LF, CRLF or CR line
    ends, comments skipped, several `data:` lines joined by LF, one space after the colon
    dropped, an event without data skipped, an event the body ends in before its blank
    line dropped. `id` and `retry` are of no use to a relay.
    """
    pending = b""
    async for chunk in chunks:
        buffer = pending + chunk if pending else chunk
        if b"\r" in buffer:
            buffer = _lf_only(buffer)
        blocks = buffer.split(b"\n\n")
        pending = blocks.pop()  # what follows the last blank line: not complete yet
        for block in blocks:
            parsed = _event(block)
            if parsed is not None:
                yield parsed
    # What is left had no blank line after it: an event cut off with the body, dropped as the
    # rules (and both SDKs' readers) say, so the reply reads as cut off, not as malformed.


def _lf_only(buffer: bytes) -> bytes:
    """Turn CRLF and CR line ends into LF, keeping a CR at the end: its LF may come next."""
    tail = b""
    if buffer.endswith(b"\r"):
        buffer, tail = buffer[:-1], b"\r"
    return buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + tail


def _event(block: bytes) -> tuple[bytes, bytes] | None:
    """Parse one event's lines; None for a block of comments or without data."""
    name = b""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        field, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
        # b"" is a comment (": ping"); id and retry are ignored.
    if not data:
        return None
    return name, data[0] if len(data) == 1 else b"\n".join(data)
