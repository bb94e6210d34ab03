"""Fixtures: the fake Anthropic upstream and live Zyron servers on real ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.pg import PostgresServer, PostgresUnavailable
from tests.redis_server import RedisServer, RedisUnavailable
from tests.s3_server import S3Server, S3Unavailable
from tests.support import LiveServer, live_server

REQUIRE_SERVICES = os.environ.get("ZYRON_REQUIRE_SERVICES") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (ZYRON_REQUIRE_SERVICES=1) a test skipped for want of a service fails instead."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE_SERVICES and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but ZYRON_REQUIRE_SERVICES=1 forbids skips: {report.longrepr}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real Postgres server: a throwaway cluster, or ZYRON_TEST_DATABASE_URL; else skip."""
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL for the tests: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real Redis server: ZYRON_TEST_REDIS_URL or a throwaway redis-server; else skip."""
    try:
        server = RedisServer.start()
    except RedisUnavailable as exc:
        pytest.skip(f"no Redis for the tests: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server: ZYRON_TEST_S3_URL or a throwaway SeaweedFS; else skip."""
    try:
        server = S3Server.start()
    except S3Unavailable as exc:
        pytest.skip(f"no S3-compatible server for the tests: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every API test runs on SQLite and on Postgres."""
    if request.param == "postgres":
        return Backend("postgres", request.getfixturevalue("postgres"))
    return Backend("sqlite")


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """One fake Anthropic server for the whole run."""
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    """One fake OpenAI-compatible server for the whole run; tests reset it before use."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def upstream(fake_anthropic: FakeAnthropic) -> FakeAnthropic:
    """The fake upstream, with no queued replies or recorded requests."""
    fake_anthropic.reset()
    return fake_anthropic


@pytest.fixture(scope="session")
def server(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A Zyron server on the backend's database, talking to the fake upstream."""
    settings = backend.settings(
        tmp_path_factory.mktemp("zyron-data"),
        anthropic_api_key="sk-ant-test-key-never-logged",
        anthropic_base_url=fake_anthropic.base_url,
    )
    with live_server(settings) as running:
        yield running


@pytest.fixture
def client(server: LiveServer, upstream: FakeAnthropic) -> Iterator[httpx.Client]:
    """An HTTP client for the shared server; the upstream starts each test clean."""
    with server.client() as http:
        yield http


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh data directory."""
    path = tmp_path / "data"
    path.mkdir()
    return path
