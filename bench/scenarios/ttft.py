"""Scenario a (and e): time to first token at concurrency 1, against the direct path."""

from __future__ import annotations

from typing import Any

from bench.client import StreamResult
from bench.context import Bench
from bench.harness import Target, run_streams, shuffled_rounds, summarise
from bench.stats import median, ms

CHUNKS = 8
INTERVAL_MS = 1.0


async def run(bench: Bench, targets: list[Target]) -> dict[str, Any]:
    """Sequential requests, interleaved over rounds; added TTFT is against `direct`."""
    rounds, per_round = (2, 15) if bench.quick else (6, 40)
    await bench.pacing(first_token_ms=0, chunks=CHUNKS, interval_ms=INTERVAL_MS)
    samples: dict[str, list[StreamResult]] = {t.name: [] for t in targets}
    round_medians: dict[str, list[float]] = {t.name: [] for t in targets}

    for target in targets:  # warm caches, pools and connections first
        await run_streams(
            target, users=1, streams_per_user=10, ramp_seconds=0, expected_chunks=CHUNKS
        )

    async def one(target: Target, round_index: int) -> None:
        results = await run_streams(
            target, users=1, streams_per_user=per_round, ramp_seconds=0, expected_chunks=CHUNKS
        )
        samples[target.name].extend(results)
        value = median([r.ttft for r in results if r.ttft is not None])
        if value is not None:
            round_medians[target.name].append(value)
        bench.progress(f"ttft round {round_index + 1}/{rounds} {target.name}: {ms(value)} ms")

    await shuffled_rounds(targets, rounds, one)
    direct = round_medians["direct"]
    table: dict[str, Any] = {}
    for target in targets:
        summary = summarise(samples[target.name], interval_ms=None)
        mine = round_medians[target.name]
        # The added time is taken round by round (same minute, same machine load), then the
        # median of those differences is quoted.
        added = [a - b for a, b in zip(mine, direct, strict=False)]
        summary["added_ttft_p50_ms"] = ms(median(added))
        summary["ratio_to_direct"] = (
            round(median(mine) / median(direct), 2) if mine and direct else None  # type: ignore[operator]
        )
        table[target.name] = summary
    return {"rounds": rounds, "requests_per_round": per_round, "chunks": CHUNKS, "targets": table}
