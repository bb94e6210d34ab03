"""Real `zyron serve` processes on a port each, sharing Postgres (and Redis): the helpers.

Used by tests/test_replicas.py (processes side by side) and tests/deploy (behind HAProxy).
Every server is a subprocess talking to the fake Anthropic upstream of the test process over
HTTP; the database is inspected as the superuser (no RLS).
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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from tests.pg import APP_ROLE, PostgresServer, sqlalchemy_url
from tests.support import SseEvent, free_port
from zyron.settings import Settings

T = TypeVar("T")

# The same signing key on every replica: a token issued by one is accepted by all.
SECRET_KEY = "replica-test-key-0123456789-abcdefghijklmnopqrst"
STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0
# Bound for what recovery must do "soon": lease (2 s) + sweep (0.5 s), with room to spare.
SETTLE_SECONDS = 15.0
TERMINAL = ("done", "error")

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
    # No load balancer checks these replicas' health: a SIGTERM needs no minimum drain.
    env["DRAIN_MIN_SECONDS"] = "0"
    env.update(values)
    return env


@dataclass
class Replica:
    """One `zyron serve` process on a port of its own."""

    name: str
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    args: tuple[str, ...] = ()  # more `zyron serve` arguments (--workers 2)
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

    def start(self, timeout: float = STARTUP_SECONDS) -> Replica:
        """Start the process and wait (at most `timeout` seconds) until /health answers 200."""
        command = [sys.executable, "-m", "zyron", "serve", "--host", "127.0.0.1"]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(  # our own interpreter and arguments
                [*command, "--port", str(self.port), *self.args],
                env=self.env,
                cwd=self.workdir,  # no .env of the repository is read
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
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

    def terminate(self) -> None:
        """Send SIGTERM (the process drains, then stops) without waiting."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self, timeout: float = STOP_SECONDS) -> int | None:
        """Stop the process (SIGTERM, then SIGKILL if it lingers); return its exit status."""
        if self.process is None:
            return None
        self.terminate()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@dataclass
class Deployment:
    """Replicas sharing one Postgres database of their own, and the fake upstream."""

    postgres: PostgresServer
    database: str
    upstream_url: str
    workdir: Path
    replicas: list[Replica] = field(default_factory=list)

    def start(
        self,
        name: str,
        *,
        redis_url: str | None = None,
        args: tuple[str, ...] = (),
        settings: Mapping[str, str] | None = None,
    ) -> Replica:
        """Start a replica on the shared database (and Redis, when given), with `settings`."""
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
        env.update(settings or {})
        if redis_url is not None:
            env["REDIS_URL"] = redis_url
        replica = Replica(name, env, self.workdir, args=args)
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
        """Stop every replica started here (all drain at once)."""
        for replica in self.replicas:
            replica.terminate()
        for replica in self.replicas:
            replica.stop()


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


@contextlib.contextmanager
def deployed(postgres: PostgresServer, upstream_url: str, workdir: Path) -> Iterator[Deployment]:
    """A fresh database for replicas started in the block; every one is stopped at the end."""
    deployment = Deployment(postgres, postgres.create_database(), upstream_url, workdir)
    try:
        yield deployment
    finally:
        deployment.stop_all()
