"""Test helpers: a live Zyron server on a real port, API clients and factories."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.app import create_app
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.unit_of_work import unit_of_work
from zyron.settings import Settings

T = TypeVar("T")

PASSWORD = "correct horse battery staple"

# Database URL of a test server -> a superuser URL of the same database, for inspection that
# must not be filtered by row level security (the server's own role is under forced RLS).
ADMIN_URLS: dict[str, str] = {}


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test server: nothing taken from the machine's environment or .env."""
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": data_dir,
        "database_url": None,
        "secret_key": None,
        "anthropic_api_key": None,
        "anthropic_base_url": None,
        "openai_api_key": None,
        "openai_base_url": None,
        "local_model": False,
        "local_runtime": "auto",  # not what a LOCAL_RUNTIME in the environment says
        "models_file": None,
        "default_model": None,
        "title_model": None,
        "auto_titles": False,
        # Tests sign up hundreds of accounts from one address; tests/limits turn limits on.
        "rate_limit_enabled": False,
        "supabase_url": None,
        "supabase_jwt_secret": None,
        "redis_url": None,
        "metrics_token": None,
        "metrics_port": None,
        "otel_exporter_otlp_endpoint": None,
        "upstream_max_retries": 0,
        "upstream_timeout_seconds": 10.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class LiveServer:
    """Zyron served by uvicorn on a real port, in a thread of the test process."""

    settings: Settings
    url: str = ""
    # More arguments of create_app (an in-memory span exporter).
    app_options: dict[str, Any] = field(default_factory=dict)
    _server: uvicorn.Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> LiveServer:
        """Start serving and wait until the server accepts requests."""
        port = free_port()
        config = uvicorn.Config(
            create_app(self.settings, **self.app_options),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            # As `zyron serve` runs it: the client address is decided by TRUSTED_PROXIES, not
            # by uvicorn believing X-Forwarded-For from 127.0.0.1.
            proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Shut down gracefully."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)

    def client(self, **kwargs: Any) -> httpx.Client:
        """Return an HTTP client for this server."""
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """Run SQL directly on the server's database, bypassing RLS, and return the rows."""

        url = self.settings.resolved_database_url
        url = ADMIN_URLS.get(url, url)

        async def run() -> list[tuple[Any, ...]]:
            engine = create_engine(url)
            try:
                async with engine.begin() as conn:  # commits, so the helper can also write
                    result = await conn.execute(text(sql), params)
                    return [tuple(row) for row in result.all()] if result.returns_rows else []
            finally:
                await engine.dispose()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(run())
        # Playwright's sync API keeps a loop running in this thread: run beside it.
        with ThreadPoolExecutor(max_workers=1) as worker:
            return worker.submit(asyncio.run, run()).result()

    @property
    def dialect(self) -> str:
        """Return 'sqlite' or 'postgresql'."""
        return (
            "sqlite" if self.settings.resolved_database_url.startswith("sqlite") else "postgresql"
        )

    def id(self, value: uuid.UUID | str) -> uuid.UUID | str:
        """Return a UUID as a query parameter: SQLite stores them as 32 hex digits."""
        value = uuid.UUID(str(value))
        return value.hex if self.dialect == "sqlite" else value

    def count(self, table: str) -> int:
        """Count the rows of a table."""
        return int(self.query(f"SELECT count(*) FROM {table}")[0][0])

    def counts(self) -> dict[str, int]:
        """Count the rows of every user-data table."""
        return {t: self.count(t) for t in ("users", "chat_sessions", "messages", "refresh_tokens")}


@contextmanager
def live_server(settings: Settings, **app_options: Any) -> Iterator[LiveServer]:
    """Run a server for the duration of the block (`app_options`: more for create_app)."""
    server = LiveServer(settings, app_options=app_options).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Account:
    """A signed-up user and their tokens."""

    id: uuid.UUID
    email: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        """Return the Authorization header."""
        return {"Authorization": f"Bearer {self.access_token}"}


def unique_email(prefix: str = "user") -> str:
    """Return an email no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def signup(client: httpx.Client, email: str | None = None, password: str = PASSWORD) -> Account:
    """Create an account through the API."""
    email = email or unique_email()
    response = client.post("/auth/signup", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        id=uuid.UUID(body["user"]["id"]),
        email=body["user"]["email"],
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
    )


@dataclass
class SseEvent:
    """One parsed server-sent event."""

    id: str | None
    event: str
    data: dict[str, Any]


def parse_sse(raw: str) -> tuple[list[SseEvent], int]:
    """Parse an SSE body into events, and count the `: ping` comments."""
    events: list[SseEvent] = []
    pings = 0
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        event_id, name, data = None, "message", ""
        for line in block.split("\n"):
            if line.startswith(":"):
                pings += 1
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        if data:
            events.append(SseEvent(event_id, name, json.loads(data)))
    return events, pings


def stream_chat(
    client: httpx.Client, body: dict[str, Any], headers: dict[str, str] | None = None
) -> list[SseEvent]:
    """POST /chat with streaming and return the events."""
    with client.stream("POST", "/chat", json=body, headers=headers or {}) as response:
        assert response.status_code == 200, response.read().decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        events, _ = parse_sse(response.read().decode())
    return events


async def as_user(url: str, user_id: uuid.UUID, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in the user's own unit of work on `url` (under RLS on Postgres), as the app."""
    engine = create_engine(url)
    try:
        claims = {"sub": str(user_id), "role": "authenticated"}
        async with unit_of_work(
            create_sessionmaker(engine), role="authenticated", claims=claims
        ) as db:
            return await work(db)
    finally:
        await engine.dispose()
