"""Scenario f: a burst of new signed-in chats sent at the same instant."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.client import StreamResult, stream_result
from bench.context import Bench
from bench.harness import PROMPT, Account, Sampler, Target, forwarded_for, summarise
from bench.stats import median

CHUNKS = 8
INTERVAL_MS = 20.0
FULL_CHATS = 300
QUICK_CHATS = 100


async def run(bench: Bench, targets: list[tuple[Target, list[Account]]]) -> dict[str, Any]:
    """Each target: every account starts a new chat at once, on connections opened before."""
    rounds = 1 if bench.quick else 2
    await bench.pacing(first_token_ms=0, chunks=CHUNKS, interval_ms=INTERVAL_MS)
    table: dict[str, Any] = {}
    for target, accounts in targets:
        per_round: list[dict[str, Any]] = []
        for round_index in range(rounds):
            results, cpu_seconds = await _burst(target, accounts)
            summary = summarise(results, interval_ms=INTERVAL_MS)
            summary["cpu_ms_per_chat"] = round(cpu_seconds / len(results) * 1000, 2)
            per_round.append(summary)
            bench.progress(
                f"burst {round_index + 1}/{rounds} {target.name}: {len(results)} chats, "
                f"ttft p50 {summary['ttft_p50_ms']} ms, p99 {summary['ttft_p99_ms']} ms, "
                f"{summary['cpu_ms_per_chat']} ms CPU/chat, errors {summary['errors']}"
            )
        table[target.name] = {
            "ttft_p50_ms": median([r["ttft_p50_ms"] for r in per_round if r["ttft_p50_ms"]]),
            "ttft_p99_ms": max((r["ttft_p99_ms"] or 0) for r in per_round),
            "cpu_ms_per_chat": median([r["cpu_ms_per_chat"] for r in per_round]),
            "errors": sum(r["errors"] for r in per_round),
            "error_examples": sorted({e for r in per_round for e in r["error_examples"]})[:3],
            "rounds": per_round,
        }
    chats = len(targets[0][1]) if targets else 0
    return {"chats": chats, "rounds": rounds, "chunks": CHUNKS, "targets": table}


async def _burst(target: Target, accounts: list[Account]) -> tuple[list[StreamResult], float]:
    """Open a connection per account, then send every new chat in the same loop turn."""
    connections = [target.connection() for _ in accounts]
    await asyncio.gather(*(connection.open() for connection in connections))

    async def chat(index: int) -> StreamResult:
        headers = {"Authorization": f"Bearer {accounts[index].token}", **forwarded_for()}
        started = time.perf_counter()
        try:
            response = await connections[index].request(
                "POST",
                "/chat",
                body={"message": PROMPT},  # no session: a new chat
                headers=headers,
                stream=target.dialect,
                limit_seconds=60,
            )
        except (OSError, TimeoutError) as exc:
            elapsed = time.perf_counter() - started
            return StreamResult(False, None, elapsed, 0, (), f"{type(exc).__name__}: {exc}")
        return stream_result(response, expected_chunks=CHUNKS)

    with Sampler({"server": target.server}) as sampler:
        results = list(await asyncio.gather(*(chat(i) for i in range(len(accounts)))))
    await asyncio.gather(*(connection.close() for connection in connections))
    return results, sampler.cpu["server"] * sampler.wall
