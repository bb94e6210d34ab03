"""CPU the Anthropic SDK spends per streamed event, with each of its HTTP backends.

Run: `.venv/bin/python -m bench.sdk_cost` (about 20 s). This is what chose
UPSTREAM_HTTP_CLIENT=aiohttp: reading the upstream is most of a reply's CPU in Zyron.
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
from pathlib import Path

import anthropic
import uvloop

from bench.context import Bench
from bench.procs import Server, start_upstream

STREAMS = 500
CONCURRENT = 50


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(upstream: Server, backend: str) -> tuple[float, float]:
    """Return (microseconds of CPU per event, first-token milliseconds p50) for a backend."""
    http_client = (
        anthropic.DefaultAioHttpClient()
        if backend == "aiohttp"
        else anthropic.DefaultAsyncHttpxClient()
    )
    client = anthropic.AsyncAnthropic(
        api_key="sk-ant-bench", base_url=upstream.url, max_retries=0, http_client=http_client
    )
    semaphore = asyncio.Semaphore(CONCURRENT)
    first_tokens: list[float] = []

    async def one() -> int:
        async with semaphore:
            started = time.perf_counter()
            stream = await client.messages.create(
                model="claude-bench",
                max_tokens=100,
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            )
            events = 0
            seen_text = False
            async with stream:
                async for event in stream:
                    if not seen_text and event.type == "content_block_delta":
                        seen_text = True
                        first_tokens.append(time.perf_counter() - started)
                    events += 1
            return events

    await asyncio.gather(*(one() for _ in range(CONCURRENT)))  # warm-up
    first_tokens.clear()
    before = _cpu_seconds()
    counts = await asyncio.gather(*(one() for _ in range(STREAMS)))
    cpu = _cpu_seconds() - before
    await client.close()
    first_tokens.sort()
    return cpu / sum(counts) * 1e6, first_tokens[len(first_tokens) // 2] * 1000


async def main() -> None:
    """Measure both backends against the load upstream, 64 chunks 5 ms apart."""
    logs = Path(tempfile.mkdtemp(prefix="zyron-sdk-cost-"))
    upstream = start_upstream(logs)
    try:
        await Bench(quick=True, logs=logs, upstream=upstream).pacing(chunks=64, interval_ms=5)
        for backend in ("httpx", "aiohttp", "httpx", "aiohttp"):  # interleaved, twice
            per_event, first_token = await _measure(upstream, backend)
            print(
                f"{backend:8s} {per_event:6.1f} us CPU per event, "
                f"first token p50 {first_token:.2f} ms ({CONCURRENT} streams at once)"
            )
    finally:
        upstream.stop()


if __name__ == "__main__":
    uvloop.run(main())
