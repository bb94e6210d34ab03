"""Replies are never lost: resume, batched writes, disconnects, cancel, retries, recovery."""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import (
    Drop,
    FakeAnthropic,
    HttpError,
    MidStreamError,
    Reply,
    TextReply,
    Truncated,
)
from tests.support import (
    Account,
    LiveServer,
    SseEvent,
    live_server,
    parse_sse,
    signup,
    stream_chat,
)
from zyron.chat.writer import recover_abandoned
from zyron.db.engine import create_engine, create_sessionmaker

API_KEY = "sk-ant-test-key-never-logged"
# Mixed widths and scripts: ids count characters, so an offset mistake shows at once.
WORDS = ("tok", "café", "日本語", "naïve", "🙂ok", "x")
WAIT_SECONDS = 30.0


def _chunks(count: int) -> tuple[str, ...]:
    """Return `count` distinct text chunks of a few characters each (never fewer than 3)."""
    return tuple(f"{WORDS[index % len(WORDS)]}{index} " for index in range(count))


# --------------------------------------------------------------------------------------------
# Helpers


class EventReader:
    """Read the events of a streaming response one at a time, skipping `: ping` comments."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.iter_text()
        self._buffer = ""

    def next(self, deadline: float = math.inf) -> SseEvent | None:
        """Return the next event, or None at the end; TimeoutError once `deadline` has passed."""
        while True:
            while "\n\n" not in self._buffer:
                if time.monotonic() > deadline:  # checked as chunks (pings too) arrive
                    raise TimeoutError("no terminal event before the deadline")
                try:
                    self._buffer += next(self._chunks)
                except StopIteration:
                    return None
            block, self._buffer = self._buffer.split("\n\n", 1)
            events, _ = parse_sse(block + "\n\n")
            if events:
                return events[0]

    def expect(self, name: str) -> SseEvent:
        """Return the next event, which must be named `name`."""
        event = self.next()
        assert event is not None, f"the stream ended before a {name!r} event"
        assert event.event == name, event
        return event

    def rest(self, deadline: float = math.inf) -> list[SseEvent]:
        """Return every remaining event."""
        events: list[SseEvent] = []
        while (event := self.next(deadline)) is not None:
            events.append(event)
        return events


@contextmanager
def _chat_stream(
    client: httpx.Client, body: dict[str, Any], account: Account
) -> Iterator[EventReader]:
    """POST /chat and yield a reader; leaving the block hangs up if the stream is unread."""
    with client.stream("POST", "/chat", json=body, headers=account.headers) as response:
        assert response.status_code == 200, response.read().decode()
        yield EventReader(response)


def _read_stream(
    client: httpx.Client, path: str, account: Account, last_event_id: str | None = None
) -> tuple[list[SseEvent], str]:
    """GET a resume endpoint to its end; return the events and the raw body."""
    headers = dict(account.headers)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    with client.stream("GET", path, headers=headers) as response:
        body = response.read().decode()
        assert response.status_code == 200, body
        assert response.headers["content-type"].startswith("text/event-stream")
    events, _ = parse_sse(body)
    return events, body


def _joined(events: list[SseEvent], start: int) -> str:
    """Join the deltas, checking each one starts where the previous ended (ids are offsets)."""
    offset = start
    parts: list[str] = []
    for event in events:
        if event.event != "delta":
            continue
        text = str(event.data["text"])
        assert event.id is not None
        assert text, "an empty delta"
        assert int(event.id) - len(text) == offset, (event, offset)
        offset = int(event.id)
        parts.append(text)
    return "".join(parts)


def _row(server: LiveServer, message_id: str) -> tuple[str, str]:
    """Return a message's (content, status) straight from the database."""
    rows = server.query(
        "SELECT content, status FROM messages WHERE id = :i", i=server.id(message_id)
    )
    assert len(rows) == 1, rows
    return str(rows[0][0]), str(rows[0][1])


def _wait_final(server: LiveServer, message_id: str) -> tuple[str, str]:
    """Poll a reply until it is no longer streaming; return its (content, status)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        content, status = _row(server, message_id)
        if status != "streaming":
            return content, status
        assert time.monotonic() < deadline, f"reply {message_id} still streaming: {content!r}"
        time.sleep(0.02)


def _observe(server: LiveServer, message_id: str) -> list[tuple[str, str]]:
    """Poll a reply as fast as possible until it ends; return every (content, status) seen."""
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        seen.append(_row(server, message_id))
        if seen[-1][1] != "streaming":
            return seen
        assert time.monotonic() < deadline, f"reply {message_id} never ended"


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait, within a generous deadline, until `condition` holds."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _upstream_connections(fake: FakeAnthropic) -> int:
    """Count the connections the fake upstream is still serving."""
    server = fake._server
    assert server is not None
    with server._live_lock:
        return len(server._live)


def _stamp(server: LiveServer, moment: datetime | None) -> datetime | str | None:
    """Return a UTC time as a query parameter: SQLite stores naive UTC text."""
    if moment is None or server.dialect != "sqlite":
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


@contextmanager
def _serve(
    backend: Backend,
    fake: FakeAnthropic,
    factory: pytest.TempPathFactory,
    name: str,
    **overrides: Any,
) -> Iterator[LiveServer]:
    """Run a server on a fresh database of the backend's kind, talking to the fake upstream."""
    settings = backend.settings(
        factory.mktemp(name),
        anthropic_api_key=API_KEY,
        anthropic_base_url=fake.base_url,
        **overrides,
    )
    with live_server(settings) as running:
        yield running


@pytest.fixture
def alice(client: httpx.Client) -> Account:
    """A signed-up user of the shared server."""
    return signup(client)


# --------------------------------------------------------------------------------------------
# 1. Resume from Last-Event-ID


@pytest.mark.parametrize(
    ("deltas_read", "back"),
    [(0, 0), (1, 0), (7, 0), (7, 2), (18, 3), (18, 1)],
)
def test_resume_mid_reply_yields_exactly_the_missing_text(
    server: LiveServer,
    client: httpx.Client,
    alice: Account,
    upstream: FakeAnthropic,
    deltas_read: int,
    back: int,
) -> None:
    """Hang up after some deltas; resuming from an id (even inside a delta) sends the rest once."""
    chunks = _chunks(30)
    full = "".join(chunks)
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.05))
    with _chat_stream(client, {"message": "tell me"}, alice) as reader:
        session = reader.expect("session")
        assert session.id == "0"
        seen = ""
        for _ in range(deltas_read):
            delta = reader.expect("delta")
            seen += str(delta.data["text"])
            assert delta.id == str(len(seen))
    mid = str(session.data["assistant_message_id"])
    # `back` > 0 claims fewer characters than the last delta brought: a cut inside its range.
    resume_from = len(seen) - back
    assert back == 0 or resume_from > len(seen) - len(chunks[deltas_read - 1])

    events, _ = _read_stream(client, f"/chat/{mid}/stream", alice, str(resume_from))

    assert [e.event for e in events[:-1]] == ["delta"] * (len(events) - 1)
    resumed = _joined(events, resume_from)
    assert seen[:resume_from] + resumed == full
    done = events[-1]
    assert done.event == "done"
    assert done.id == str(len(full) + 1)
    assert done.data["stop_reason"] == "end_turn"
    assert done.data["message_id"] == mid
    assert _wait_final(server, mid) == (full, "complete")


def test_resume_without_last_event_id_mid_reply_sends_everything(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """With no Last-Event-ID a live reply is replayed from its session event, then followed."""
    chunks = _chunks(24)
    full = "".join(chunks)
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.05))
    with _chat_stream(client, {"message": "again"}, alice) as reader:
        session = reader.expect("session")
        reader.expect("delta")
    mid = str(session.data["assistant_message_id"])
    events, _ = _read_stream(client, f"/chat/{mid}/stream", alice)
    assert events[0].event == "session"
    assert events[0].id == "0"
    assert events[0].data == session.data
    assert _joined(events, 0) == full
    assert [e.event for e in events[1:-1]] == ["delta"] * (len(events) - 2)
    assert events[-1].event == "done"
    assert events[-1].id == str(len(full) + 1)


def test_resume_after_the_reply_finished_replays_it_from_the_database(
    server: LiveServer, client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """A finished reply is replayed as one delta from the saved text, trimmed to what was missed."""
    chunks = _chunks(9)
    full = "".join(chunks)
    length = len(full)
    upstream.enqueue(TextReply(chunks=chunks, input_tokens=17))
    original = stream_chat(client, {"message": "finish first"}, alice.headers)
    session, done = original[0], original[-1]
    assert done.event == "done"
    mid = str(session.data["assistant_message_id"])
    assert _wait_final(server, mid) == (full, "complete")
    path = f"/chat/{mid}/stream"

    # No Last-Event-ID (or one that is not a number): everything.
    for header in (None, "not-a-number", "-1"):
        events, _ = _read_stream(client, path, alice, header)
        assert [(e.event, e.id) for e in events] == [
            ("session", "0"),
            ("delta", str(length)),
            ("done", str(length + 1)),
        ], header
        assert events[0].data == session.data
        assert events[1].data["text"] == full
        assert _stored(events[2].data) == _stored(done.data)
        assert events[2].data["usage"] == {
            "input_tokens": 17,
            "output_tokens": len(chunks),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "reasoning_tokens": None,
        }

    # Last-Event-ID = k: only text[k:], wherever k falls (inside a chunk too).
    for k in (0, 1, 4, length // 2, length - 1):
        events, _ = _read_stream(client, path, alice, str(k))
        assert [(e.event, e.id) for e in events] == [
            ("delta", str(length)),
            ("done", str(length + 1)),
        ], k
        assert events[0].data["text"] == full[k:], k
        assert _stored(events[1].data) == _stored(done.data)

    # Everything but the last event, then nothing at all.
    events, _ = _read_stream(client, path, alice, str(length))
    assert [(e.event, e.id) for e in events] == [("done", str(length + 1))]
    for header in (str(length + 1), str(length + 50)):
        events, body = _read_stream(client, path, alice, header)
        assert events == []
        assert body == ""


def test_session_stream_follows_the_live_reply(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """GET /sessions/{id}/stream follows the reply in progress, from the start or an offset."""
    chunks = _chunks(24)
    full = "".join(chunks)
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.05))
    with _chat_stream(client, {"message": "follow me"}, alice) as reader:
        session = reader.expect("session")
        sid = str(session.data["session_id"])
        first = reader.expect("delta")
        assert first.id is not None
        # A second follower on the same session while the first still reads.
        offset = int(first.id) - 1
        partial, _ = _read_stream(client, f"/sessions/{sid}/stream", alice, str(offset))
        rest = reader.rest()
    assert _joined(partial, offset) == full[offset:]
    assert partial[-1].event == "done"
    assert str(first.data["text"]) + _joined(rest, int(first.id)) == full
    assert rest[-1].event == "done"

    events, _ = _read_stream(client, f"/sessions/{sid}/stream", alice)
    assert events[0].data == session.data
    assert _joined(events, 0) == full
    assert events[-1].event == "done"


def test_session_stream_follows_the_latest_reply(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """After a second turn the session stream is about the second reply, live and finished."""
    upstream.enqueue(TextReply(chunks=("first answer",)))
    first = stream_chat(client, {"message": "one"}, alice.headers)
    sid = str(first[0].data["session_id"])
    chunks = _chunks(20)
    full = "".join(chunks)
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.05))
    with _chat_stream(client, {"message": "two", "session_id": sid}, alice) as reader:
        second = reader.expect("session")
        live, _ = _read_stream(client, f"/sessions/{sid}/stream", alice)
    assert live[0].data == second.data
    assert live[0].data["assistant_message_id"] != first[0].data["assistant_message_id"]
    assert _joined(live, 0) == full
    assert live[-1].event == "done"

    replay, _ = _read_stream(client, f"/sessions/{sid}/stream", alice, "0")
    assert [e.event for e in replay] == ["delta", "done"]
    assert replay[0].data["text"] == full
    assert replay[1].data["message_id"] == second.data["assistant_message_id"]


def test_session_stream_without_a_reply_is_404(client: httpx.Client, alice: Account) -> None:
    """A session with no reply yet has nothing to follow."""
    sid = client.post("/sessions", json={}, headers=alice.headers).json()["id"]
    response = client.get(f"/sessions/{sid}/stream", headers=alice.headers)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_resume_and_cancel_are_for_the_owner_only(
    server: LiveServer, client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """Another user, an unknown id or a user message get 404; no token gets 401; nothing changes."""
    upstream.enqueue(TextReply(chunks=("private",)))
    events = stream_chat(client, {"message": "mine"}, alice.headers)
    session = events[0].data
    mid = str(session["assistant_message_id"])
    sid = str(session["session_id"])
    question = str(session["user_message_id"])
    bob = signup(client)
    before = server.query(
        "SELECT content, status, cancel_requested_at FROM messages WHERE id = :i",
        i=server.id(mid),
    )
    unknown = str(uuid.uuid4())

    def calls(message_id: str, session_id: str) -> list[tuple[str, str]]:
        """List the three owner-only requests for a reply and its session."""
        return [
            ("GET", f"/chat/{message_id}/stream"),
            ("GET", f"/sessions/{session_id}/stream"),
            ("POST", f"/chat/{message_id}/cancel"),
        ]

    for account, message_id, session_id in (
        (bob, mid, sid),
        (alice, unknown, unknown),
        (alice, question, sid),
    ):
        for method, path in calls(message_id, session_id):
            if account is alice and path == f"/sessions/{sid}/stream":
                continue  # alice's own session: followed, not refused
            response = client.request(
                method, path, headers={**account.headers, "Last-Event-ID": "0"}
            )
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"] == "not_found"
    for method, path in calls(mid, sid):
        response = client.request(method, path)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"] == "not_authenticated"
    after = server.query(
        "SELECT content, status, cancel_requested_at FROM messages WHERE id = :i",
        i=server.id(mid),
    )
    assert after == before
    assert after[0][:2] == ("private", "complete")


# --------------------------------------------------------------------------------------------
# 2. The reply is written to the database as it streams, in batches


@pytest.fixture(scope="module")
def interval_server(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that writes a streaming reply every 100 ms."""
    with _serve(
        backend, fake_anthropic, tmp_path_factory, "interval", reply_flush_interval_seconds=0.1
    ) as running:
        yield running


@pytest.fixture(scope="module")
def batching_server(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that writes a streaming reply every 300 ms, however much text is pending."""
    with _serve(
        backend,
        fake_anthropic,
        tmp_path_factory,
        "batching",
        reply_flush_interval_seconds=0.3,
        reply_flush_chars=100_000,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def chars_server(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that writes only once 50 characters are pending (interval and heartbeat 30 s)."""
    with _serve(
        backend,
        fake_anthropic,
        tmp_path_factory,
        "chars",
        reply_flush_interval_seconds=30,
        reply_heartbeat_seconds=30,
        reply_flush_chars=50,
    ) as running:
        yield running


def _observe_slow_reply(server: LiveServer, chunks: tuple[str, ...]) -> list[tuple[str, str]]:
    """Stream a slow reply, watching its row meanwhile; return what the row looked like."""
    full = "".join(chunks)
    with server.client() as http:
        account = signup(http)
        with _chat_stream(http, {"message": "slowly"}, account) as reader:
            session = reader.expect("session")
            mid = str(session.data["assistant_message_id"])
            seen = _observe(server, mid)
            rest = reader.rest()
    assert _joined(rest, 0) == full
    assert rest[-1].event == "done"
    assert seen[-1] == (full, "complete")
    for content, _ in seen:
        assert full.startswith(content), content
    lease = server.query("SELECT lease_expires_at FROM messages WHERE id = :i", i=server.id(mid))
    assert lease == [(None,)]
    return seen


def _history(seen: list[tuple[str, str]]) -> list[tuple[int, str]]:
    """Summarise observations as the successive (length, status) states of the row."""
    states: list[tuple[int, str]] = []
    for content, status in seen:
        if not states or states[-1] != (len(content), status):
            states.append((len(content), status))
    return states


def _intermediate(seen: list[tuple[str, str]], full: str) -> set[str]:
    """Return the distinct partial texts seen while the reply was streaming."""
    return {content for content, status in seen if status == "streaming" and content != full}


def test_reply_text_reaches_the_database_while_it_streams(
    interval_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """The row's content grows before the reply ends, and ends complete."""
    chunks = _chunks(40)
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.05))
    seen = _observe_slow_reply(interval_server, chunks)
    partial = _intermediate(seen, "".join(chunks)) - {""}
    assert len(partial) >= 2, _history(seen)


def test_reply_writes_are_batched_not_per_token(
    batching_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """With a 300 ms interval, far fewer distinct row states exist than chunks were streamed."""
    chunks = _chunks(40)
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.05))
    seen = _observe_slow_reply(batching_server, chunks)
    partial = _intermediate(seen, "".join(chunks)) - {""}
    # The watcher is fast enough to tell the batches apart...
    assert len(partial) >= 2, _history(seen)
    # ...and sees far fewer states than a write per chunk would leave.
    assert len(partial) < len(chunks) / 2, _history(seen)


def test_enough_pending_text_is_written_without_waiting_for_the_interval(
    chars_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """REPLY_FLUSH_CHARS alone triggers writes, and never for less than that many characters."""
    chunks = _chunks(40)
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.05))
    seen = _observe_slow_reply(chars_server, chunks)
    partial = _intermediate(seen, "".join(chunks)) - {""}
    assert partial, _history(seen)
    assert min(len(text) for text in partial) >= 50


def test_the_end_of_a_reply_does_not_wait_for_the_flush_interval(
    chars_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """Short replies are saved and ended at once, not after the 30 s flush interval."""
    with chars_server.client() as http:
        account = signup(http)
        for trial in range(5):  # the wait depends on where the writer's loop is: try a few
            upstream.enqueue(TextReply(chunks=("Hi", " there")))
            started = time.monotonic()
            events = stream_chat(http, {"message": "quick"}, account.headers)
            elapsed = time.monotonic() - started
            assert events[-1].event == "done"
            mid = str(events[0].data["assistant_message_id"])
            assert _row(chars_server, mid) == ("Hi there", "complete")
            assert elapsed < 15, f"trial {trial}: done came after {elapsed:.1f} s"


@pytest.fixture(scope="module")
def default_writer_server(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server with the default write batching and 1 s pings, of its own (a stuck reply stays)."""
    with _serve(
        backend, fake_anthropic, tmp_path_factory, "default-writer", stream_ping_seconds=1
    ) as running:
        yield running


def test_a_fast_reply_longer_than_the_flush_size_ends_and_is_saved(
    default_writer_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """Text arriving faster than the writer runs (> REPLY_FLUSH_CHARS at once) still finishes."""
    chunks = _chunks(100)
    full = "".join(chunks)
    assert len(full) > default_writer_server.settings.reply_flush_chars
    with default_writer_server.client() as http:
        account = signup(http)
        for trial in range(10):
            upstream.enqueue(TextReply(chunks=chunks))
            sid = http.post("/sessions", json={}, headers=account.headers).json()["id"]
            try:
                with _chat_stream(http, {"message": "fast", "session_id": sid}, account) as reader:
                    events = reader.rest(deadline=time.monotonic() + 20)
            except TimeoutError:
                rows = default_writer_server.query(
                    "SELECT status, length(content) FROM messages "
                    "WHERE session_id = :s AND role = 'assistant'",
                    s=default_writer_server.id(sid),
                )
                pytest.fail(f"trial {trial}: no terminal event after 20 s; the reply row is {rows}")
            assert events[-1].event == "done", (trial, events[-1])
            assert _joined(events, 0) == full
            mid = str(events[0].data["assistant_message_id"])
            assert _row(default_writer_server, mid) == (full, "complete")


# --------------------------------------------------------------------------------------------
# 3. A client that hangs up does not lose the reply


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> Account:
    """One user of the shared server for the many disconnect trials."""
    with server.client() as http:
        return signup(http)


def _disconnect_trial(
    server: LiveServer, owner: Account, upstream: FakeAnthropic, rng: random.Random
) -> None:
    """Hang up after a random number of events; the reply must still be saved complete."""
    chunks = _chunks(rng.randint(3, 12))
    full = "".join(chunks)
    cut = rng.randint(0, len(chunks))  # events read before hanging up; 0: right after headers
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=rng.choice((0.005, 0.01, 0.02))))
    with server.client() as http:
        sid = http.post("/sessions", json={}, headers=owner.headers).json()["id"]
        with _chat_stream(http, {"message": "hang up", "session_id": sid}, owner) as reader:
            for _ in range(cut):
                assert reader.next() is not None
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            response = http.get(f"/sessions/{sid}/messages", headers=owner.headers)
            assert response.status_code == 200, response.text
            messages = response.json()
            if len(messages) == 2 and messages[1]["status"] != "streaming":
                break
            assert time.monotonic() < deadline, messages
            time.sleep(0.02)
    assert [(m["role"], m["content"], m["status"]) for m in messages] == [
        ("user", "hang up", "complete"),
        ("assistant", full, "complete"),
    ], (cut, chunks)


@pytest.mark.parametrize("trial", range(20))
def test_reply_survives_a_client_hanging_up_at_a_random_point(
    server: LiveServer, owner: Account, upstream: FakeAnthropic, trial: int
) -> None:
    """Whenever the client goes away, the reply is finished and saved."""
    _disconnect_trial(server, owner, upstream, random.Random(trial))


@pytest.mark.stress
@pytest.mark.parametrize("trial", range(200))
def test_reply_survives_a_client_hanging_up_stress(
    server: LiveServer, owner: Account, upstream: FakeAnthropic, trial: int
) -> None:
    """Two hundred random hang-ups: none loses its reply."""
    _disconnect_trial(server, owner, upstream, random.Random(10_000 + trial))


@pytest.fixture(scope="module")
def hangup_server(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server configured to cancel a reply when its client disconnects."""
    with _serve(
        backend, fake_anthropic, tmp_path_factory, "hangup", cancel_on_disconnect=True
    ) as running:
        yield running


def test_cancel_on_disconnect_keeps_the_text_so_far_as_cancelled(
    hangup_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """With CANCEL_ON_DISCONNECT a hang-up stops the reply; its prefix is kept, cancelled."""
    chunks = _chunks(400)
    full = "".join(chunks)
    upstream.enqueue(TextReply(chunks=("whole",)), TextReply(chunks=chunks, chunk_delay=0.05))
    with hangup_server.client() as http:
        account = signup(http)
        staying = stream_chat(http, {"message": "stay"}, account.headers)
        assert staying[-1].event == "done"
        kept = str(staying[0].data["assistant_message_id"])
        assert _row(hangup_server, kept) == ("whole", "complete")

        with _chat_stream(http, {"message": "leave"}, account) as reader:
            session = reader.expect("session")
            seen = "".join(str(reader.expect("delta").data["text"]) for _ in range(3))
    mid = str(session.data["assistant_message_id"])
    content, status = _wait_final(hangup_server, mid)
    assert status == "cancelled"
    assert content.startswith(seen)
    assert full.startswith(content)
    assert len(content) < len(full)


def test_a_guest_hanging_up_cancels_the_reply(
    server: LiveServer, client: httpx.Client, upstream: FakeAnthropic
) -> None:
    """A guest cannot resume, so nobody would read the rest: the upstream call is cut off."""
    upstream.enqueue(TextReply(chunks=_chunks(600), chunk_delay=0.05))  # 30 s if let run
    with client.stream("POST", "/chat", json={"message": "go on and on"}) as response:
        reader = EventReader(response)
        assert reader.expect("session").data["saved"] is False
        for _ in range(3):
            reader.expect("delta")
    deadline = time.monotonic() + 10
    while upstream.hang_ups == 0:
        assert time.monotonic() < deadline, "the guest's reply went on after the hang-up"
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# 4. Cancel


def test_cancel_stops_the_reply_and_keeps_its_text(
    server: LiveServer, client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """POST cancel: 202, the stream ends with done/cancelled, the text it carried is kept."""
    chunks = _chunks(600)  # 30 s if nothing stopped it
    full = "".join(chunks)
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.05))
    with _chat_stream(client, {"message": "go on and on"}, alice) as reader:
        session = reader.expect("session")
        mid = str(session.data["assistant_message_id"])
        seen = "".join(str(reader.expect("delta").data["text"]) for _ in range(3))
        with server.client() as other:
            response = other.post(f"/chat/{mid}/cancel", headers=alice.headers)
        assert response.status_code == 202, response.text
        assert response.json() == {"message_id": mid, "status": "cancelling"}
        events = reader.rest()
    # Whatever was already in flight, then done.
    streamed = seen + _joined(events, len(seen))
    done = events[-1]
    assert done.event == "done"
    assert done.id == str(len(streamed) + 1)
    assert done.data["stop_reason"] == "cancelled"
    assert done.data["message_id"] == mid
    assert _wait_final(server, mid) == (streamed, "cancelled")
    assert full.startswith(streamed)
    assert len(streamed) < len(full)
    # The upstream call was abandoned long before its 30 seconds were up.
    _wait_until(lambda: _upstream_connections(upstream) == 0, "the upstream connection to close")
    assert len(upstream.requests) == 1

    # A replay of the cancelled reply ends the same way.
    replay, _ = _read_stream(client, f"/chat/{mid}/stream", alice)
    assert [e.event for e in replay] == ["session", "delta", "done"]
    assert replay[1].data["text"] == streamed
    assert _stored(replay[2].data) == _stored(done.data)

    # Cancelling again: accepted, reports the final status, changes nothing.
    query = "SELECT content, status, cancel_requested_at FROM messages WHERE id = :i"
    before = server.query(query, i=server.id(mid))
    again = client.post(f"/chat/{mid}/cancel", headers=alice.headers)
    assert again.status_code == 202
    assert again.json() == {"message_id": mid, "status": "cancelled"}
    assert server.query(query, i=server.id(mid)) == before


def test_cancelling_a_finished_reply_changes_nothing(
    server: LiveServer, client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """A complete reply: 202 with status complete; content, status and flags stay as they were."""
    upstream.enqueue(TextReply(chunks=("all", " done")))
    events = stream_chat(client, {"message": "quick"}, alice.headers)
    mid = str(events[0].data["assistant_message_id"])
    query = "SELECT content, status, stop_reason, cancel_requested_at FROM messages WHERE id = :i"
    before = server.query(query, i=server.id(mid))
    response = client.post(f"/chat/{mid}/cancel", headers=alice.headers)
    assert response.status_code == 202
    assert response.json() == {"message_id": mid, "status": "complete"}
    assert server.query(query, i=server.id(mid)) == before
    assert before[0] == ("all done", "complete", "end_turn", None)


def test_another_users_cancel_does_not_stop_a_live_reply(
    server: LiveServer, client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """Bob's cancel of Alice's reply in progress is a 404 and the reply completes."""
    chunks = _chunks(12)
    full = "".join(chunks)
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.05))
    bob = signup(client)
    with _chat_stream(client, {"message": "not yours"}, alice) as reader:
        session = reader.expect("session")
        mid = str(session.data["assistant_message_id"])
        response = client.post(f"/chat/{mid}/cancel", headers=bob.headers)
        assert response.status_code == 404
        events = reader.rest()
    assert _joined(events, 0) == full
    assert events[-1].event == "done"
    assert events[-1].data["stop_reason"] == "end_turn"
    assert _wait_final(server, mid) == (full, "complete")


# --------------------------------------------------------------------------------------------
# 5. Upstream faults: retries before the first token, timeouts


@pytest.fixture(scope="module")
def retry_server(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that retries twice, quickly."""
    with _serve(
        backend,
        fake_anthropic,
        tmp_path_factory,
        "retry",
        upstream_max_retries=2,
        upstream_retry_base_seconds=0.01,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def budget_server(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that may retry twice but spend at most 50 ms doing so."""
    with _serve(
        backend,
        fake_anthropic,
        tmp_path_factory,
        "budget",
        upstream_max_retries=2,
        upstream_retry_base_seconds=0.01,
        upstream_retry_budget_seconds=0.05,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def first_token_server(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that waits at most 300 ms for the first token, and never retries."""
    with _serve(
        backend,
        fake_anthropic,
        tmp_path_factory,
        "first-token",
        upstream_first_token_timeout_seconds=0.3,
        upstream_max_retries=0,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def idle_server(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that waits at most 300 ms between tokens; it would retry before any text."""
    with _serve(
        backend,
        fake_anthropic,
        tmp_path_factory,
        "idle",
        upstream_idle_timeout_seconds=0.3,
        upstream_max_retries=2,
        upstream_retry_base_seconds=0.01,
    ) as running:
        yield running


def _chat_on(server: LiveServer, message: str) -> tuple[list[SseEvent], Account, float]:
    """Sign up on `server`, stream one chat; return its events, the account and the time taken."""
    with server.client() as http:
        account = signup(http)
        started = time.monotonic()
        events = stream_chat(http, {"message": message}, account.headers)
        return events, account, time.monotonic() - started


def _replay(server: LiveServer, account: Account, message_id: str) -> list[SseEvent]:
    """Replay a finished reply from the database."""
    with server.client() as http:
        events, _ = _read_stream(http, f"/chat/{message_id}/stream", account)
    return events


@pytest.mark.parametrize(
    "failure",
    [
        HttpError(529, "overloaded_error"),
        HttpError(429, "rate_limit_error", retry_after="0"),
        HttpError(500, "api_error"),
        HttpError(503, "api_error"),
        Drop(chunks=()),
        MidStreamError(chunks=()),
        Truncated(chunks=()),
    ],
    ids=["529", "429-retry-after-0", "500", "503", "dropped", "error-event", "truncated"],
)
def test_a_failure_before_any_text_is_retried_and_succeeds(
    retry_server: LiveServer, upstream: FakeAnthropic, failure: Reply
) -> None:
    """One retryable failure, then a reply: the client sees one clean stream."""
    chunks = ("Second", " time", " lucky")
    upstream.enqueue(failure, TextReply(chunks=chunks))
    events, _, _ = _chat_on(retry_server, "try twice")
    assert [e.event for e in events] == ["session", "delta", "delta", "delta", "done"]
    assert _joined(events, 0) == "Second time lucky"
    assert len(upstream.requests) == 2
    assert upstream.requests[0].body == upstream.requests[1].body
    mid = str(events[0].data["assistant_message_id"])
    assert _row(retry_server, mid) == ("Second time lucky", "complete")


def test_retry_honours_retry_after(retry_server: LiveServer, upstream: FakeAnthropic) -> None:
    """A retry-after of 0.6 s is waited out before the second request."""
    upstream.enqueue(
        HttpError(429, "rate_limit_error", retry_after="0.6"), TextReply(chunks=("ok",))
    )
    events, _, elapsed = _chat_on(retry_server, "patience")
    assert events[-1].event == "done"
    assert len(upstream.requests) == 2
    assert elapsed >= 0.55


def test_retries_give_up_after_the_configured_count(
    retry_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """Three 529s with two retries allowed: upstream_overloaded after exactly three requests."""
    overloaded = HttpError(529, "overloaded_error")
    upstream.enqueue(overloaded, overloaded, overloaded, TextReply(chunks=("never sent",)))
    events, account, _ = _chat_on(retry_server, "busy?")
    assert [e.event for e in events] == ["session", "error"]
    assert events[-1].data["error"] == "upstream_overloaded"
    assert events[-1].data["retryable"] is True
    assert events[-1].id == "1"
    assert len(upstream.requests) == 3
    mid = str(events[0].data["assistant_message_id"])
    assert _row(retry_server, mid) == ("", "error")
    replay = _replay(retry_server, account, mid)
    assert [(e.event, e.id) for e in replay] == [("session", "0"), ("error", "1")]
    assert replay[1].data["error"] == "reply_failed"


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (HttpError(400, "invalid_request_error", "bad model"), "upstream_bad_request"),
        (HttpError(401, "authentication_error"), "upstream_auth"),
    ],
    ids=["400", "401"],
)
def test_a_request_the_upstream_refuses_is_not_retried(
    retry_server: LiveServer, upstream: FakeAnthropic, failure: Reply, code: str
) -> None:
    """A 4xx other than 429 is final: one request, an error event, status error."""
    upstream.enqueue(failure, TextReply(chunks=("never sent",)))
    events, _, _ = _chat_on(retry_server, "bad")
    assert [e.event for e in events] == ["session", "error"]
    assert events[-1].data["error"] == code
    assert events[-1].data["retryable"] is False
    assert len(upstream.requests) == 1
    assert _row(retry_server, str(events[0].data["assistant_message_id"])) == ("", "error")


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (MidStreamError(chunks=("Once", " upon")), "upstream_overloaded"),
        (Drop(chunks=("Once", " upon")), "upstream_unavailable"),
    ],
    ids=["error-event", "dropped"],
)
def test_a_failure_after_text_is_not_retried_and_keeps_the_text(
    retry_server: LiveServer, upstream: FakeAnthropic, failure: Reply, code: str
) -> None:
    """Once text was sent there is no silent retry: the partial reply is kept, interrupted."""
    upstream.enqueue(failure, TextReply(chunks=("never sent",)))
    events, account, _ = _chat_on(retry_server, "story")
    assert [e.event for e in events] == ["session", "delta", "delta", "error"]
    assert events[-1].data["error"] == code
    assert events[-1].id == str(len("Once upon") + 1)
    assert len(upstream.requests) == 1
    mid = str(events[0].data["assistant_message_id"])
    assert _row(retry_server, mid) == ("Once upon", "interrupted")
    replay = _replay(retry_server, account, mid)
    assert [(e.event, e.id) for e in replay] == [("session", "0"), ("delta", "9"), ("error", "10")]
    assert replay[1].data["text"] == "Once upon"
    assert replay[2].data["error"] == "reply_interrupted"


def test_retries_stop_at_the_time_budget(
    budget_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """A retry-after longer than the budget ends the attempts at once, without waiting."""
    upstream.enqueue(
        HttpError(429, "rate_limit_error", retry_after="30"), TextReply(chunks=("never sent",))
    )
    events, _, elapsed = _chat_on(budget_server, "in a hurry")
    assert [e.event for e in events] == ["session", "error"]
    assert events[-1].data["error"] == "upstream_rate_limited"
    assert len(upstream.requests) == 1
    assert elapsed < 15  # far below the 30 s the upstream asked for
    assert _row(budget_server, str(events[0].data["assistant_message_id"])) == ("", "error")


def test_first_token_timeout(first_token_server: LiveServer, upstream: FakeAnthropic) -> None:
    """An upstream silent past the first-token timeout: upstream_timeout, status error."""
    upstream.enqueue(TextReply(chunks=("too late",), first_delay=2))
    events, _, _ = _chat_on(first_token_server, "hello?")
    assert [e.event for e in events] == ["session", "error"]
    assert events[-1].data["error"] == "upstream_timeout"
    assert events[-1].data["retryable"] is True
    assert len(upstream.requests) == 1
    mid = str(events[0].data["assistant_message_id"])
    assert _row(first_token_server, mid) == ("", "error")


def test_idle_timeout_between_tokens(idle_server: LiveServer, upstream: FakeAnthropic) -> None:
    """A gap between tokens past the idle timeout: upstream_timeout, interrupted, no retry."""
    upstream.enqueue(
        TextReply(chunks=("Hello", " world"), chunk_delay=1), TextReply(chunks=("never sent",))
    )
    events, _, _ = _chat_on(idle_server, "slow talker")
    assert [e.event for e in events] == ["session", "delta", "error"]
    assert events[1].data["text"] == "Hello"
    assert events[-1].data["error"] == "upstream_timeout"
    assert events[-1].id == "6"
    assert len(upstream.requests) == 1
    mid = str(events[0].data["assistant_message_id"])
    assert _row(idle_server, mid) == ("Hello", "interrupted")


# --------------------------------------------------------------------------------------------
# 6. Recovery of replies whose process died


def _seed(server: LiveServer) -> tuple[Account, str]:
    """Sign up and create a session with one finished exchange through the API."""
    with server.client() as http:
        account = signup(http)
        events = stream_chat(http, {"message": "seed"}, account.headers)
    assert events[-1].event == "done"
    return account, str(events[0].data["session_id"])


def _insert_replies(
    server: LiveServer, account: Account, session_id: str, leases: dict[str, datetime | None]
) -> dict[str, str]:
    """Insert streaming replies (content = their name) with the given leases, in one statement."""
    now = datetime.now(UTC)
    ids = {name: str(uuid.uuid4()) for name in leases}
    rows = []
    params: dict[str, Any] = {
        "sid": server.id(session_id),
        "uid": server.id(account.id),
    }
    for index, (name, lease) in enumerate(leases.items()):
        rows.append(
            f"(:id{index}, :sid, :uid, 'assistant', :content{index}, 'streaming', "
            f"'claude-sonnet-5', :created{index}, :lease{index})"
        )
        params[f"id{index}"] = server.id(ids[name])
        params[f"content{index}"] = f"{name}: half a reply"
        params[f"created{index}"] = _stamp(server, now + timedelta(milliseconds=index))
        params[f"lease{index}"] = _stamp(server, lease)
    server.query(
        "INSERT INTO messages (id, session_id, user_id, role, content, status, model, "
        "created_at, lease_expires_at) VALUES " + ", ".join(rows),
        **params,
    )
    return ids


def _leases() -> dict[str, datetime | None]:
    """An expired lease, a missing one (a row older than leases), and a live replica's."""
    now = datetime.now(UTC)
    return {
        "expired": now - timedelta(minutes=5),
        "unleased": None,
        "live": now + timedelta(hours=1),
    }


def _lease_of(server: LiveServer, message_id: str) -> object:
    """Return a message's lease_expires_at as the database driver gives it."""
    rows = server.query(
        "SELECT lease_expires_at FROM messages WHERE id = :i", i=server.id(message_id)
    )
    return rows[0][0]


def _assert_recovered(server: LiveServer, ids: dict[str, str]) -> None:
    """Expired and unleased replies are interrupted with their text; the live one is untouched."""
    for name in ("expired", "unleased"):
        assert _row(server, ids[name]) == (f"{name}: half a reply", "interrupted")
        assert _lease_of(server, ids[name]) is None
    assert _row(server, ids["live"]) == ("live: half a reply", "streaming")
    assert _lease_of(server, ids["live"]) is not None


@pytest.fixture(scope="module")
def sweeping_server(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server sweeping every 200 ms, with 1 s leases renewed every 100 ms."""
    with _serve(
        backend,
        fake_anthropic,
        tmp_path_factory,
        "sweep",
        recovery_interval_seconds=0.2,
        reply_lease_seconds=1,
        reply_heartbeat_seconds=0.1,
    ) as running:
        yield running


def test_periodic_sweep_interrupts_abandoned_replies_only(
    sweeping_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """A running server closes replies whose lease expired, keeping their text."""
    account, sid = _seed(sweeping_server)
    ids = _insert_replies(sweeping_server, account, sid, _leases())
    _wait_until(lambda: _row(sweeping_server, ids["expired"])[1] != "streaming", "the sweep to run")
    # The sweep that closed `expired` saw `live` too: they were inserted together.
    _assert_recovered(sweeping_server, ids)
    with sweeping_server.client() as http:
        # tree=true: the inserted replies have no parent, so they are not on the active branch.
        messages = http.get(
            f"/sessions/{sid}/messages", params={"tree": "true"}, headers=account.headers
        ).json()
    by_id = {m["id"]: m for m in messages}
    assert by_id[ids["expired"]]["status"] == "interrupted"
    assert by_id[ids["expired"]]["content"] == "expired: half a reply"


def test_a_live_reply_outlasting_its_lease_is_never_swept(
    sweeping_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """A reply silent for 3 s with 1 s leases and sweeps every 200 ms still completes."""
    upstream.enqueue(TextReply(chunks=("late", " but", " whole"), first_delay=3))
    events, _, _ = _chat_on(sweeping_server, "take your time")
    assert events[-1].event == "done"
    mid = str(events[0].data["assistant_message_id"])
    assert _row(sweeping_server, mid) == ("late but whole", "complete")


def test_restart_interrupts_replies_left_streaming(
    backend: Backend,
    fake_anthropic: FakeAnthropic,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: FakeAnthropic,
) -> None:
    """Rows a dead process left streaming are closed when a server starts on the database."""
    settings = backend.settings(
        tmp_path_factory.mktemp("restart"),
        anthropic_api_key=API_KEY,
        anthropic_base_url=fake_anthropic.base_url,
        recovery_interval_seconds=3600,  # only the start-up sweep can act in this test
    )
    with live_server(settings) as first:
        account, sid = _seed(first)
    ids = _insert_replies(first, account, sid, _leases())
    with live_server(settings) as second:
        _assert_recovered(second, ids)
        with second.client() as http:
            messages = http.get(
                f"/sessions/{sid}/messages", params={"tree": "true"}, headers=account.headers
            ).json()
    assert [(m["role"], m["status"]) for m in messages[:2]] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert messages[0]["content"] == "seed"


def test_recover_abandoned_called_directly(
    backend: Backend,
    fake_anthropic: FakeAnthropic,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: FakeAnthropic,
) -> None:
    """recover_abandoned counts and closes expired replies only, and is idempotent."""
    settings = backend.settings(
        tmp_path_factory.mktemp("direct"),
        anthropic_api_key=API_KEY,
        anthropic_base_url=fake_anthropic.base_url,
    )
    with live_server(settings) as stopped:
        account, sid = _seed(stopped)
    ids = _insert_replies(stopped, account, sid, _leases())

    async def recover() -> list[int]:
        engine = create_engine(settings.resolved_database_url)
        try:
            sessionmaker = create_sessionmaker(engine)
            return [await recover_abandoned(sessionmaker), await recover_abandoned(sessionmaker)]
        finally:
            await engine.dispose()

    assert asyncio.run(recover()) == [2, 0]
    _assert_recovered(stopped, ids)


def _stored(done: dict[str, Any]) -> dict[str, Any]:
    """A `done` event without what only the live stream knows (how much context was sent)."""
    return {key: value for key, value in done.items() if not key.startswith("turns_")}
