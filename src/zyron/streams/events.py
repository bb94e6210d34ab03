"""One server-sent event of a reply, and how its id works."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

TERMINAL_EVENTS = frozenset({"done", "error"})
# Stream responses must reach the client as written: no proxy buffering, no caching.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PING = b": ping\n\n"  # an SSE comment: keeps idle connections open, ignored by clients


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One server-sent event.

    `id` is a position in the reply's text, so a resume is exact however the events are
    stored: `session` is 0, a `delta` is the length of the text once it is added, and the
    final `done`/`error` is the full length plus one. Resuming after id N means "send
    everything after the first N characters".
    """

    id: int
    event: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        """Tell whether this event ends the stream."""
        return self.event in TERMINAL_EVENTS

    def encode(self) -> bytes:
        """Render as SSE wire format."""
        payload = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)
        return f"id: {self.id}\nevent: {self.event}\ndata: {payload}\n\n".encode()

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
    """Cut a delta so a client that has the first `after` characters gets only the rest."""
    if event.event != "delta" or after <= 0:
        return event
    text = event.data["text"]
    start = event.id - len(text)
    if start >= after:
        return event
    return StreamEvent(event.id, "delta", {**event.data, "text": text[after - start :]})
