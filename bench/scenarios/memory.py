"""Scenario c: memory per open stream, and RSS over a soak at steady load."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.context import Bench
from bench.harness import Sampler, Target, run_streams, summarise
from bench.stats import median, slope_per_minute

HOLD_MS = 15_000.0  # each held stream sends one chunk, then waits this long for the next


async def per_stream(bench: Bench, targets: list[Target]) -> dict[str, Any]:
    """Hold N streams open, twice; RSS added per stream in the second (warm) round.

    The first round grows pools, allocator arenas and caches that a process keeps; that is a
    one-time cost, reported apart (`cold`), not a per-stream one.
    """
    count = 100 if bench.quick else 1000
    table: dict[str, Any] = {}
    for target in targets:
        rounds = [await _hold(bench, target, count) for _ in range(2)]
        table[target.name] = {**rounds[1], "cold_per_stream_kib": rounds[0]["per_stream_kib"]}
        bench.progress(f"memory {target.name}: {table[target.name]}")
    return {"streams": count, "hold_seconds": HOLD_MS / 1000, "targets": table}


async def _hold(bench: Bench, target: Target, count: int) -> dict[str, Any]:
    """Open `count` streams that each send one chunk and then wait; measure RSS then."""
    await asyncio.sleep(1)
    idle = await _settled_rss(target)
    await bench.pacing(first_token_ms=0, chunks=2, interval_ms=HOLD_MS)
    held = asyncio.create_task(
        run_streams(target, users=count, streams_per_user=1, ramp_seconds=4.0, expected_chunks=2)
    )
    deadline = time.monotonic() + HOLD_MS / 1000 - 3
    while time.monotonic() < deadline:
        stats = await bench.upstream_stats()
        if stats["streams_open"] >= count and stats["chunks_sent"] >= count:
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)  # let the first chunk reach every client
    loaded = await _settled_rss(target)
    stats = await bench.upstream_stats()
    results = await held
    open_streams = min(count, stats["streams_open"])
    per = (loaded - idle) / open_streams if open_streams else None
    return {
        "open_when_measured": open_streams,
        "rss_idle_mib": round(idle / 2**20, 1),
        "rss_open_mib": round(loaded / 2**20, 1),
        "per_stream_kib": round(per / 1024, 1) if per is not None else None,
        "errors": sum(1 for r in results if not r.ok),
    }


async def _settled_rss(target: Target) -> int:
    """Median of a few RSS readings."""
    readings = []
    for _ in range(5):
        readings.append(target.server.rss())
        await asyncio.sleep(0.1)  # never block the clients being measured
    value = median([float(r) for r in readings])
    return int(value or 0)


async def soak(bench: Bench, targets: list[Target], *, users: int) -> dict[str, Any]:
    """Run every target at the same steady load at once; sample RSS; fit growth per minute."""
    seconds = 20.0 if bench.quick else 600.0
    await bench.pacing(first_token_ms=0, chunks=64, interval_ms=20)
    stop_at = time.perf_counter() + seconds
    counts: dict[str, int] = {t.name: 0 for t in targets}
    errors: dict[str, int] = {t.name: 0 for t in targets}
    gaps: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}

    async def keep_busy(target: Target) -> None:
        while time.perf_counter() < stop_at:
            results = await run_streams(
                target, users=users, streams_per_user=2, ramp_seconds=1.0, expected_chunks=64
            )
            counts[target.name] += len(results)
            errors[target.name] += sum(1 for r in results if not r.ok)
            gaps[target.name].append(summarise(results, interval_ms=20))

    servers = {t.name: t.server for t in targets}
    bench.progress(f"soak: {len(targets)} targets x {users} streams for {seconds:.0f} s")
    with Sampler(servers) as sampler:
        await asyncio.gather(*(keep_busy(t) for t in targets))
    table: dict[str, Any] = {}
    warm = seconds * 0.2  # growth is fitted after the first fifth: start-up is not a leak
    for target in targets:
        times = [t for t, _ in sampler.samples if t >= warm]
        rss_mib = [rss[target.name] / 2**20 for t, rss in sampler.samples if t >= warm]
        table[target.name] = {
            "streams": counts[target.name],
            "errors": errors[target.name],
            "rss_start_mib": round(rss_mib[0], 1) if rss_mib else None,
            "rss_end_mib": round(rss_mib[-1], 1) if rss_mib else None,
            "growth_mib_per_minute": _round(slope_per_minute(times, rss_mib)),
            "series": [
                (round(t, 1), round(rss[target.name] / 2**20, 2)) for t, rss in sampler.samples
            ],
            "cpu": round(sampler.cpu[target.name], 2),
        }
        bench.progress(
            f"soak {target.name}: {counts[target.name]} streams, {errors[target.name]} errors, "
            f"growth {table[target.name]['growth_mib_per_minute']} MiB/min"
        )
    return {"seconds": seconds, "users": users, "targets": table}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
