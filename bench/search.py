"""Search at 1,000,000 messages: `python -m bench.search [--messages N] [--users N]`.

Seeds the bench's Postgres database (bench.seed), fills the search index with the
migration's batched backfill (timed), builds the GIN indexes CONCURRENTLY, then times
GET /search one request at a time for random users and words, next to the same SQL sent
directly as the user under RLS, and records the query plans. Results go to
bench/results/search.json; docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import Connection as SyncConnection

from bench import seed
from bench.procs import Server, start_upstream, start_zyron
from bench.scenarios.history import _one_at_a_time, _token
from bench.stats import median, ms, percentile
from tests.pg import PostgresServer, migrate, sqlalchemy_url
from zyron.db.engine import create_engine
from zyron.search import reindex, repository

RESULTS = Path(__file__).parent / "results" / "search.json"
# Words of the seeded text that are not stop words, and phrases of them.
QUERIES = (
    "query", "index", "transaction", "recipe", "deploy", "timeout", "people",
    '"data query"', "cache OR pool", "stream -error", "tokens", "sessions",
)  # fmt: skip


async def _backfill(dsn: str) -> tuple[float, int]:
    """Run the migration's batched fill and the CONCURRENTLY builds; return seconds and rows."""
    engine = create_engine(sqlalchemy_url(dsn))
    try:
        async with engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await autocommit.run_sync(_fill)
    finally:
        await engine.dispose()


def _fill(conn: SyncConnection) -> tuple[float, int]:
    # The seed loads without triggers: every row starts unindexed, as before the migration.
    started = time.perf_counter()
    rows = reindex.fill(conn)
    for index in reindex.INDEXES:
        reindex.build_concurrently(conn, index)
    conn.exec_driver_sql("ANALYZE messages")
    conn.exec_driver_sql("ANALYZE chat_sessions")
    return time.perf_counter() - started, rows


def _params(user: uuid.UUID, q: str) -> list[Any]:
    return [user, 20, False, 0.0, None, "", None, q, repository.MARKS, repository._HEADLINE]


def _asyncpg_sql() -> str:
    """The search's SQL with asyncpg's numbered parameters."""
    sql = repository._POSTGRES
    names = ("user_id", "limit", "has_cursor", "c_rank", "c_at", "c_kind", "c_id", "q", "marks")
    for number, name in enumerate((*names, "headline"), start=1):
        sql = sql.replace(f":{name}", f"${number}")
    return sql


async def _direct(dsn: str, cases: list[tuple[uuid.UUID, str]]) -> tuple[list[float], str]:
    """Time the SQL alone, as each user, one transaction each; EXPLAIN the first case."""
    sql = _asyncpg_sql()
    conn = await asyncpg.connect(dsn)
    latencies = []
    try:
        statement = await conn.prepare(sql)
        for user, q in cases:
            started = time.perf_counter()
            async with conn.transaction():
                await seed._as_user(conn, user)
                await statement.fetch(*_params(user, q))
            latencies.append(time.perf_counter() - started)
        user, q = cases[0]
        async with conn.transaction():
            await seed._as_user(conn, user)
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *_params(user, q))
        plan = "\n".join(row[0] for row in rows)
    finally:
        await conn.close()
    return latencies, plan


async def _http(server: Server, cases: list[tuple[uuid.UUID, str]]) -> list[float]:
    """Time GET /search one request at a time on a keep-alive connection, users warmed."""
    requests = [
        (f"/search?{urllib.parse.urlencode({'q': q, 'limit': 20})}", _token(user))
        for user, q in cases
    ]
    return await _one_at_a_time(server, requests)


def run(messages: int, users: int, requests: int) -> dict[str, Any]:
    """Seed, fill, then time the searches; return the figures."""
    postgres = PostgresServer.start(url_variable="BENCH_DATABASE_URL", durable=True)
    try:
        return asyncio.run(_run(postgres, messages, users, requests))
    finally:
        postgres.stop()


async def _run(
    postgres: PostgresServer, messages: int, users: int, requests: int
) -> dict[str, Any]:
    name = f"zyron_bench_search_{uuid.uuid4().hex[:8]}"
    dsn = await seed.create_database(postgres.admin_dsn, name)
    await migrate(sqlalchemy_url(dsn), "head")
    print(f"seeding {messages:,} messages for {users:,} users", flush=True)
    seeded = await seed.seed(dsn, users=users, sessions_per_user=5, messages=messages)
    print(f"seeded in {seeded.seconds:.0f} s; filling the search index", flush=True)
    fill_seconds, filled = await _backfill(dsn)
    print(f"filled {filled:,} rows and built the indexes in {fill_seconds:.0f} s", flush=True)
    rng = random.Random(7)
    cases = [(rng.choice(seeded.user_ids), rng.choice(QUERIES)) for _ in range(requests)]
    busiest = max(
        seeded.user_ids, key=lambda u: sum(seeded.message_counts[s] for s in seeded.session_ids[u])
    )
    busiest_messages = sum(seeded.message_counts[s] for s in seeded.session_ids[busiest])
    with tempfile.TemporaryDirectory() as work:
        logs = Path(work)
        upstream = start_upstream(logs)
        server = start_zyron(
            "zyron-search", database_url=sqlalchemy_url(dsn), upstream=upstream,
            data_dir=logs / "data", logs=logs,
        )  # fmt: skip
        try:
            http = await _http(server, cases)
            busiest_http = await _http(server, [(busiest, q) for q in QUERIES] * 5)
        finally:
            server.stop()
            upstream.stop()
    direct, plan = await _direct(dsn, cases)
    _, busiest_plan = await _direct(dsn, [(busiest, "query")])
    return {
        "messages": seeded.messages,
        "users": seeded.users,
        "seed_seconds": round(seeded.seconds, 1),
        "backfill_seconds": round(fill_seconds, 1),
        "backfill_rows": filled,
        "requests": requests,
        "http_p50_ms": ms(median(http)),
        "http_p99_ms": ms(percentile(http, 99)),
        "direct_sql_p50_ms": ms(median(direct)),
        "direct_sql_p99_ms": ms(percentile(direct, 99)),
        "busiest_user_messages": busiest_messages,
        "busiest_http_p50_ms": ms(median(busiest_http)),
        "busiest_http_p99_ms": ms(percentile(busiest_http, 99)),
        "plan": plan,
        "busiest_plan": busiest_plan,
        "database_mib": round(await seed.database_size(dsn) / 2**20, 1),
    }


def main() -> None:
    """Run the search bench and write its results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    result = run(args.messages, args.users, args.requests)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if "plan" not in k}, indent=2))


if __name__ == "__main__":
    main()
