"""One server-sent event of a reply, and how its id works."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson

TERMINAL_EVENTS = frozenset({"done", "error"})
# Events that carry characters of the reply, and so move its position.
POSITIONED_EVENTS = frozenset({"delta", "reasoning"})
# Stream responses must reach the client as written: no proxy buffering, no caching.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PING = b": ping\n\n"  # an SSE comment: keeps idle connections open, ignored by clients


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One server-sent event.

    `id` is a position in the reply, so a resume is exact however the events are stored:
    `session` is 0, a `reasoning` or `delta` event is the length of the reply's reasoning
    and text together once it is added (reasoning comes first when the model thinks), and
    the final `done`/`error` is the full length plus one. Resuming after id N means "send
    everything after the first N characters"; for a reply without reasoning that is its
    text, as before reasoning existed.
    """

    id: int
    event: str
    data: dict[str, Any]
    # The wire form, made once: every follower of a reply sends the same bytes.
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        """Tell whether this event ends the stream."""
        return self.event in TERMINAL_EVENTS

    def encode(self) -> bytes:
        """Render as SSE wire format (compact JSON, UTF-8), once per event."""
        wire = self._wire
        if wire is None:
            head = f"id: {self.id}\nevent: {self.event}\ndata: ".encode()
            wire = head + orjson.dumps(self.data) + b"\n\n"
            object.__setattr__(self, "_wire", wire)  # frozen: a cache, not a change
        return wire

    def to_fields(self) -> dict[str, str]:
        """Serialise for a Redis stream entry."""
        return {"id": str(self.id), "event": self.event, "data": json.dumps(self.data)}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> StreamEvent:
        """Rebuild from a Redis stream entry."""
        return cls(int(fields["id"]), fields["event"], json.loads(fields["data"]))


def parse_last_event_id(value: str | None) -> int:
    """Read a Last-Event-ID header; absent or malformed means 'from the start' (-1)."""
    if value is None:
        return -1
    try:
        return max(-1, int(value.strip()))
    except ValueError:
        return -1


def trim_delta(event: StreamEvent, after: int) -> StreamEvent:
    """Cut a delta or reasoning event: a client with the first `after` characters gets the rest."""
    if after <= 0 or event.event not in POSITIONED_EVENTS:
        return event
    text = event.data["text"]
    start = event.id - len(text)
    if start >= after:
        return event
    return StreamEvent(event.id, event.event, {**event.data, "text": text[after - start :]})
