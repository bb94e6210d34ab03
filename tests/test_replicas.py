"""Real `zyron serve` processes sharing Postgres (and Redis): crashes, resume, cancel, outages.

Every server here is a subprocess on a port of its own, talking to the fake Anthropic upstream
of the test process over HTTP; the database is inspected as the superuser (no RLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.pg import APP_ROLE, PostgresServer, sqlalchemy_url
from tests.redis_server import RedisServer
from tests.support import PASSWORD, Account, SseEvent, free_port, signup, stream_chat
from zyron.settings import Settings

T = TypeVar("T")

# The same signing key on every replica: a token issued by one is accepted by all.
SECRET_KEY = "replica-test-key-0123456789-abcdefghijklmnopqrst"
STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0
# Bound for what recovery must do "soon": lease (2 s) + sweep (0.5 s), with room to spare.
SETTLE_SECONDS = 15.0
TERMINAL = ("done", "error")
CONCURRENT = 10  # replies in flight when the database goes away
OUTAGE_SECONDS = 3.0
QUESTION = "Tell me a long story, please."

# Every variable Settings reads (and the prefixes of ours): none may leak in from the machine.
SETTING_NAMES = frozenset(f.alias for f in Settings.model_fields.values() if f.alias)
DROPPED_PREFIXES = ("ZYRON_", "ANTHROPIC_", "SUPABASE_")


def words(count: int, tag: str) -> tuple[str, ...]:
    """Return `count` distinct chunks of reply text."""
    return tuple(f"{tag}{index:02d} " for index in range(count))


def fetch(dsn: str, sql: str, *args: object) -> list[dict[str, Any]]:
    """Run a query with asyncpg and return the rows as dicts."""

    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [dict(row) for row in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def wait_until(check: Callable[[], T], what: str, timeout: float = SETTLE_SECONDS) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


class EventReader:
    """Parse a streaming SSE response event by event, keeping every event read."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()
        self.events: list[SseEvent] = []

    def __iter__(self) -> Iterator[SseEvent]:
        """Yield the events that are left, to the end of the response."""
        while (event := self.next()) is not None:
            yield event

    def next(self) -> SseEvent | None:
        """Return the next event (comments skipped), or None when the response ends."""
        event_id: str | None = None
        name, data = "message", ""
        for line in self._lines:
            if not line:
                if data:
                    event = SseEvent(event_id, name, json.loads(data))
                    self.events.append(event)
                    return event
                event_id, name, data = None, "message", ""
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        return None

    @property
    def deltas(self) -> list[SseEvent]:
        """Return the delta events read so far."""
        return [event for event in self.events if event.event == "delta"]

    @property
    def text(self) -> str:
        """Return the reply text read so far."""
        return "".join(str(event.data["text"]) for event in self.deltas)

    def session(self) -> SseEvent:
        """Read the first event, which must be `session`."""
        event = self.next()
        assert event is not None, "the stream ended before its session event"
        assert event.event == "session", event
        return event

    def read_deltas(self, count: int) -> None:
        """Read on until at least `count` deltas have arrived."""
        while len(self.deltas) < count:
            event = self.next()
            assert event is not None, f"stream ended after {len(self.deltas)} deltas"
            assert event.event not in TERMINAL, f"reply ended early: {event}"

    def read_to_end(self) -> SseEvent:
        """Read to the final `done` or `error` event and return it."""
        for event in self:
            if event.event in TERMINAL:
                return event
        raise AssertionError(f"stream ended without done or error: {self.events[-3:]}")


def assert_offsets(events: list[SseEvent], start: int) -> None:
    """Check delta ids are text offsets counted from `start`, the final id the length + 1."""
    position = start
    for event in events:
        if event.event == "delta":
            position += len(str(event.data["text"]))
            assert event.id == str(position), (event, position)
        elif event.event in TERMINAL:
            assert event.id == str(position + 1), (event, position)


def replica_env(**values: str) -> dict[str, str]:
    """The test process's environment without any Zyron setting, plus `values`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in SETTING_NAMES and not name.startswith(DROPPED_PREFIXES)
    }
    env.update(values)
    return env


@dataclass
class Replica:
    """One `zyron serve` process on a port of its own."""

    name: str
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Return the server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        """Return where the server's output goes."""
        return self.workdir / f"{self.name}.log"

    def log_tail(self, chars: int = 4000) -> str:
        """Return the end of the server's log."""
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(errors="replace")[-chars:]

    def start(self) -> Replica:
        """Start the process and wait until /health answers 200."""
        command = [sys.executable, "-m", "zyron", "serve", "--host", "127.0.0.1"]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(  # our own interpreter and arguments
                [*command, "--port", str(self.port)],
                env=self.env,
                cwd=self.workdir,  # no .env of the repository is read
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited {self.process.returncode}: {self.log_tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not become healthy: {self.log_tail()}")
            time.sleep(0.1)

    def client(self) -> httpx.Client:
        """Return an HTTP client for this replica."""
        return httpx.Client(base_url=self.url, timeout=httpx.Timeout(10.0))

    def kill(self) -> None:
        """Kill the process with SIGKILL: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_SECONDS)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL if it lingers)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Deployment:
    """Replicas sharing one Postgres database of their own, and the fake upstream."""

    postgres: PostgresServer
    database: str
    upstream_url: str
    workdir: Path
    replicas: list[Replica] = field(default_factory=list)

    def start(self, name: str, *, redis_url: str | None = None) -> Replica:
        """Start a replica on the shared database (and Redis, when given)."""
        data_dir = self.workdir / f"{name}-data"
        data_dir.mkdir(exist_ok=True)
        env = replica_env(
            DATABASE_URL=sqlalchemy_url(self.postgres.dsn(self.database, user=APP_ROLE)),
            ANTHROPIC_API_KEY="sk-test",
            ANTHROPIC_BASE_URL=self.upstream_url,
            ZYRON_DATA_DIR=str(data_dir),
            SECRET_KEY=SECRET_KEY,
            ZYRON_ENV="test",
            UPSTREAM_MAX_RETRIES="0",
            REPLY_FLUSH_INTERVAL_SECONDS="0.1",
            REPLY_LEASE_SECONDS="2",
            REPLY_HEARTBEAT_SECONDS="0.5",
            RECOVERY_INTERVAL_SECONDS="0.5",
            RATE_LIMIT_ENABLED="false",  # limits have tests of their own (tests/limits)
        )
        if redis_url is not None:
            env["REDIS_URL"] = redis_url
        replica = Replica(name, env, self.workdir)
        self.replicas.append(replica)
        return replica.start()

    def rows(self, sql: str, *args: object) -> list[dict[str, Any]]:
        """Query the shared database as the superuser (RLS does not apply)."""
        return fetch(self.postgres.dsn(self.database), sql, *args)

    def message(self, message_id: uuid.UUID | str) -> dict[str, Any]:
        """Return one message row."""
        rows = self.rows("SELECT * FROM messages WHERE id = $1", uuid.UUID(str(message_id)))
        assert len(rows) == 1, f"message {message_id}: {rows}"
        return rows[0]

    def streaming(self) -> list[dict[str, Any]]:
        """Return the rows that still claim to be streaming."""
        return self.rows("SELECT id, content FROM messages WHERE status = 'streaming'")

    def stop_all(self) -> None:
        """Stop every replica started here."""
        for replica in self.replicas:
            replica.stop()


@pytest.fixture
def deployment(
    postgres: PostgresServer, upstream: FakeAnthropic, tmp_path: Path
) -> Iterator[Deployment]:
    """A fresh database for this test's replicas; every replica is stopped at the end."""
    deployed = Deployment(postgres, postgres.create_database(), upstream.base_url, tmp_path)
    try:
        yield deployed
    finally:
        deployed.stop_all()


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


@dataclass
class ChatRun:
    """One streamed chat made by a worker thread, and how it went."""

    message: str
    status: int | None = None
    events: list[SseEvent] = field(default_factory=list)
    failure: str | None = None
    flowing: threading.Event = field(default_factory=threading.Event)

    @property
    def text(self) -> str:
        """Return the reply text received."""
        return "".join(str(e.data["text"]) for e in self.events if e.event == "delta")

    @property
    def session(self) -> dict[str, Any]:
        """Return the data of the session event."""
        assert self.events, f"{self.message}: no events ({self.status}, {self.failure})"
        assert self.events[0].event == "session"
        return self.events[0].data


def run_chat(url: str, headers: dict[str, str], run: ChatRun) -> None:
    """Stream one chat to its end, recording its events; flag `flowing` once text arrives."""
    body = {"message": run.message, "title": run.message}
    try:
        with (
            httpx.Client(base_url=url, timeout=httpx.Timeout(10.0, read=30.0)) as http,
            http.stream("POST", "/chat", json=body, headers=headers) as response,
        ):
            run.status = response.status_code
            if response.status_code != 200:
                run.failure = response.read().decode()
                return
            reader = EventReader(response)
            run.events = reader.events
            for _ in reader:
                if len(reader.deltas) >= 3:
                    run.flowing.set()
    except httpx.HTTPError as exc:
        run.failure = repr(exc)
    finally:
        run.flowing.set()


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
