"""Daily token quotas and GET /usage over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, MidStreamError, TextReply
from tests.limits.test_rate_limits import _address, _from
from tests.support import LiveServer, signup, stream_chat


@pytest.fixture(scope="module")
def quoted(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """5,000 tokens a day for users and for guest addresses; generous rates."""
    with backend.claude_server(
        tmp_path_factory.mktemp("quotas"),
        fake_anthropic,
        rate_limit_enabled=True,
        trusted_proxies=["127.0.0.1"],
        user_daily_tokens=5000,
        guest_daily_tokens=5000,
    ) as running:
        yield running


def test_user_quota_refuses_a_request_that_could_pass_it(
    quoted: LiveServer, upstream: FakeAnthropic
) -> None:
    """After 3,000+ tokens, a request that could use 2,000 more is refused; a small one is not."""
    with quoted.client() as http:
        alice = signup(http)
        upstream.enqueue(TextReply(chunks=("a", "b", "c", "d"), input_tokens=3000))
        stream_chat(http, {"message": "hi", "max_tokens": 100}, alice.headers)
        before = quoted.counts()
        response = http.post(
            "/chat", json={"message": "more", "max_tokens": 2000}, headers=alice.headers
        )
        assert response.status_code == 429, response.text
        body = response.json()
        assert body["error"] == "quota_exceeded"
        assert "3004 of 5000" in body["detail"]
        assert 1 <= int(response.headers["retry-after"]) <= 86400
        assert quoted.counts() == before
        assert len(upstream.requests) == 1

        upstream.enqueue(TextReply())
        stream_chat(http, {"message": "small", "max_tokens": 100}, alice.headers)
        # Another user has a quota of their own.
        bob = signup(http)
        upstream.enqueue(TextReply())
        stream_chat(http, {"message": "hi", "max_tokens": 2000}, bob.headers)


def test_replies_running_hold_their_worst_case(quoted: LiveServer, upstream: FakeAnthropic) -> None:
    """Two requests at once cannot each spend the same remainder: the first one's budget is
    reserved while it runs, and given back (less what it used) when it ends."""
    with quoted.client() as http:
        alice = signup(http)
        hold = threading.Event()
        upstream.enqueue(TextReply(chunks=("w0 ", "w1"), hold=hold))
        with http.stream(
            "POST", "/chat", json={"message": "slow", "max_tokens": 3000}, headers=alice.headers
        ) as slow:
            lines = slow.iter_lines()
            while next(lines) != "event: delta":
                pass
            response = http.post(
                "/chat", json={"message": "too", "max_tokens": 2500}, headers=alice.headers
            )
            assert response.status_code == 429, response.text
            assert response.json()["error"] == "quota_exceeded"
            assert "replies running now may use" in response.json()["detail"]
            hold.set()
            assert "event: done" in list(lines)
        upstream.enqueue(TextReply())
        events = stream_chat(http, {"message": "now", "max_tokens": 2500}, alice.headers)
        assert events[-1].event == "done"


def test_usage_by_day_and_model_outlives_deleted_sessions(
    quoted: LiveServer, upstream: FakeAnthropic
) -> None:
    """GET /usage sums replies per day and model; deleting a session does not erase it."""
    with quoted.client() as http:
        alice = signup(http)
        upstream.enqueue(
            TextReply(chunks=("x",), input_tokens=100),
            TextReply(chunks=("y", "z"), input_tokens=50),
        )
        first = stream_chat(http, {"message": "one", "max_tokens": 10}, alice.headers)
        stream_chat(
            http,
            {"message": "two", "max_tokens": 10, "model": "claude-haiku-4-5"},
            alice.headers,
        )
        sid = first[0].data["session_id"]
        assert http.delete(f"/sessions/{sid}", headers=alice.headers).status_code == 204

        report = http.get("/usage", headers=alice.headers).json()
        today = datetime.now(UTC).date().isoformat()
        assert sorted(report["days"], key=lambda d: d["model"]) == [
            {
                "day": today,
                "model": "claude-haiku-4-5",
                "input_tokens": 50,
                "output_tokens": 2,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "reasoning_tokens": 0,
                "cost_usd": 6e-05,
                "cost_nanousd": 60000,  # at its prices: input and output by the million
                "unpriced_replies": 0,
                "replies": 1,
            },
            {
                "day": today,
                "model": "claude-sonnet-5",
                "input_tokens": 100,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "reasoning_tokens": 0,
                "cost_usd": 0.00021,
                "cost_nanousd": 210000,  # at its prices: input and output by the million
                "unpriced_replies": 0,
                "replies": 1,
            },
        ]
        quota = report["quota"]
        assert quota["daily_tokens"] == 5000
        assert quota["used_today"] == 153
        assert quota["remaining_today"] == 4847
        assert http.get("/usage").status_code == 401
        assert http.get("/usage", params={"days": 0}, headers=alice.headers).status_code == 422
        # Nobody sees anyone else's usage.
        assert http.get("/usage", headers=signup(http).headers).json()["days"] == []


def test_guest_quota_is_per_address(quoted: LiveServer, upstream: FakeAnthropic) -> None:
    """A guest address that used 4,000 tokens cannot start a 2,000-token request."""
    address = _address()
    with quoted.client() as http:
        upstream.enqueue(TextReply(chunks=("ok",), input_tokens=4000))
        stream_chat(http, {"message": "hi", "max_tokens": 100}, _from(address))
        response = http.post(
            "/chat", json={"message": "more", "max_tokens": 2000}, headers=_from(address)
        )
        assert response.status_code == 429
        assert response.json()["error"] == "quota_exceeded"
        assert len(upstream.requests) == 1
        upstream.enqueue(TextReply())
        stream_chat(http, {"message": "hi", "max_tokens": 2000}, _from(_address()))


def test_a_reply_cut_short_after_text_is_charged(
    quoted: LiveServer, upstream: FakeAnthropic
) -> None:
    """A broken or cancelled reply still cost its prompt and words: they count, estimated."""
    with quoted.client() as http:
        alice = signup(http)
        # About 1,300 tokens of prompt by the default estimate (3 characters a token, +10%).
        message = "word " * 700
        upstream.enqueue(MidStreamError(chunks=("Partial", " answer")))
        events = stream_chat(http, {"message": message, "max_tokens": 100}, alice.headers)
        assert events[-1].event == "error"
        report = http.get("/usage", headers=alice.headers).json()
        [day] = report["days"]
        assert day["replies"] == 1
        assert 1200 <= day["input_tokens"] <= 1400, day
        assert 1 <= day["output_tokens"] <= 20, day
        # The message row keeps no usage: the provider never reported any.
        messages = http.get(
            f"/sessions/{events[0].data['session_id']}/messages", headers=alice.headers
        ).json()
        assert messages[-1]["status"] == "interrupted"
        assert messages[-1]["usage"] is None

        # Two more such replies leave no room for a 2,000-token request.
        for _ in range(2):
            upstream.enqueue(MidStreamError(chunks=("Partial",)))
            stream_chat(http, {"message": message, "max_tokens": 100}, alice.headers)
        response = http.post(
            "/chat", json={"message": "more", "max_tokens": 2000}, headers=alice.headers
        )
        assert response.status_code == 429
        assert response.json()["error"] == "quota_exceeded"


def test_a_guest_reply_cut_short_is_charged_and_one_that_failed_is_not(
    quoted: LiveServer, upstream: FakeAnthropic
) -> None:
    """A guest's broken reply counts against the address; a refused request costs nothing."""
    address = _address()
    with quoted.client() as http:
        message = "word " * 700
        for _ in range(3):
            upstream.enqueue(MidStreamError(chunks=("Partial",)))
            events = stream_chat(http, {"message": message, "max_tokens": 100}, _from(address))
            assert events[-1].event == "error"
        response = http.post(
            "/chat", json={"message": "more", "max_tokens": 2000}, headers=_from(address)
        )
        assert response.status_code == 429
        assert response.json()["error"] == "quota_exceeded"

        # An upstream that refused before any text generated nothing: not charged.
        other = _address()
        for _ in range(4):
            upstream.enqueue(MidStreamError(chunks=(), error_type="invalid_request_error"))
            events = stream_chat(http, {"message": message, "max_tokens": 100}, _from(other))
            assert events[-1].event == "error"
        upstream.enqueue(TextReply())
        assert (
            stream_chat(http, {"message": "more", "max_tokens": 2000}, _from(other))[-1].event
            == "done"
        )


def test_usage_is_recorded_with_limits_off(
    client_usage: LiveServer, upstream: FakeAnthropic
) -> None:
    """RATE_LIMIT_ENABLED=false: no quota, but usage is still recorded and shown."""
    with client_usage.client() as http:
        alice = signup(http)
        upstream.enqueue(TextReply(chunks=("x",), input_tokens=10**6))
        stream_chat(http, {"message": "hi"}, alice.headers)
        upstream.enqueue(TextReply())
        stream_chat(http, {"message": "again"}, alice.headers)
        report = http.get("/usage", headers=alice.headers).json()
        assert report["quota"]["daily_tokens"] is None
        assert report["quota"]["used_today"] > 10**6


@pytest.fixture
def client_usage(server: LiveServer) -> LiveServer:
    """The shared test server (limits off)."""
    return server
