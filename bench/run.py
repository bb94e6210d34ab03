"""Run the benchmarks: `python -m bench [--quick] [--only ttft,sweep,burst,memory,soak,history]`."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from bench import report, seed
from bench.context import Bench, machine
from bench.harness import (
    direct,
    give_history,
    litellm,
    sign_up,
    zyron_guest,
    zyron_signed_in,
)
from bench.procs import LITELLM_BIN, ROOT, Server, start_litellm, start_upstream, start_zyron
from bench.scenarios import burst, history, memory, sweep, ttft
from tests.pg import PostgresServer, sqlalchemy_url
from tests.redis_server import RedisServer, RedisUnavailable

RESULTS = ROOT / "bench" / "results"
SCENARIOS = ("ttft", "sweep", "burst", "memory", "soak", "history")


async def main_async(quick: bool, only: set[str], workers: int, postgres: PostgresServer) -> Path:
    """Start everything, run the chosen scenarios, write the results JSON."""
    work = Path(tempfile.mkdtemp(prefix="zyron-bench-"))
    logs = work / "logs"
    with ExitStack() as stack:
        upstream = start_upstream(logs)
        stack.callback(upstream.stop)
        bench = Bench(quick=quick, logs=logs, upstream=upstream)
        bench.progress(f"mode {'quick' if quick else 'full'}; logs in {logs}")

        def zyron(
            name: str,
            database: str,
            workers_: int = 1,
            *,
            limits: bool = True,
            redis_url: str | None = None,
        ) -> Server:
            server = start_zyron(
                name,
                database_url=database,
                upstream=upstream,
                data_dir=work / name,
                logs=logs,
                workers=workers_,
                limits=limits,
                redis_url=redis_url,
            )
            stack.callback(server.stop)
            return server

        async def postgres_url() -> str:
            name = f"zyron_bench_{uuid.uuid4().hex[:8]}"
            return sqlalchemy_url(await seed.create_database(postgres.admin_dsn, name))

        lite: Server | None = None
        if LITELLM_BIN.exists():
            lite = start_litellm(upstream, logs)
            stack.callback(lite.stop)
        else:
            bench.progress("LiteLLM is not installed (make bench installs it): compared to nothing")

        results: dict[str, Any] = {
            "quick": quick,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "postgres": postgres.admin_dsn.rsplit("@", 1)[-1].split("/")[0],
        }
        base = [direct(upstream)] + ([litellm(lite)] if lite else [])
        await bench.pacing(first_token_ms=0, chunks=4, interval_ms=0)

        if "ttft" in only:
            sqlite = zyron("zyron-sqlite", f"sqlite+aiosqlite:///{work / 'ttft.db'}")
            pg = zyron("zyron-postgres", await postgres_url())
            pg_off = zyron("zyron-postgres-nolimits", await postgres_url(), limits=False)
            targets = [
                *base,
                zyron_guest("zyron-guest", pg),
                zyron_guest("zyron-guest-nolimits", pg_off),
            ]
            for label, server in (
                ("sqlite", sqlite),
                ("postgres", pg),
                ("postgres-nolimits", pg_off),
            ):
                accounts = await sign_up(server, users=8, sessions=20, prefix=label)
                target = zyron_signed_in(f"zyron-{label}", server, accounts)
                await give_history(target, turns=10)
                targets.append(target)
            bench.results["ttft"] = await ttft.run(bench, targets)
            for server in (sqlite, pg, pg_off):
                server.stop()

        if "sweep" in only:
            # As shipped: limits on, in memory for one process, in Redis for several; and one
            # process with them off beside, to show what they cost.
            try:
                redis: RedisServer | None = RedisServer.start(throwaway=True)
            except RedisUnavailable as exc:
                redis = None
                bench.progress(f"no Redis, so no {workers}-worker targets: {exc}")
            pg = zyron("zyron-postgres-sweep", await postgres_url())
            pg_off = zyron("zyron-postgres-nolimits", await postgres_url(), limits=False)
            servers = [("zyron-postgres", pg), ("zyron-postgres-nolimits", pg_off)]
            if redis is not None:
                stack.callback(redis.stop)
                pg_workers = zyron(
                    "zyron-postgres-workers", await postgres_url(), workers, redis_url=redis.url
                )
                servers.append((f"zyron-postgres-{workers}w", pg_workers))
            top = max(sweep.QUICK_LEVELS if quick else sweep.FULL_LEVELS)
            targets = [
                *base,
                zyron_guest("zyron-guest", pg),
                zyron_guest("zyron-guest-nolimits", pg_off),
            ]
            for name, server in servers:
                # Two virtual users per account at most: within its three replies at once.
                accounts = await sign_up(server, users=top // 2, sessions=top, prefix=name)
                targets.append(zyron_signed_in(name, server, accounts))
            if redis is not None:
                targets.append(zyron_guest(f"zyron-guest-{workers}w", pg_workers))
            bench.results["sweep"] = await sweep.run(bench, targets)
            for _, server in servers:
                server.stop()

        if "burst" in only:
            chats = burst.QUICK_CHATS if quick else burst.FULL_CHATS
            sqlite = zyron("zyron-sqlite-burst", f"sqlite+aiosqlite:///{work / 'burst.db'}")
            pg = zyron("zyron-postgres-burst", await postgres_url())
            pairs = []
            for label, server in (("sqlite", sqlite), ("postgres", pg)):
                accounts = await sign_up(server, users=chats, sessions=chats, prefix=label)
                pairs.append((zyron_signed_in(f"zyron-{label}", server, accounts), accounts))
            bench.results["burst"] = await burst.run(bench, pairs)
            for server in (sqlite, pg):
                server.stop()

        if "memory" in only or "soak" in only:
            pg = zyron("zyron-postgres-memory", await postgres_url())
            accounts = await sign_up(pg, users=10, sessions=100 if quick else 1000, prefix="mem")
            signed_in = zyron_signed_in("zyron-postgres", pg, accounts)
            guest = zyron_guest("zyron-guest", pg)
            if "memory" in only:
                per = await memory.per_stream(bench, [*base[1:], guest, signed_in])
                bench.results["memory"] = per
            if "soak" in only:
                soak_targets = [signed_in, *base[1:]]
                bench.results["soak"] = await memory.soak(bench, soak_targets, users=50)
            pg.stop()

        if "history" in only:
            bench.results["history"] = await history.run(bench, postgres, upstream, work, logs)

        for scenario in bench.results.values():
            scenario["measured_at"] = results["started_at"]
        results.update(bench.results)
        results["seconds"] = round(time.perf_counter() - bench.started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("quick.json" if quick else "full.json")
    if not quick and only != set(SCENARIOS) and path.exists():
        # A partial full run replaces only its own scenarios in the published results.
        earlier = json.loads(path.read_text())
        for key in SCENARIOS:
            if key in earlier and key not in only:
                results[key] = earlier[key]
    path.write_text(json.dumps(results, indent=1))
    bench.progress(f"results in {path.relative_to(ROOT)}")
    return path


def main() -> None:
    """Parse arguments, run, and write the report for a full run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a minute or two, smaller levels")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-report", action="store_true", help="do not rewrite the docs")
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    # Postgres first, outside the event loop: starting a cluster blocks.
    postgres = PostgresServer.start(url_variable="BENCH_DATABASE_URL", durable=True)
    try:
        path = uvloop.run(main_async(args.quick, only, args.workers, postgres))
    finally:
        postgres.stop()
    if not args.no_report:
        report.write(path)
