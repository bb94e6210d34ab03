"""The benchmark harness measures what it claims: its upstream, its client, its report."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from bench import report
from bench.client import ANTHROPIC, OPENAI, ZYRON, Connection
from bench.context import Bench
from bench.harness import Target, direct, run_streams, summarise
from bench.procs import Server, start_upstream
from bench.stats import percentile, slope_per_minute
from tests.support import LiveServer, live_server, make_settings


@pytest.fixture(scope="module")
def load_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_upstream(tmp_path_factory.mktemp("bench-logs"))
    yield server
    server.stop()


def _bench(upstream: Server, tmp_path: Path) -> Bench:
    return Bench(quick=True, logs=tmp_path, upstream=upstream)


def test_upstream_speaks_the_protocol_the_official_sdk_reads(
    load_upstream: Server, tmp_path: Path
) -> None:
    async def run() -> tuple[list[str], Any]:
        await _bench(load_upstream, tmp_path).pacing(chunks=5, interval_ms=1)
        client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=load_upstream.url)
        async with client.messages.stream(
            model="claude-bench", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            texts = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
        await client.close()
        return texts, final

    texts, final = asyncio.run(run())
    assert texts == ["lorem ipsum "] * 5
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5
    assert final.model == "claude-bench"


def test_client_times_every_chunk_at_the_upstream_pacing(
    load_upstream: Server, tmp_path: Path
) -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        bench = _bench(load_upstream, tmp_path)
        await bench.pacing(first_token_ms=30, chunks=10, interval_ms=15)
        results = await run_streams(
            direct(load_upstream),
            users=5,
            streams_per_user=2,
            ramp_seconds=0.05,
            expected_chunks=10,
        )
        return summarise(results, interval_ms=15), await bench.upstream_stats()

    summary, stats = asyncio.run(run())
    assert summary["streams"] == 10
    assert summary["errors"] == 0
    assert 29 <= summary["ttft_p50_ms"] < 200  # the 30 ms first-token delay, measured
    assert 13 <= summary["gap_p50_ms"] <= 30
    assert stats["requests"] == 10
    assert stats["chunks_sent"] == 100
    assert stats["streams_open"] == 0


def test_a_short_stream_is_an_error(load_upstream: Server, tmp_path: Path) -> None:
    async def run() -> dict[str, Any]:
        await _bench(load_upstream, tmp_path).pacing(chunks=3, interval_ms=1)
        results = await run_streams(
            direct(load_upstream), users=1, streams_per_user=1, ramp_seconds=0, expected_chunks=4
        )
        return summarise(results, interval_ms=1)

    summary = asyncio.run(run())
    assert summary["errors"] == 1
    assert summary["error_examples"] == ["3 text events, expected 4"]


def test_zyron_streams_through_the_load_upstream(load_upstream: Server, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=load_upstream.url,
    )

    async def run(server: LiveServer) -> dict[str, Any]:
        await _bench(load_upstream, tmp_path).pacing(chunks=6, interval_ms=2)
        port = int(server.url.rsplit(":", 1)[1])
        target = Target("zyron", port, ZYRON, lambda _: ("/chat", {"message": "hi"}, {}))
        results = await run_streams(
            target,
            users=3,
            streams_per_user=2,
            ramp_seconds=0,
            expected_chunks=6,
        )
        return summarise(results, interval_ms=2)

    with live_server(settings) as server:
        summary = asyncio.run(run(server))
    assert summary["streams"] == 6
    assert summary["errors"] == 0, summary["error_examples"]


def test_error_events_and_statuses_count_as_errors(load_upstream: Server) -> None:
    async def run() -> Any:
        connection = Connection("127.0.0.1", load_upstream.port)
        response = await connection.request("GET", "/nowhere", stream=ANTHROPIC)
        await connection.close()
        return response

    response = asyncio.run(run())
    assert response.status == 404


@pytest.mark.parametrize(
    ("dialect", "event", "text", "error"),
    [
        (ZYRON, b'id: 12\nevent: delta\ndata: {"text":"hello"}', True, False),
        (ZYRON, b'id: 0\nevent: session\ndata: {"saved":false}', False, False),
        (ZYRON, b'id: 13\nevent: error\ndata: {"error":"upstream_unavailable"}', False, True),
        (
            ANTHROPIC,
            b'event: content_block_delta\ndata: {"delta":{"type":"text_delta","text":"a"}}',
            True,
            False,
        ),
        (ANTHROPIC, b'event: ping\ndata: {"type":"ping"}', False, False),
        (OPENAI, b'data: {"choices":[{"delta":{"content":"hi"}}]}', True, False),
        (OPENAI, b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}', False, False),
        (OPENAI, b'data: {"error":{"message":"boom"}}', False, True),
        (OPENAI, b"data: [DONE]", False, False),
    ],
)
def test_dialects_recognise_text_and_error_events(
    dialect: Any, event: bytes, text: bool, error: bool
) -> None:
    assert dialect.is_text(event) is text
    assert dialect.is_error(event) is error


def test_percentiles_and_slope() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([], 50) is None
    assert slope_per_minute([0, 60, 120], [10, 11, 12]) == pytest.approx(1.0)


def test_report_renders_every_scenario_and_checks_goals() -> None:
    sweep_row = {
        "ttft_p50_ms": 1.0,
        "added_ttft_p50_ms": 0.5,
        "ttft_p99_ms": 3.0,
        "gap_p50_ms": 20.0,
        "gap_p99_ms": 25.0,
        "errors": 0,
        "stalls": 0,
        "cpu_server": 0.5,
        "cpu_us_per_event": 42.5,
        "rss_max_mib": 90.0,
        "bottleneck": "",
    }
    results: dict[str, Any] = {
        "quick": True,
        "started_at": "2026-11-25T00:00:00+00:00",
        "seconds": 60,
        "machine": {"cores": 2, "cpu": "x", "memory_gib": 24, "os": "linux", "python": "3.11"},
        "ttft": {
            "rounds": 2,
            "requests_per_round": 10,
            "chunks": 8,
            "targets": {
                "direct": {
                    "ttft_p50_ms": 0.5,
                    "ttft_p99_ms": 1,
                    "added_ttft_p50_ms": 0.0,
                    "ratio_to_direct": 1.0,
                    "errors": 0,
                },
                "zyron-postgres": {
                    "ttft_p50_ms": 3.5,
                    "ttft_p99_ms": 5,
                    "added_ttft_p50_ms": 3.0,
                    "ratio_to_direct": 7.0,
                    "errors": 0,
                },
            },
        },
        "sweep": {
            "streams_per_user": 1,
            "chunks": 64,
            "interval_ms": 20.0,
            "rounds": 1,
            "targets": {"zyron-guest": {"1": sweep_row, "100": sweep_row, "1000": sweep_row}},
            "highest_clean_level": {"zyron-guest": 1000},
        },
        "burst": {
            "chats": 300,
            "rounds": 2,
            "chunks": 8,
            "targets": {
                "zyron-postgres": {
                    "ttft_p50_ms": 800.0,
                    "ttft_p99_ms": 1500.0,
                    "cpu_ms_per_chat": 7.5,
                    "errors": 0,
                },
            },
        },
        "memory": {
            "streams": 100,
            "targets": {
                "zyron-guest": {
                    "open_when_measured": 100,
                    "rss_idle_mib": 80,
                    "rss_open_mib": 82,
                    "per_stream_kib": 20.5,
                    "errors": 0,
                },
            },
        },
    }
    text = report.render(results, plots=False)
    goals = {row[0]: row[3] for row in report._goals(results)}
    assert goals["added TTFT p50, concurrency 1 (zyron-postgres)"] == "met"  # 3.0 ≤ 4 ms
    # 42.5 µs per event is over the 30 µs target; the burst's CPU over 5 ms, its TTFT within.
    assert goals["server CPU per relayed text event at 100 streams (zyron-guest)"] == "**missed**"
    burst = "burst of 300 new chats at once: {} (zyron-postgres)"
    assert goals[burst.format("server CPU per chat")] == "**missed**"
    assert goals[burst.format("first token p50")] == "met"
    assert "| 42.50 |" in text
    assert "| zyron-postgres | 800 | 1,500 | 7.50 | 0 |" in text
    assert "1,000" in text
    assert "| zyron-guest | 100 | - | 20.50 | 82" in text
