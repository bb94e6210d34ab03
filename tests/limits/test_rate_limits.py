"""Rate limits over real HTTP: 429 rate_limited with headers, before anything is written."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.redis_server import RedisServer
from tests.replicas import Replica, replica_env
from tests.support import PASSWORD, LiveServer, signup, stream_chat, unique_email

RATES = {
    "guest_chat_rate": "2/minute",
    "user_chat_rate": "2/minute",
    "login_ip_rate": "6/minute",
    "login_email_rate": "3/minute",
    "signup_ip_rate": "4/minute",
    "signup_email_rate": "2/minute",
    "guest_max_concurrent": 1,
    "user_max_concurrent": 1,
}


@pytest.fixture(scope="module")
def limited(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Small limits, behind a trusted proxy (the test client's address), so each test can play
    a client address of its own with X-Forwarded-For."""
    with backend.claude_server(
        tmp_path_factory.mktemp("limited"),
        fake_anthropic,
        rate_limit_enabled=True,
        trusted_proxies=["127.0.0.1"],
        **RATES,
    ) as running:
        yield running


def _address() -> str:
    """A client address no other test uses."""
    return f"198.18.{random.randrange(256)}.{random.randrange(1, 255)}"


def _from(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **headers}


def _assert_limited(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "rate_limited"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    assert int(response.headers["ratelimit-reset"]) == retry_after


def test_guest_chats_are_limited_per_address(limited: LiveServer, upstream: FakeAnthropic) -> None:
    """The third guest chat in a minute from one address is refused before the model."""
    address = _address()
    with limited.client() as http:
        for _ in range(2):
            upstream.enqueue(TextReply())
            stream_chat(http, {"message": "hi"}, _from(address))
        before = limited.counts()
        response = http.post("/chat", json={"message": "hi"}, headers=_from(address))
        _assert_limited(response, 2)
        assert "guest chats" in response.json()["detail"]
        assert len(upstream.requests) == 2
        assert limited.counts() == before
        # Another client behind the same proxy has its own count.
        upstream.enqueue(TextReply())
        stream_chat(http, {"message": "hi"}, _from(_address()))


def test_guest_chats_from_one_ipv6_network_share_a_limit(
    limited: LiveServer, upstream: FakeAnthropic
) -> None:
    """A guest rotating through the addresses of its /64 gets no fresh count from them."""
    network = f"2001:db8:{random.randrange(65536):x}:{random.randrange(65536):x}"
    with limited.client() as http:
        for host in ("::1", ":abcd::2"):
            upstream.enqueue(TextReply())
            stream_chat(http, {"message": "hi"}, _from(f"{network}{host}"))
        response = http.post("/chat", json={"message": "hi"}, headers=_from(f"{network}::3"))
        _assert_limited(response, 2)
        assert len(upstream.requests) == 2


def test_signed_in_chats_are_limited_per_user(limited: LiveServer, upstream: FakeAnthropic) -> None:
    """A user's third chat in a minute is refused, and nothing of it is saved."""
    with limited.client() as http:
        alice = signup(http)
        bob = signup(http)
        for _ in range(2):
            upstream.enqueue(TextReply())
            stream_chat(http, {"message": "hi"}, _from(_address(), **alice.headers))
        before = limited.counts()
        # A new address does not help: the limit follows the account.
        response = http.post(
            "/chat", json={"message": "hi"}, headers=_from(_address(), **alice.headers)
        )
        _assert_limited(response, 2)
        assert limited.counts() == before
        upstream.enqueue(TextReply())
        stream_chat(http, {"message": "hi"}, _from(_address(), **bob.headers))
        assert len(upstream.requests) == 3


def test_login_attempts_are_limited_per_email(limited: LiveServer) -> None:
    """After three failures on one account in a minute, even the right password is refused."""
    with limited.client() as http:
        account = signup(http)
        for _ in range(3):
            wrong = http.post(
                "/auth/login",
                json={"email": account.email, "password": "wrong password!"},
                headers=_from(_address()),
            )
            assert wrong.status_code == 401
        right = http.post(
            "/auth/login",
            json={"email": account.email.upper(), "password": PASSWORD},
            headers=_from(_address()),
        )
        _assert_limited(right, 3)
        assert "this email" in right.json()["detail"]


def test_a_burst_of_guesses_at_once_is_limited_per_email(limited: LiveServer) -> None:
    """Eight wrong passwords sent together from eight addresses: three are checked, no more."""
    email = unique_email()
    with limited.client() as http:
        created = http.post(
            "/auth/signup", json={"email": email, "password": PASSWORD}, headers=_from(_address())
        )
        assert created.status_code == 201

    def guess(_: int) -> int:
        with limited.client() as http:
            return http.post(
                "/auth/login",
                json={"email": email, "password": "wrong password!"},
                headers=_from(_address()),
            ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(guess, range(8)))
    assert statuses == [401] * 3 + [429] * 5


def test_successful_logins_do_not_lock_an_account(limited: LiveServer) -> None:
    """A login that proves the password clears the email's count: many devices are fine."""
    with limited.client() as http:
        account = signup(http)
        for _ in range(5):
            right = http.post(
                "/auth/login",
                json={"email": account.email, "password": PASSWORD},
                headers=_from(_address()),
            )
            assert right.status_code == 200, right.text


def test_login_attempts_are_limited_per_address(limited: LiveServer) -> None:
    """One address trying many accounts is stopped after six attempts."""
    address = _address()
    with limited.client() as http:
        for _ in range(6):
            response = http.post(
                "/auth/login",
                json={"email": unique_email(), "password": "wrong password!"},
                headers=_from(address),
            )
            assert response.status_code == 401
        response = http.post(
            "/auth/login",
            json={"email": unique_email(), "password": "wrong password!"},
            headers=_from(address),
        )
        _assert_limited(response, 6)


def test_signups_are_limited_per_address(limited: LiveServer) -> None:
    """The fifth signup in a minute from one address creates no account."""
    address = _address()
    with limited.client() as http:
        for _ in range(4):
            response = http.post(
                "/auth/signup",
                json={"email": unique_email(), "password": PASSWORD},
                headers=_from(address),
            )
            assert response.status_code == 201
        before = limited.counts()
        response = http.post(
            "/auth/signup",
            json={"email": unique_email(), "password": PASSWORD},
            headers=_from(address),
        )
        _assert_limited(response, 4)
        assert limited.counts() == before


def test_signups_are_limited_per_email(limited: LiveServer) -> None:
    """Probing one email from many addresses is stopped after two attempts."""
    email = unique_email()
    with limited.client() as http:
        first = http.post(
            "/auth/signup", json={"email": email, "password": PASSWORD}, headers=_from(_address())
        )
        assert first.status_code == 201
        taken = http.post(
            "/auth/signup", json={"email": email, "password": PASSWORD}, headers=_from(_address())
        )
        assert taken.status_code == 409
        response = http.post(
            "/auth/signup", json={"email": email, "password": PASSWORD}, headers=_from(_address())
        )
        _assert_limited(response, 2)
        assert "this email" in response.json()["detail"]


@pytest.fixture(scope="module")
def no_proxy(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Small limits, and no trusted proxies."""
    with backend.claude_server(
        tmp_path_factory.mktemp("noproxy"), fake_anthropic, rate_limit_enabled=True, **RATES
    ) as running:
        yield running


def test_spoofed_forwarded_for_is_ignored(no_proxy: LiveServer, upstream: FakeAnthropic) -> None:
    """From an untrusted peer, a new X-Forwarded-For per request does not reset the count."""
    with no_proxy.client() as http:
        for _ in range(2):
            upstream.enqueue(TextReply())
            stream_chat(http, {"message": "hi"}, _from(_address()))
        response = http.post("/chat", json={"message": "hi"}, headers=_from(_address()))
        _assert_limited(response, 2)


@pytest.fixture(scope="module")
def unlimited(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The small limits and tiny quotas, all switched off by RATE_LIMIT_ENABLED=false."""
    with backend.claude_server(
        tmp_path_factory.mktemp("unlimited"),
        fake_anthropic,
        rate_limit_enabled=False,
        trusted_proxies=["127.0.0.1"],
        user_daily_tokens=10,
        guest_daily_tokens=10,
        **RATES,
    ) as running:
        yield running


def test_limits_off_when_disabled(unlimited: LiveServer, upstream: FakeAnthropic) -> None:
    """RATE_LIMIT_ENABLED=false: far past every rate, concurrency limit and quota, no 429."""
    address = _address()
    with unlimited.client() as http:
        assert http.get("/health").json()["rate_limits"]["enabled"] is False
        account = signup(http)
        for _ in range(5):  # 3 a minute per email, 6 per address
            response = http.post(
                "/auth/login",
                json={"email": account.email, "password": "wrong password!"},
                headers=_from(address),
            )
            assert response.status_code == 401
        for headers in (_from(address), _from(address, **account.headers)):
            for _ in range(3):  # 2 a minute, and a 10-token quota
                upstream.enqueue(TextReply(input_tokens=1000))
                events = stream_chat(http, {"message": "hi", "max_tokens": 100}, headers)
                assert events[-1].event == "done"
        # Two replies at once from one guest address (the limit is 1).
        hold = threading.Event()
        upstream.enqueue(TextReply(chunks=("a", "b"), hold=hold), TextReply())
        with http.stream("POST", "/chat", json={"message": "slow"}, headers=_from(address)) as r:
            lines = r.iter_lines()
            while next(lines) != "event: delta":  # running, and holding the address's slot
                pass
            assert stream_chat(http, {"message": "fast"}, _from(address))[-1].event == "done"
            hold.set()
            assert "event: done" in list(lines)


def test_two_processes_share_one_limit_through_redis(
    redis_server: RedisServer, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    """Attempts on one email, spread over two server processes, meet one limit."""
    env = replica_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
        ANTHROPIC_API_KEY="sk-test",
        ANTHROPIC_BASE_URL=fake_anthropic.base_url,
        ZYRON_DATA_DIR=str(tmp_path / "data"),
        SECRET_KEY="x" * 48,
        ZYRON_ENV="test",
        REDIS_URL=redis_server.url,
        RATE_LIMIT_ENABLED="true",
        LOGIN_EMAIL_RATE="3/minute",
    )
    first = Replica("first", env, tmp_path).start()
    second = Replica("second", env, tmp_path).start()
    try:
        email = f"shared-{uuid.uuid4().hex[:12]}@example.com"  # a count of its own in Redis
        statuses = []
        for replica in (first, second, first, second):
            with replica.client() as http:
                response = http.post(
                    "/auth/login", json={"email": email, "password": "wrong password!"}
                )
                statuses.append(response.status_code)
        assert statuses == [401, 401, 401, 429]
    finally:
        first.stop()
        second.stop()
