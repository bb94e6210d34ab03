"""A reply's events as UI message stream chunks: the AI SDK's protocol v1, base fields only.

Only the fields every supported `ai` line accepts are sent: 5.0.x before 5.0.92 and 6.0.x
before 6.0.231 reject unknown fields, and before 5.0.92 `finish.finishReason` too, so the
finish reason and usage travel in `messageMetadata` (docs/frontends.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

# The native stream's ping comment: eventsource-parser ignores it, and it keeps idle
# connections open.
from zyron.streams.events import PING, StreamEvent

# What the AI SDK's own server helpers send (UI_MESSAGE_STREAM_HEADERS); clients check none,
# but the protocol's docs require the version header.
UI_STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "x-vercel-ai-ui-message-stream": "v1",
}
DONE = b"data: [DONE]\n\n"


def encode(chunk: dict[str, Any]) -> bytes:
    """One chunk in the wire format: a `data:` line of compact JSON."""
    return (
        b"data: "
        + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode()
        + (b"\n\n")
    )


class Chunker:
    """Turns one reply's events, in order, into chunks; keeps which part is open."""

    def __init__(self) -> None:
        self._open: tuple[str, str] | None = None  # (kind, id) of the part being streamed
        self._parts = 0

    def chunks(self, event: StreamEvent) -> Iterator[dict[str, Any]]:
        """The chunks one event becomes (none for events the protocol has no place for)."""
        data = event.data
        if event.event == "session":
            message_id = data.get("assistant_message_id") or f"guest-{uuid.uuid4()}"
            yield {"type": "start", "messageId": message_id, "messageMetadata": _ids(data)}
            yield {"type": "start-step"}
        elif event.event in ("reasoning", "delta"):
            kind = "reasoning" if event.event == "reasoning" else "text"
            yield from self._open_part(kind)
            assert self._open is not None
            yield {"type": f"{kind}-delta", "id": self._open[1], "delta": data["text"]}
        elif event.event == "done":
            yield from self._close_part()
            if data.get("stop_reason") == "cancelled":
                yield {"type": "abort"}
                return
            yield {"type": "finish-step"}
            metadata = finish_metadata(
                data.get("stop_reason"), data.get("model"), data.get("usage")
            )
            yield {"type": "finish", "messageMetadata": metadata}
        elif event.event == "error":
            yield from self._close_part()
            yield {"type": "error", "errorText": data.get("detail") or data.get("error", "")}

    def _open_part(self, kind: str) -> Iterator[dict[str, Any]]:
        if self._open is not None and self._open[0] == kind:
            return
        yield from self._close_part()
        self._parts += 1
        self._open = (kind, f"{kind}-{self._parts}")
        yield {"type": f"{kind}-start", "id": self._open[1]}

    def _close_part(self) -> Iterator[dict[str, Any]]:
        if self._open is not None:
            kind, part_id = self._open
            self._open = None
            yield {"type": f"{kind}-end", "id": part_id}


async def ui_stream(
    batches: AsyncIterator[list[StreamEvent] | None],
) -> AsyncIterator[bytes]:
    """Encode a reply's events (None: idle) as the UI message stream, ending with [DONE].

    The chunks of the events that came together go out in one write.
    """
    chunker = Chunker()
    async for batch in batches:
        if batch is None:
            yield PING
            continue
        out: list[bytes] = []
        ended = False
        for event in batch:
            out.extend(encode(chunk) for chunk in chunker.chunks(event))
            if event.terminal:
                ended = True
                break
        if out:
            yield b"".join(out)
        if ended:
            break
    yield DONE


async def one_by_one(
    events: AsyncIterator[StreamEvent | None],
) -> AsyncIterator[list[StreamEvent] | None]:
    """Wrap single events (a replay from Redis or the database) as batches of one."""
    async for event in events:
        yield None if event is None else [event]


def _ids(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "sessionId": data.get("session_id"),
        "userMessageId": data.get("user_message_id"),
        "assistantMessageId": data.get("assistant_message_id"),
        "saved": data.get("saved", False),
    }


# Zyron's stop reasons (Anthropic's names) as the AI SDK's finish reasons.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content-filter",
    "tool_use": "tool-calls",
}


def finish_metadata(stop: str | None, model: str | None, usage: Any) -> dict[str, Any]:
    """A finished reply's metadata: the finish reason (in the SDK's words), model and usage."""
    return {
        "finishReason": FINISH_REASONS.get(stop or "", "other"),
        "stopReason": stop,
        "model": model,
        "usage": usage,
    }
