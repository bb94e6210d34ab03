"""Scenario b (and e): concurrent streams from 1 to 1,000+, 64 chunks 20 ms apart."""

from __future__ import annotations

from typing import Any

from bench.context import Bench
from bench.harness import Sampler, Target, run_streams, summarise

CHUNKS = 64
INTERVAL_MS = 20.0
FULL_LEVELS = [1, 10, 50, 100, 200, 300, 500, 750, 1000]
QUICK_LEVELS = [1, 10, 100]
# A target that fails this badly at one level is not sent the next: it would only time out.
GIVE_UP_ERROR_RATE = 0.5
GIVE_UP_TTFT_MS = 10_000.0


async def run(bench: Bench, targets: list[Target]) -> dict[str, Any]:
    """For each level, run each target in turn; rounds interleave the targets."""
    levels = QUICK_LEVELS if bench.quick else FULL_LEVELS
    rounds = 1 if bench.quick else 2
    streams_per_user = 1 if bench.quick else 2
    await bench.pacing(first_token_ms=0, chunks=CHUNKS, interval_ms=INTERVAL_MS)
    table: dict[str, dict[str, Any]] = {t.name: {} for t in targets}
    given_up: dict[str, int] = {}
    for target in targets:  # first requests pay for imports, pools and connections: not timed
        await run_streams(
            target, users=10, streams_per_user=3, ramp_seconds=0.5, expected_chunks=CHUNKS
        )
    for level in levels:
        for round_index in range(rounds):
            order = targets if round_index % 2 == 0 else list(reversed(targets))
            for target in order:
                if target.name in given_up:
                    continue
                await bench.pacing(first_token_ms=0, chunks=CHUNKS, interval_ms=INTERVAL_MS)
                servers = {"server": target.server, "upstream": bench.upstream}
                # Starts spread over one stream's length, so arrivals run at the steady rate
                # that keeps `level` streams open (level / 1.3 s), with no burst on top.
                ramp = CHUNKS * INTERVAL_MS / 1000 if level > 1 else 0.0
                with Sampler(servers) as sampler:
                    results = await run_streams(
                        target,
                        users=level,
                        streams_per_user=streams_per_user,
                        ramp_seconds=ramp,
                        expected_chunks=CHUNKS,
                        limit_seconds=60,
                    )
                upstream = await bench.upstream_stats()
                summary = summarise(results, interval_ms=INTERVAL_MS)
                events = sum(r.chunks for r in results)
                server_seconds = sampler.cpu["server"] * sampler.wall
                summary.update(
                    cpu_server=round(sampler.cpu["server"], 2),
                    # Everything the server spent (requests too) over the text events relayed.
                    cpu_us_per_event=round(server_seconds / events * 1e6, 1) if events else None,
                    cpu_upstream=round(sampler.cpu["upstream"], 2),
                    cpu_loadgen=round(sampler.cpu["loadgen"], 2),
                    cpu_machine=round(sampler.machine_cpu, 2),
                    rss_max_mib=round(sampler.rss_max["server"] / 2**20, 1),
                    upstream_late_over_5ms=upstream["late_over_5ms"],
                    upstream_max_late_ms=round(upstream["max_late_ms"], 1),
                )
                summary["bottleneck"] = _bottleneck(summary)
                previous = table[target.name].get(str(level))
                table[target.name][str(level)] = _merge(previous, summary)
                bench.progress(
                    f"sweep c={level} {target.name}: ttft p50 {summary['ttft_p50_ms']} ms, "
                    f"gap p99 {summary['gap_p99_ms']} ms, errors {summary['errors']}, "
                    f"stalls {summary['stalls']}, cpu {summary['cpu_server']}, "
                    f"{summary['cpu_us_per_event']} µs/event"
                    + (f" [{summary['bottleneck']}]" if summary["bottleneck"] else "")
                )
                too_slow = (summary["ttft_p50_ms"] or 0) > GIVE_UP_TTFT_MS
                if summary["errors"] > GIVE_UP_ERROR_RATE * summary["streams"] or too_slow:
                    given_up[target.name] = level
    direct = table.get("direct", {})
    for by_level in table.values():
        for level_key, summary in by_level.items():
            base = direct.get(level_key)
            if base and base["ttft_p50_ms"] is not None and summary["ttft_p50_ms"] is not None:
                summary["added_ttft_p50_ms"] = round(
                    summary["ttft_p50_ms"] - base["ttft_p50_ms"], 3
                )
    best = {name: _highest_clean(by_level) for name, by_level in table.items()}
    return {
        "levels": levels,
        "rounds": rounds,
        "streams_per_user": streams_per_user,
        "chunks": CHUNKS,
        "interval_ms": INTERVAL_MS,
        "targets": table,
        "highest_clean_level": best,
        "given_up": given_up,
    }


def _merge(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """Combine rounds: medians of the per-round medians, sums of counts, maxima of tails."""
    if previous is None:
        current["rounds"] = [dict(current)]
        return current
    rounds = [*previous.pop("rounds"), current]
    merged: dict[str, Any] = {"rounds": rounds}
    for key in current:
        values = [r[key] for r in rounds if r.get(key) is not None]
        if key in ("streams", "errors", "stalls", "upstream_late_over_5ms"):
            merged[key] = sum(values)
        elif key in (
            "gap_p99_ms",
            "gap_max_ms",
            "ttft_p99_ms",
            "rss_max_mib",
            "upstream_max_late_ms",
        ):
            merged[key] = max(values) if values else None
        elif key in ("error_examples",):
            merged[key] = sorted({e for v in values for e in v})[:3]
        elif key == "bottleneck":
            merged[key] = ", ".join(sorted({v for v in values if v}))
        else:
            ordered = sorted(values)
            merged[key] = ordered[len(ordered) // 2] if ordered else None
    return merged


def _bottleneck(summary: dict[str, Any]) -> str:
    """Say when the harness, not the server under test, limited the run."""
    reasons = []
    if summary["cpu_upstream"] > 0.9:
        reasons.append("upstream CPU-bound")
    if summary["cpu_loadgen"] > 0.9:
        reasons.append("load generator CPU-bound")
    if summary["upstream_max_late_ms"] > 2 * INTERVAL_MS:
        reasons.append(f"upstream timers {summary['upstream_max_late_ms']} ms late")
    if summary["cpu_machine"] > 1.9:
        reasons.append("machine CPU saturated")
    return "; ".join(reasons)


def _highest_clean(by_level: dict[str, dict[str, Any]]) -> int | None:
    """Return the highest level with zero errors, zero stalls and gap p99 within 10 ms."""
    best = None
    for level_key, summary in by_level.items():
        gap = summary.get("gap_p99_ms")
        clean = (
            summary["errors"] == 0
            and summary["stalls"] == 0
            and gap is not None
            and gap <= INTERVAL_MS + 10
        )
        if clean:
            best = max(best or 0, int(level_key))
    return best
