"""Generated titles over real HTTP: after the reply, as a `title` event, PATCH wins."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, HttpError, TextReply
from tests.redis_server import RedisServer
from tests.support import Account, LiveServer, live_server, signup, stream_chat
from zyron.streams.redis_hub import reply_key

TITLE_WAIT = 0.5


@pytest.fixture(scope="module")
def titled(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that titles new sessions with claude-haiku-4-5, waiting 0.5 s after `done`."""
    settings = backend.settings(
        tmp_path_factory.mktemp("titles"),
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=fake_anthropic.base_url,
        auto_titles=True,
        title_model="claude-haiku-4-5",
        title_wait_seconds=TITLE_WAIT,
    )
    with live_server(settings) as running:
        yield running


@pytest.fixture
def http(titled: LiveServer, upstream: FakeAnthropic) -> Iterator[httpx.Client]:
    """A client of the titling server."""
    with titled.client() as client:
        yield client


@pytest.fixture
def alice(http: httpx.Client) -> Account:
    """A signed-up user."""
    return signup(http)


def _failed_first_exchange(
    http: httpx.Client, account: Account, upstream: FakeAnthropic, message: str
) -> dict[str, Any]:
    """Start a session whose first reply fails; return its `session` event."""
    upstream.enqueue(HttpError(status=400, error_type="invalid_request_error"))
    events = stream_chat(http, {"message": message}, account.headers)
    assert events[-1].event == "error"
    session: dict[str, Any] = events[0].data
    return session


def _title(http: httpx.Client, account: Account, sid: str) -> str:
    title: str = http.get(f"/sessions/{sid}", headers=account.headers).json()["title"]
    return title


def test_new_session_gets_a_title_event_after_done(
    http: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """The reply streams first; the title is asked of the title model and follows `done`."""
    upstream.enqueue(TextReply(chunks=("Try the Louvre.",)), TextReply(chunks=('"Paris plans"',)))
    events = stream_chat(http, {"message": "What should I see in Paris?"}, alice.headers)
    assert [e.event for e in events] == ["session", "delta", "done", "title"]
    sid = events[0].data["session_id"]
    assert events[-1].data == {"session_id": sid, "title": "Paris plans"}
    assert int(str(events[-1].id)) > int(str(events[-2].id))  # resumable after `done`
    assert _title(http, alice, str(sid)) == "Paris plans"

    reply_call, title_call = upstream.requests
    assert reply_call.body["model"] == "claude-sonnet-5"
    assert title_call.body["model"] == "claude-haiku-4-5"
    prompt = title_call.body["messages"][0]["content"]
    assert "What should I see in Paris?" in prompt
    assert "Try the Louvre." in prompt

    # The next exchange does not retitle it.
    upstream.enqueue(TextReply(chunks=("Yes.",)))
    later = stream_chat(http, {"message": "More?", "session_id": sid}, alice.headers)
    assert [e.event for e in later][-1] == "done"
    assert len(upstream.requests) == 3


def test_given_title_is_kept_and_no_title_is_asked_for(
    http: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """A session created with a title is never retitled."""
    upstream.enqueue(TextReply())
    events = stream_chat(http, {"message": "hi", "title": "Mine"}, alice.headers)
    assert [e.event for e in events][-1] == "done"
    assert len(upstream.requests) == 1
    assert _title(http, alice, str(events[0].data["session_id"])) == "Mine"


def test_title_never_delays_the_reply_and_patch_wins(
    http: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """stream=false answers while the title is still being made; a PATCH made meanwhile wins."""
    title_held = threading.Event()
    upstream.enqueue(
        TextReply(chunks=("ok",)), TextReply(chunks=("Slow", " title"), hold=title_held)
    )
    # The title call cannot finish until the test lets it (or for TITLE_TIMEOUT_SECONDS, 20):
    # an answer that waited for it would take 20 s, past this request's timeout.
    response = http.post(
        "/chat",
        json={"message": "hello", "stream": False},
        headers=alice.headers,
        timeout=httpx.Timeout(15.0),
    )
    assert response.status_code == 200
    sid = response.json()["session_id"]
    patched = http.patch(f"/sessions/{sid}", json={"title": "Chosen"}, headers=alice.headers)
    assert patched.status_code == 200
    deadline = time.monotonic() + 5
    while len(upstream.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    title_held.set()
    time.sleep(1.0)  # the title call has answered and been refused by now
    assert _title(http, alice, sid) == "Chosen"


def test_a_title_given_as_new_chat_is_kept(
    http: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """Only a session created without a title gets one: "New chat" chosen by hand stays."""
    created = http.post("/sessions", json={"title": "New chat"}, headers=alice.headers)
    sid = created.json()["id"]
    upstream.enqueue(TextReply())
    events = stream_chat(http, {"message": "hi", "session_id": sid}, alice.headers)
    assert events[-1].event == "done"
    assert len(upstream.requests) == 1  # no title call
    # And a session renamed by PATCH before its first reply is not retitled either.
    untitled = http.post("/sessions", json={}, headers=alice.headers).json()["id"]
    http.patch(f"/sessions/{untitled}", json={"title": "Mine"}, headers=alice.headers)
    upstream.enqueue(TextReply())
    assert stream_chat(http, {"message": "hi", "session_id": untitled}, alice.headers)
    assert len(upstream.requests) == 2
    assert _title(http, alice, untitled) == "Mine"


def test_slow_title_ends_the_stream_and_is_saved_later(
    http: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """Past TITLE_WAIT_SECONDS the stream ends at `done`; the title still lands."""
    upstream.enqueue(TextReply(chunks=("ok",)), TextReply(chunks=("Late title",), first_delay=1.0))
    started = time.monotonic()
    events = stream_chat(http, {"message": "hello"}, alice.headers)
    assert [e.event for e in events] == ["session", "delta", "done"]
    assert time.monotonic() - started < 1.0
    sid = str(events[0].data["session_id"])
    deadline = time.monotonic() + 5
    while _title(http, alice, sid) == "New chat" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _title(http, alice, sid) == "Late title"


def test_failed_title_call_falls_back_to_the_message(
    http: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """If the title model fails, the title is the message's first words."""
    upstream.enqueue(TextReply(chunks=("ok",)), HttpError(status=500, error_type="api_error"))
    events = stream_chat(http, {"message": "Bread recipe for beginners"}, alice.headers)
    assert events[-1].event == "title"
    assert events[-1].data["title"] == "Bread recipe for beginners"


def test_failed_reply_gets_no_title_until_one_succeeds(
    http: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """No title from a failed exchange; the next complete one titles the session."""
    sid = _failed_first_exchange(http, alice, upstream, "first")["session_id"]
    assert len(upstream.requests) == 1
    upstream.enqueue(TextReply(chunks=("ok",)), TextReply(chunks=("Second try",)))
    events = stream_chat(http, {"message": "again", "session_id": sid}, alice.headers)
    assert events[-1].event == "title"
    assert _title(http, alice, str(sid)) == "Second try"


def test_regenerating_a_failed_first_reply_titles_the_session(
    http: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """The first reply failed, so no title; regenerating it gives one, from the question."""
    session = _failed_first_exchange(http, alice, upstream, "Plan a week in Rome")
    sid, failed = session["session_id"], session["assistant_message_id"]
    upstream.enqueue(TextReply(chunks=("Day one: the Forum.",)), TextReply(chunks=("Rome week",)))
    with http.stream("POST", f"/chat/{failed}/regenerate", json={}, headers=alice.headers) as r:
        assert r.status_code == 200
        names = [line[len("event: ") :] for line in r.iter_lines() if line.startswith("event: ")]
    assert names == ["session", "delta", "done", "title"]
    assert _title(http, alice, str(sid)) == "Rome week"
    assert "Plan a week in Rome" in upstream.requests[-1].body["messages"][0]["content"]


def test_title_is_not_mirrored_to_redis(
    backend: Backend,
    fake_anthropic: FakeAnthropic,
    upstream: FakeAnthropic,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With Redis, the reply's stream there ends at `done` and keeps its retention."""
    settings = backend.settings(
        tmp_path_factory.mktemp("titles-redis"),
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=fake_anthropic.base_url,
        auto_titles=True,
        redis_url=redis_server.url,
        stream_retention_seconds=60,
    )
    with live_server(settings) as running, running.client() as http:
        account = signup(http)
        upstream.enqueue(TextReply(chunks=("ok",)), TextReply(chunks=("A title",)))
        events = stream_chat(http, {"message": "hello"}, account.headers)
        assert events[-1].event == "title"
        key = reply_key(uuid.UUID(str(events[0].data["assistant_message_id"])))

        async def read() -> tuple[list[Any], int]:
            client = redis.asyncio.Redis.from_url(redis_server.url)
            try:
                deadline = time.monotonic() + 5
                entries: list[Any] = []
                while time.monotonic() < deadline:  # the mirror writes in the background
                    entries = list(await client.xrange(key) or [])
                    if entries and entries[-1][1][b"event"] == b"done":
                        break
                    await asyncio.sleep(0.05)
                return entries, int(await client.ttl(key))
            finally:
                await client.aclose()

        entries, ttl = asyncio.run(read())
    kinds = [fields[b"event"] for _, fields in entries]
    assert kinds[-1] == b"done"
    assert b"title" not in kinds
    assert 0 < ttl <= 60
