"""Real `zyron serve` processes sharing Postgres (and Redis): crashes, resume, cancel, outages.

Every server here is a subprocess on a port of its own, talking to the fake Anthropic upstream
of the test process over HTTP; the database is inspected as the superuser (no RLS).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.pg import APP_ROLE, PostgresServer
from tests.redis_server import RedisServer
from tests.replicas import (
    STARTUP_SECONDS,
    TERMINAL,
    ChatRun,
    Deployment,
    EventReader,
    Replica,
    assert_offsets,
    deployed,
    run_chat,
    wait_until,
    words,
)
from tests.support import PASSWORD, Account, signup, stream_chat

CONCURRENT = 10  # replies in flight when the database goes away
OUTAGE_SECONDS = 3.0
QUESTION = "Tell me a long story, please."


@pytest.fixture
def deployment(
    postgres: PostgresServer, upstream: FakeAnthropic, tmp_path: Path
) -> Iterator[Deployment]:
    """A fresh database for this test's replicas; every replica is stopped at the end."""
    with deployed(postgres, upstream.base_url, tmp_path) as deployment:
        yield deployment


@pytest.fixture(params=["redis", "database"])
def shared_redis(request: pytest.FixtureRequest) -> str | None:
    """The replicas share Redis ("redis"), or only Postgres ("database": None)."""
    if request.param == "database":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


def test_kill_9_mid_reply_then_restart(deployment: Deployment, upstream: FakeAnthropic) -> None:
    """kill -9 mid-reply, restart: the reply is interrupted with its text, the question intact."""
    chunks = words(30, "k")
    full = "".join(chunks)
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.1))
    first = deployment.start("first")
    with first.client() as http:
        account = signup(http)
        body = {"message": QUESTION, "title": "Crash"}
        with http.stream("POST", "/chat", json=body, headers=account.headers) as response:
            assert response.status_code == 200, response.read()
            reader = EventReader(response)
            session = reader.session().data
            reply_id = uuid.UUID(session["assistant_message_id"])
            reader.read_deltas(3)
            received = reader.text

            def batch_written() -> str:
                content = str(deployment.message(reply_id)["content"])
                return content if len(content) >= len(received) else ""

            # What the client saw is in the row one flush later; then the process dies.
            written = wait_until(batch_written, "the first batch of the reply in its row")
            first.kill()
            with contextlib.suppress(httpx.HTTPError):
                for _ in reader:  # what was buffered, then the connection breaks
                    pass
    assert reader.events[-1].event not in TERMINAL, "the reply ended before the kill"
    assert deployment.message(reply_id)["status"] == "streaming"  # nobody left to finish it

    second = deployment.start("second")
    wait_until(lambda: not deployment.streaming(), "no row left streaming after the restart")

    reply = deployment.message(reply_id)
    assert reply["status"] == "interrupted"
    content = str(reply["content"])
    assert content.startswith(written), "recovery lost text that was already saved"
    assert full.startswith(content)
    assert len(content) < len(full)
    assert reply["lease_expires_at"] is None
    question = deployment.message(session["user_message_id"])
    assert (question["role"], question["status"], question["content"]) == (
        "user",
        "complete",
        QUESTION,
    )
    assert reply["parent_id"] == question["id"]
    in_session = deployment.rows(
        "SELECT id FROM messages WHERE session_id = $1", uuid.UUID(session["session_id"])
    )
    assert len(in_session) == 2

    # The new process replays the saved text and says the reply was interrupted.
    with (
        second.client() as http,
        http.stream("GET", f"/chat/{reply_id}/stream", headers=account.headers) as response,
    ):
        assert response.status_code == 200, response.read()
        replay = EventReader(response)
        end = replay.read_to_end()
    assert replay.events[0].event == "session"
    assert replay.events[0].data["assistant_message_id"] == str(reply_id)
    assert replay.text == content
    assert end.event == "error", end
    assert end.data["error"] == "reply_interrupted"
    assert end.data["message_id"] == str(reply_id)
    assert_offsets(replay.events, 0)


def test_resume_on_another_replica(
    deployment: Deployment, upstream: FakeAnthropic, shared_redis: str | None
) -> None:
    """Read part of a reply from A, resume on B with Last-Event-ID: exactly the rest, live."""
    chunks = words(40, "r")
    full = "".join(chunks)
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.1))
    a = deployment.start("a", redis_url=shared_redis)
    b = deployment.start("b", redis_url=shared_redis)
    with a.client() as on_a, b.client() as on_b:
        for replica in (on_a, on_b):
            health = replica.get("/health").json()
            assert health["redis"] == ("ok" if shared_redis else None), health
        account = signup(on_a)
        body = {"message": QUESTION, "title": "Resume"}
        with on_a.stream("POST", "/chat", json=body, headers=account.headers) as response:
            assert response.status_code == 200, response.read()
            first = EventReader(response)
            reply_id = first.session().data["assistant_message_id"]
            first.read_deltas(5)
        # The connection to A is gone (a flaky network, a load balancer): the reply goes on.
        seen = first.text
        last_id = first.deltas[-1].id
        assert last_id == str(len(seen))
        assert deployment.message(reply_id)["status"] == "streaming", "too late to test live"
        headers = {**account.headers, "Last-Event-ID": str(last_id)}
        with on_b.stream("GET", f"/chat/{reply_id}/stream", headers=headers) as response:
            assert response.status_code == 200, response.read()
            rest = EventReader(response)
            end = rest.read_to_end()

    assert seen + rest.text == full  # every character once, none twice, none missing
    assert [event.event for event in rest.events if event.event != "delta"] == ["done"]
    assert end.data["stop_reason"] == "end_turn"
    assert end.data["message_id"] == reply_id
    assert_offsets(rest.events, len(seen))
    if shared_redis is not None:
        # Through Redis, B relays A's events one by one, as the upstream sent them.
        assert [event.data["text"] for event in rest.deltas] == list(chunks[len(first.deltas) :])
    reply = deployment.message(reply_id)
    assert (reply["status"], reply["content"]) == ("complete", full)


def test_cancel_sent_to_another_replica(
    deployment: Deployment, upstream: FakeAnthropic, shared_redis: str | None
) -> None:
    """POST /chat/{id}/cancel to B stops the reply A produces; its text is kept as cancelled."""
    chunks = words(60, "c")
    full = "".join(chunks)
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.1))
    a = deployment.start("a", redis_url=shared_redis)
    b = deployment.start("b", redis_url=shared_redis)
    with a.client() as on_a, b.client() as on_b:
        account = signup(on_a)
        body = {"message": QUESTION, "title": "Cancel"}
        with on_a.stream("POST", "/chat", json=body, headers=account.headers) as response:
            assert response.status_code == 200, response.read()
            reader = EventReader(response)
            reply_id = reader.session().data["assistant_message_id"]
            reader.read_deltas(3)
            cancel = on_b.post(f"/chat/{reply_id}/cancel", headers=account.headers)
            cancelled_at = time.monotonic()
            assert cancel.status_code == 202, cancel.text
            assert cancel.json() == {"message_id": reply_id, "status": "cancelling"}
            # Bounded: had the cancel not reached A, the reply would end with end_turn.
            end = reader.read_to_end()
            print(f"\ncancel to done: {time.monotonic() - cancelled_at:.2f} s")

    assert end.event == "done", end
    assert end.data["stop_reason"] == "cancelled"
    text = reader.text
    assert text
    assert full.startswith(text)
    assert len(text) < len(full), "the reply ran to its end: the cancel never reached A"
    assert_offsets(reader.events, 0)
    reply = deployment.message(reply_id)
    assert reply["status"] == "cancelled"
    assert reply["content"] == text
    assert reply["stop_reason"] == "cancelled"
    assert reply["lease_expires_at"] is None

    # Asking again once it has ended changes nothing and says how it ended.
    with b.client() as on_b:
        again = on_b.post(f"/chat/{reply_id}/cancel", headers=account.headers)
    assert again.status_code == 202, again.text
    assert again.json() == {"message_id": reply_id, "status": "cancelled"}


def assert_clean_error(response: httpx.Response) -> dict[str, Any]:
    """Check an error response is the JSON error shape with nothing internal in it."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"]
    assert body["detail"]
    for leak in ("Traceback", 'File "', "asyncpg", "sqlalchemy", "postgresql://", APP_ROLE):
        assert leak not in response.text, response.text
    return body


def probe_outage(
    replica: Replica, account: Account, reply_id: uuid.UUID
) -> dict[str, tuple[int, str]]:
    """Call the API while the database is down; check every answer is a clean error."""
    seen: dict[str, tuple[int, str]] = {}
    with replica.client() as http:
        health = http.get("/health")
        assert health.status_code == 503, health.text
        assert health.json()["database"] == "failed"
        seen["GET /health"] = (503, "database failed")
        calls: dict[str, Callable[[], httpx.Response]] = {
            "POST /chat": lambda: http.post(
                "/chat", json={"message": "during", "title": "Outage"}, headers=account.headers
            ),
            "GET /sessions": lambda: http.get("/sessions", headers=account.headers),
            "GET /chat/{id}/stream": lambda: http.get(
                f"/chat/{reply_id}/stream", headers=account.headers
            ),
            "POST /chat/{id}/cancel": lambda: http.post(
                f"/chat/{reply_id}/cancel", headers=account.headers
            ),
            "POST /auth/login": lambda: http.post(
                "/auth/login", json={"email": account.email, "password": PASSWORD}
            ),
        }
        for name, call in calls.items():
            response = call()
            body = assert_clean_error(response)
            seen[name] = (response.status_code, body["error"])
    return seen


def test_database_outage_under_load(
    deployment: Deployment, upstream: FakeAnthropic, postgres: PostgresServer
) -> None:
    """Postgres away ~3 s under 10 live replies: clean errors, recovery, nothing lost."""
    if not postgres.throwaway:
        pytest.skip("needs a throwaway Postgres cluster to stop (ZYRON_TEST_DATABASE_URL is set)")
    short, long = words(30, "s"), words(60, "l")
    fulls = ("".join(short), "".join(long))
    # Half the replies end during the outage, half after it.
    upstream.enqueue(
        *(TextReply(chunks=(short, long)[i % 2], chunk_delay=0.1) for i in range(CONCURRENT))
    )
    replica = deployment.start("solo")
    with replica.client() as http:
        account = signup(http)
    runs = [ChatRun(message=f"question {index}") for index in range(CONCURRENT)]
    seen: dict[str, tuple[int, str]] = {}
    with ThreadPoolExecutor(CONCURRENT) as pool:
        futures = [pool.submit(run_chat, replica.url, account.headers, run) for run in runs]
        for run in runs:
            assert run.flowing.wait(STARTUP_SECONDS), run
            assert run.status == 200, (run.status, run.failure)
            assert len(run.events) > 1, (run.events, run.failure)
        reply_ids = [uuid.UUID(run.session["assistant_message_id"]) for run in runs]
        started = "SELECT count(*) AS n FROM messages WHERE id = ANY($1) AND content <> ''"
        wait_until(
            lambda: deployment.rows(started, reply_ids)[0]["n"] == CONCURRENT,
            "a first batch of every reply in its row",
        )

        postgres.pause()
        paused_at = time.monotonic()
        try:
            seen = probe_outage(replica, account, reply_ids[0])
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - paused_at)))
        finally:
            postgres.unpause()
        # Until every reply has ended, watch the rows: a reply still being produced must
        # never be declared interrupted (its replica is alive, only its lease lapsed).
        statuses: dict[uuid.UUID, set[str]] = {reply_id: set() for reply_id in reply_ids}
        deadline = time.monotonic() + 60
        while not all(future.done() for future in futures) and time.monotonic() < deadline:
            for row in deployment.rows(
                "SELECT id, status FROM messages WHERE id = ANY($1)", reply_ids
            ):
                statuses[row["id"]].add(row["status"])
            time.sleep(0.1)
        for future in futures:
            future.result(timeout=60)
    print(f"\nduring the outage: {seen}")

    with replica.client() as http:
        wait_until(lambda: http.get("/health").status_code == 200, "/health to answer 200 again")
        # A new chat works again.
        upstream.enqueue(TextReply(chunks=("back", " again")))
        events = stream_chat(http, {"message": "after", "title": "After"}, account.headers)
        assert events[-1].event == "done", events[-1]
        assert "".join(str(e.data["text"]) for e in events if e.event == "delta") == "back again"
        listed = http.get("/sessions", headers=account.headers)
        assert listed.status_code == 200, listed.text
        assert len(listed.json()) == CONCURRENT + 1

    wait_until(lambda: not deployment.streaming(), "no row left streaming after the outage")
    outcomes: dict[str, int] = {}
    swept: list[str] = []  # replies declared interrupted while their replica still produced them
    for run in runs:
        end = run.events[-1]
        assert end.event in TERMINAL, (run.message, run.failure, run.events[-3:])
        key = f"{end.event}:{end.data.get('stop_reason') or end.data.get('error')}"
        outcomes[key] = outcomes.get(key, 0) + 1
        question = deployment.message(run.session["user_message_id"])
        assert (question["role"], question["status"], question["content"]) == (
            "user",
            "complete",
            run.message,
        ), "a user message was lost or changed"
        reply = deployment.message(run.session["assistant_message_id"])
        content = str(reply["content"])
        assert run.text in fulls, "the stream itself lost text"
        if end.event == "done":
            # A reply the client was told is finished must be saved whole.
            assert (reply["status"], content) == ("complete", run.text), run.message
            if "interrupted" in statuses[reply["id"]]:
                swept.append(run.message)
        else:
            assert end.data["error"] == "persist_failed", end
            assert reply["status"] == "interrupted", reply
            assert content
            assert run.text.startswith(content)
        assert reply["lease_expires_at"] is None
    print(f"stream endings: {outcomes}; live replies seen as interrupted: {swept}")

    final = deployment.rows("SELECT role, status, content FROM messages")
    assert sum(row["role"] == "user" for row in final) == CONCURRENT + 1, "outage left a message"
    for row in final:
        if row["role"] == "assistant":
            assert row["status"] in ("complete", "interrupted"), row
            if row["status"] == "interrupted":
                assert row["content"], row

    # Last, so that everything above is checked whatever this says: the issue asks for 503s.
    refused = {name: answer for name, answer in seen.items() if answer[0] != 503}
    assert not refused, f"a database outage must answer 503 database_unavailable, got {refused}"
    assert not swept, (
        f"{len(swept)} replies still being produced were marked interrupted by the recovery "
        "sweep after the outage (their lease lapsed while the database was away)"
    )
