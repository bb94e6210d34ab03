"""Money budgets over real HTTP: refused before the model is called, reservations included."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.limits.test_rate_limits import _address, _from
from tests.redis_server import RedisServer
from tests.support import Account, LiveServer, signup, stream_chat
from zyron.limits import usage as usage_module
from zyron.limits.budgets import Budget, Spent, check_budgets
from zyron.limits.usage import GuestUsage, QuotaExceeded

# claude-sonnet-5: $2 per million input tokens (and up to $4 for 1-hour cache writes, the
# dearest input price a worst case counts), $10 per million output tokens.
EXPENSIVE_PROMPT = 300_000  # tokens the fake reports: $0.60 of input
LIMITS = {
    "rate_limit_enabled": True,
    "trusted_proxies": ["127.0.0.1"],
    "user_daily_tokens": 0,
    "guest_daily_tokens": 0,
    "max_tokens": 64_000,
    "anthropic_max_output": 64_000,
}


@pytest.fixture(scope="module")
def budgeted(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """$1 a day for each user and each guest address."""
    with backend.claude_server(
        tmp_path_factory.mktemp("budgets"),
        fake_anthropic,
        user_daily_usd=Decimal(1),
        guest_daily_usd=Decimal(1),
        **LIMITS,
    ) as running:
        yield running


def spend(http: httpx.Client, upstream: FakeAnthropic, headers: dict[str, str]) -> None:
    """One reply billed at $0.60 of input (and a little output)."""
    upstream.enqueue(TextReply(chunks=("ok",), input_tokens=EXPENSIVE_PROMPT))
    events = stream_chat(http, {"message": "hi", "max_tokens": 100}, headers)
    assert events[-1].event == "done", events[-1].data


def refused(response: httpx.Response, setting: str) -> str:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "quota_exceeded"
    assert f"({setting})" in body["detail"]
    assert int(response.headers["retry-after"]) >= 1
    return str(body["detail"])


def test_a_request_that_could_pass_the_daily_budget_is_refused_before_the_model(
    budgeted: LiveServer, upstream: FakeAnthropic
) -> None:
    with budgeted.client() as http:
        alice = signup(http)
        spend(http, upstream, alice.headers)
        before = (budgeted.counts(), len(upstream.requests))
        # Up to 50,000 output tokens: $0.50 more could pass the $1.
        response = http.post(
            "/chat", json={"message": "more", "max_tokens": 50_000}, headers=alice.headers
        )
        detail = refused(response, "USER_DAILY_USD")
        assert "has spent $0.60 of its $1.00 daily budget" in detail
        assert (budgeted.counts(), len(upstream.requests)) == before
        # A request whose worst case fits is answered; another user has a budget of their own.
        upstream.enqueue(TextReply())
        assert stream_chat(http, {"message": "small", "max_tokens": 100}, alice.headers)
        bob = signup(http)
        upstream.enqueue(TextReply())
        assert stream_chat(http, {"message": "big", "max_tokens": 50_000}, bob.headers)
        # What was spent is what GET /usage says.
        [day] = http.get("/usage", headers=alice.headers).json()["days"]
        assert day["cost_usd"] > 0.6


def test_replies_running_hold_their_worst_case_cost(
    budgeted: LiveServer, upstream: FakeAnthropic
) -> None:
    with budgeted.client() as http:
        alice = signup(http)
        _race(budgeted, budgeted, upstream, alice)


def test_a_guests_budget_is_per_address(budgeted: LiveServer, upstream: FakeAnthropic) -> None:
    address = _address()
    with budgeted.client() as http:
        spend(http, upstream, _from(address))
        response = http.post(
            "/chat", json={"message": "more", "max_tokens": 50_000}, headers=_from(address)
        )
        refused(response, "GUEST_DAILY_USD")
        upstream.enqueue(TextReply())
        other = stream_chat(http, {"message": "hi", "max_tokens": 50_000}, _from(_address()))
        assert other[-1].event == "done"


def test_a_monthly_budget_and_an_unpriced_model(
    backend: Backend, upstream: FakeAnthropic, tmp_path: Path
) -> None:
    models = ["claude-sonnet-5", "claude-unknown-9"]
    with (
        backend.claude_server(
            tmp_path, upstream, user_monthly_usd=Decimal("0.5"), anthropic_models=models, **LIMITS
        ) as server,
        server.client() as http,
    ):
        alice = signup(http)
        # A model with no price cannot be counted against a budget: refused, saying why.
        before = len(upstream.requests)
        response = http.post(
            "/chat", json={"message": "hi", "model": "claude-unknown-9"}, headers=alice.headers
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "unpriced_model"
        assert "USER_MONTHLY_USD" in response.json()["detail"]
        assert len(upstream.requests) == before
        spend(http, upstream, alice.headers)  # $0.60: past the month's $0.50
        response = http.post(
            "/chat", json={"message": "hi", "max_tokens": 10}, headers=alice.headers
        )
        assert "monthly budget" in refused(response, "USER_MONTHLY_USD")


def test_two_replicas_sharing_redis_share_the_reservations(
    backend: Backend, upstream: FakeAnthropic, tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = backend.settings(
        tmp_path,
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=upstream.base_url,
        redis_url=redis_server.url,
        user_daily_usd=Decimal(1),
        **LIMITS,
    )
    first, second = LiveServer(settings).start(), LiveServer(settings).start()
    try:
        with first.client() as http:
            alice = signup(http)
        _race(first, second, upstream, alice)
    finally:
        first.stop()
        second.stop()


def _race(first: LiveServer, second: LiveServer, upstream: FakeAnthropic, who: Account) -> None:
    """A reply that could cost $0.60 runs on `first`; one more like it on `second` is refused
    until the first ends, having cost little."""
    hold = threading.Event()
    upstream.enqueue(TextReply(chunks=("w0 ", "w1"), hold=hold))
    body = {"message": "slow", "max_tokens": 60_000}
    with first.client() as one, second.client() as two:
        try:
            with one.stream("POST", "/chat", json=body, headers=who.headers) as slow:
                lines = slow.iter_lines()
                while next(lines) != "event: delta":
                    pass
                response = two.post("/chat", json=body, headers=who.headers)
                assert "replies running now may cost" in refused(response, "USER_DAILY_USD")
                hold.set()
                assert "event: done" in list(lines)
        finally:
            hold.set()
        upstream.enqueue(TextReply())
        assert stream_chat(two, body, who.headers)[-1].event == "done"


def test_the_refusal_names_the_budget_it_would_pass() -> None:
    day = Budget("day", 1_000_000_000, "USER_DAILY_USD")
    month = Budget("month", 5_000_000_000, "USER_MONTHLY_USD")
    check_budgets(Spent(day=0, month=0), 900_000_000, [day, month], "This account")
    with pytest.raises(QuotaExceeded, match=r"\$4\.50 of its \$5\.00 monthly budget"):
        check_budgets(Spent(day=0, month=4_500_000_000), 900_000_000, [day, month], "This account")
    with pytest.raises(QuotaExceeded, match="USER_DAILY_USD"):
        check_budgets(Spent(day=200_000_000, month=200_000_000), 900_000_000, [day, month], "x")


@pytest.mark.parametrize("shared", [False, True])
def test_a_guests_spend_is_kept_for_the_day_and_the_month(
    shared: bool, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the process, or in Redis for every replica: the day's spend ends with the day, the
    month's with the month."""
    url = request.getfixturevalue("redis_server").url if shared else None
    now = usage_module.today()
    other_day = now.replace(day=2 if now.day == 1 else 1)  # the same month
    next_month = (now.replace(day=28) + timedelta(days=5)).replace(day=1)
    address = _address()

    async def scenario() -> list[tuple[int, int]]:
        first, second = GuestUsage(url), GuestUsage(url)
        try:
            await first.add(address, 100, 250_000_000)
            await first.add(address, 50, None)  # an unpriced reply: tokens only
            await first.add(address, 10, 50_000_000)
            seen = [await first.spent(address), await second.spent(address)]
            seen.append(await first.spent(_address()))
            monkeypatch.setattr(usage_module, "today", lambda: other_day)
            seen.append(await first.spent(address))
            monkeypatch.setattr(usage_module, "today", lambda: next_month)
            seen.append(await first.spent(address))
            return seen
        finally:
            await first.aclose()
            await second.aclose()

    mine, elsewhere, other, later_that_month, next_months = asyncio.run(scenario())
    assert mine == (300_000_000, 300_000_000)
    assert elsewhere == (mine if shared else (0, 0))  # another replica sees it through Redis
    assert other == (0, 0)
    assert later_that_month == (0, 300_000_000)
    assert next_months == (0, 0)


def test_an_unpriced_reply_hides_a_days_cost_but_not_from_the_budget(
    budgeted: LiveServer, upstream: FakeAnthropic
) -> None:
    """A row that counted a reply with no price (before prices were set, say) shows its cost
    as unknown; what was priced afterwards still counts against the budget."""
    with budgeted.client() as http:
        alice = signup(http)
        budgeted.query(
            "INSERT INTO usage_daily (user_id, day, model, input_tokens, output_tokens, "
            "cache_creation_input_tokens, cache_read_input_tokens, reasoning_tokens, "
            "cost_nanousd, unpriced_replies, replies) "
            "VALUES (:user, :day, 'claude-sonnet-5', 10, 1, 0, 0, 0, 0, 1, 1)",
            user=budgeted.id(alice.id),
            day=usage_module.today(),
        )
        spend(http, upstream, alice.headers)
        response = http.post(
            "/chat", json={"message": "more", "max_tokens": 50_000}, headers=alice.headers
        )
        assert "has spent $0.60" in refused(response, "USER_DAILY_USD")
        [day] = http.get("/usage", headers=alice.headers).json()["days"]
    assert (day["cost_usd"], day["cost_nanousd"], day["unpriced_replies"]) == (None, None, 1)
    assert day["replies"] == 2
