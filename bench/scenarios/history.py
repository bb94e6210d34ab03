"""Scenario d: history reads on a Postgres database holding 1,000,000 messages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import seed
from bench.client import Connection
from bench.context import Bench
from bench.procs import BENCH_SECRET_KEY, Server, start_zyron
from bench.stats import median, ms, percentile
from tests.pg import PostgresServer, migrate, sqlalchemy_url
from zyron.auth.tokens import issue_access_token


async def run(
    bench: Bench, postgres: PostgresServer, upstream: Server, work: Path, logs: Path
) -> dict[str, Any]:
    """Seed, show the plans, then time both reads one at a time and at full throughput."""
    users, messages = (500, 50_000) if bench.quick else (10_000, 1_000_000)
    name = f"zyron_bench_history_{uuid.uuid4().hex[:8]}"
    dsn = await seed.create_database(postgres.admin_dsn, name)
    await migrate(sqlalchemy_url(dsn), "head")
    bench.progress(f"history: seeding {messages:,} messages for {users:,} users")
    seeded = await seed.seed(
        dsn, users=users, sessions_per_user=5, messages=messages, progress=bench.progress
    )
    bench.progress(f"history: seeded in {seeded.seconds:.1f} s")
    server = start_zyron(
        "zyron-history",
        database_url=sqlalchemy_url(dsn),
        upstream=upstream,
        data_dir=work / "history",
        logs=logs,
    )
    try:
        count = 100 if bench.quick else 400
        # Sessions of random users; message pages from sessions longer than a page, so the
        # limit of 100 is what the read has to honour.
        pairs = {
            "sessions": seeded.sample_pairs(count, seed=1),
            "messages": seeded.sample_pairs(count, seed=2, long_only=True),
        }
        tokens = {user: _token(user) for chosen in pairs.values() for user, _ in chosen}
        plan_user, plan_session = seeded.long_sessions[0]
        plans = await seed.explain(dsn, plan_user, plan_session)
        direct = {
            label: await seed.direct_latency(dsn, chosen, repeats=1)
            for label, chosen in pairs.items()
        }
        reads: dict[str, Callable[[uuid.UUID, uuid.UUID], str]] = {
            "sessions": lambda _user, _session: "/sessions?limit=50",
            "messages": lambda _user, session: f"/sessions/{session}/messages?limit=100",
        }
        table: dict[str, Any] = {}
        for label, path_for in reads.items():
            requests = [(path_for(u, s), tokens[u]) for u, s in pairs[label]]
            latencies = await _one_at_a_time(server, requests)
            throughput = await _throughput(
                server, requests, seconds=3.0 if bench.quick else 10.0, connections=16
            )
            direct_key = "list_sessions" if label == "sessions" else "session_messages"
            table[label] = {
                "p50_ms": ms(median(latencies)),
                "p99_ms": ms(percentile(latencies, 99)),
                "direct_sql_p50_ms": ms(median(direct[label][direct_key])),
                "direct_sql_p99_ms": ms(percentile(direct[label][direct_key], 99)),
                **throughput,
            }
            bench.progress(f"history {label}: {table[label]}")
    finally:
        server.stop()
    return {
        "users": seeded.users,
        "sessions": seeded.sessions,
        "messages": seeded.messages,
        "seed_seconds": round(seeded.seconds, 1),
        "database_mib": round(await seed.database_size(dsn) / 2**20, 1),
        "reads": table,
        "plans": plans,
    }


def _token(user: uuid.UUID) -> str:
    return issue_access_token(
        key=BENCH_SECRET_KEY,
        issuer="zyron",
        user_id=user,
        email=None,
        session_id=uuid.uuid4(),
        ttl_seconds=3600,
    )


async def _one_at_a_time(server: Server, requests: list[tuple[str, str]]) -> list[float]:
    """Latency of each request on a warm keep-alive connection, no other load."""
    connection = Connection("127.0.0.1", server.port)
    # Each user's first request checks their account once per process: warm every user, so
    # what is timed is a history read, not a first sign-in.
    for path, token in requests:
        await connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    latencies = []
    for path, token in requests:
        response = await connection.request(
            "GET", path, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {bytes(response.body)[:200]!r}")
        assert response.ended is not None
        latencies.append(response.ended - response.started)
    await connection.close()
    return latencies


async def _throughput(
    server: Server, requests: list[tuple[str, str]], *, seconds: float, connections: int
) -> dict[str, Any]:
    """Requests per second with `connections` clients sending back to back."""
    stop_at = time.perf_counter() + seconds
    done = 0
    errors = 0
    latencies: list[float] = []

    async def client(offset: int) -> None:
        nonlocal done, errors
        connection = Connection("127.0.0.1", server.port)
        index = offset
        while time.perf_counter() < stop_at:
            path, token = requests[index % len(requests)]
            index += connections
            response = await connection.request(
                "GET", path, headers={"Authorization": f"Bearer {token}"}
            )
            done += 1
            errors += response.status != 200
            if response.ended is not None:
                latencies.append(response.ended - response.started)
        await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(connections)))
    elapsed = time.perf_counter() - started
    return {
        "rps": round(done / elapsed, 1),
        "rps_connections": connections,
        "rps_errors": errors,
        "loaded_p50_ms": ms(median(latencies)),
        "loaded_p99_ms": ms(percentile(latencies, 99)),
    }
