"""GET /metrics: off, token, its own port; every family after known traffic, under two workers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic, HttpError, TextReply
from tests.ops.scrape import Scrape
from tests.pg import PostgresServer
from tests.redis_server import RedisServer
from tests.replicas import Deployment, deployed, wait_until
from tests.support import free_port, live_server, make_settings, parse_sse, signup, stream_chat

TOKEN = "metrics-token-for-the-tests-0123456789"
MODEL = "claude-sonnet-5"
FAMILIES = {
    "http_server_request_duration_seconds": "histogram",
    "gen_ai_client_operation_duration_seconds": "histogram",
    "gen_ai_client_operation_time_to_first_chunk_seconds": "histogram",
    "gen_ai_client_token_usage": "histogram",
    "zyron_tokens": "counter",
    "zyron_cost_usd": "counter",
    "zyron_replies": "counter",
    "zyron_upstream_errors": "counter",
    "zyron_upstream_retries": "counter",
    "zyron_refusals": "counter",
    "zyron_streams_open": "gauge",
    "db_client_connection_count": "gauge",
    "db_client_connection_max": "gauge",
    "zyron_redis_up": "gauge",
}


def test_metrics_are_off_unless_configured(tmp_path: Path) -> None:
    """Without METRICS_TOKEN, /metrics is the same 404 as a path that does not exist."""
    with live_server(make_settings(tmp_path)) as server, server.client() as client:
        off = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        unknown = client.get("/no-such-path")
        assert off.status_code == unknown.status_code == 404
        assert off.json() == unknown.json()
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_metrics_token_is_required(tmp_path: Path) -> None:
    """With METRICS_TOKEN, a scrape without it, or with another, is a 401 JSON error."""
    settings = make_settings(tmp_path, metrics_token=TOKEN)
    with live_server(settings) as server, server.client() as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN}x"},
        ):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json()["error"] == "not_authenticated"
            assert refused.headers["www-authenticate"].startswith("Bearer")
        scrape = Scrape.get(f"{server.url}/metrics", TOKEN)
        assert "zyron_replies" in scrape.families


@pytest.fixture
def deployment(
    postgres: PostgresServer, upstream: FakeAnthropic, tmp_path: Path
) -> Iterator[Deployment]:
    """A fresh database for this test's server; stopped at the end."""
    with deployed(postgres, upstream.base_url, tmp_path) as deployment:
        yield deployment


def test_every_family_after_known_traffic_under_two_workers(
    deployment: Deployment, upstream: FakeAnthropic, redis_server: RedisServer
) -> None:
    """Two workers' counts add up, the same through METRICS_PORT and through the token."""
    metrics_port = free_port()
    server = deployment.start(
        "metrics",
        redis_url=redis_server.url,
        args=("--workers", "2"),
        settings={
            "METRICS_TOKEN": TOKEN,
            "METRICS_PORT": str(metrics_port),
            "RATE_LIMIT_ENABLED": "true",
            # A title is another call to the fake, out of the queue's order.
            "AUTO_TITLES": "false",
            "USER_CHAT_RATE": "6/hour",
            "UPSTREAM_MAX_RETRIES": "1",
            "UPSTREAM_RETRY_BASE_SECONDS": "0.01",
            "DB_POOL_SIZE": "3",
            "DB_MAX_OVERFLOW": "2",
        },
    )
    port_url = f"http://127.0.0.1:{metrics_port}/metrics"
    # A connection per request: the two workers take turns accepting them.
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.url, timeout=30, limits=fresh) as client:
        account = signup(client)
        headers = account.headers

        # A reply held open: one stream is open, whichever worker serves it.
        hold = threading.Event()
        upstream.enqueue(TextReply(chunks=("held", " open"), hold=hold))
        with client.stream("POST", "/chat", json={"message": "one"}, headers=headers) as held:
            assert held.status_code == 200
            lines = held.iter_lines()
            seen: list[str] = []
            while "held" not in (seen[-1] if seen else ""):
                seen.append(next(lines))
            wait_until(
                lambda: Scrape.get(port_url).value("zyron_streams_open") == 1, "one open stream"
            )
            hold.set()
            seen.extend(lines)
        held_events, _ = parse_sse("\n".join(seen) + "\n")
        assert held_events[-1].event == "done", held_events[-1]

        usages = [held_events[-1].data]
        for text in ("two", "three", "four"):
            upstream.enqueue(TextReply(chunks=("a", "b", "c")))
            events = stream_chat(client, {"message": text}, headers)
            assert events[-1].event == "done", events[-1]
            usages.append(events[-1].data)
        # Overloaded once, then the retry answers.
        upstream.enqueue(HttpError(529, "overloaded_error"), TextReply(chunks=("retried",)))
        events = stream_chat(client, {"message": "five"}, headers)
        assert events[-1].event == "done", events[-1]
        usages.append(events[-1].data)
        # A refusal by the provider: not retried, the reply ends in error.
        upstream.enqueue(HttpError(400, "invalid_request_error"))
        events = stream_chat(client, {"message": "six"}, headers)
        assert events[-1].event == "error"
        assert events[-1].data["error"] == "upstream_bad_request"
        # The seventh chat in the hour: refused by USER_CHAT_RATE.
        refused = client.post("/chat", json={"message": "seven"}, headers=headers)
        assert refused.status_code == 429, refused.text

    def settled() -> Scrape | None:
        scrape = Scrape.get(port_url)
        open_now = scrape.value("zyron_streams_open")
        # Both workers have started and sampled their pools ((3 + 2) connections at most
        # each): the server was healthy as soon as one of them was.
        both = scrape.value("db_client_connection_max") == 10
        return scrape if open_now == 0 and both and scrape.value("zyron_redis_up") == 1 else None

    scrape = wait_until(settled, "the streams closed, both workers sampled, Redis seen up")
    assert scrape is not None
    for name, kind in FAMILIES.items():
        assert scrape.types.get(name) == kind, (name, scrape.types.get(name))

    model = {"gen_ai_provider_name": "anthropic", "gen_ai_request_model": MODEL}
    call = {"gen_ai_operation_name": "chat", **model}
    # Five replies complete (one after a retry), one ended in error.
    assert scrape.value("zyron_replies_total", status="complete", **model) == 5
    assert scrape.value("zyron_replies_total", status="error", **model) == 1
    # Seven calls to the model: five answered, one overloaded, one refused.
    assert (
        scrape.value("gen_ai_client_operation_duration_seconds_count", error_type="", **call) == 5
    )
    for code in ("upstream_overloaded", "upstream_bad_request"):
        duration = "gen_ai_client_operation_duration_seconds_count"
        assert scrape.value(duration, error_type=code, **call) == 1, code
        errors = "zyron_upstream_errors_total"
        assert scrape.value(errors, gen_ai_provider_name="anthropic", error_type=code) == 1
    retries = "zyron_upstream_retries_total"
    assert scrape.value(retries, error_type="upstream_overloaded") == 1
    assert scrape.value(retries) == 1
    ttft = "gen_ai_client_operation_time_to_first_chunk_seconds_count"
    assert scrape.value(ttft, **call) == 5
    # Tokens, by kind, as the replies' `done` events reported them.
    input_tokens = sum(u["usage"]["input_tokens"] for u in usages)
    output_tokens = sum(u["usage"]["output_tokens"] for u in usages)
    assert len(usages) == 5
    assert scrape.value("zyron_tokens_total", kind="input", **model) == input_tokens
    assert scrape.value("zyron_tokens_total", kind="output", **model) == output_tokens
    cost = sum(float(u["cost_usd"]) for u in usages)
    assert scrape.value("zyron_cost_usd_total", **model) == pytest.approx(cost)
    token_usage = "gen_ai_client_token_usage_count"
    assert scrape.value(token_usage, gen_ai_token_type="input", **call) == 5
    assert scrape.value(token_usage, gen_ai_token_type="output", **call) == 5
    # One refusal, by the limit that made it.
    assert scrape.value("zyron_refusals_total", limit="user_chat") == 1
    assert scrape.value("zyron_refusals_total") == 1
    # Requests by route template and status.
    http = "http_server_request_duration_seconds_count"
    assert scrape.value(http, http_request_method="POST", http_route="/chat") == 7
    assert scrape.value(http, http_route="/chat", http_response_status_code="200") == 6
    assert scrape.value(http, http_route="/chat", http_response_status_code="429") == 1
    assert scrape.value(http, http_route="/auth/signup", http_response_status_code="201") == 1
    pool = scrape.samples("db_client_connection_count")
    assert {sample.labels["db_client_connection_state"] for sample in pool} == {"used", "idle"}

    # Through the API's port, with the token: the same sums (requests aside, which grow).
    by_token = Scrape.get(f"{server.url}/metrics", TOKEN)
    for name in ("zyron_replies_total", "zyron_tokens_total", "zyron_upstream_errors_total"):
        assert by_token.value(name) == scrape.value(name), name
