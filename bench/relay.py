"""Where a relayed event's CPU goes: one target at a few levels, optionally under py-spy.

`python -m bench.relay [--target guest|sqlite|postgres] [--levels 100,300] [--profile FILE]`
prints the server's CPU per relayed text event at each level and, with `--profile FILE`, runs the
server under cProfile and writes its stats (the profiles docs/benchmarks.md cites).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import tempfile
import uuid
from pathlib import Path
from typing import Any

import uvloop

from bench import seed
from bench.context import Bench
from bench.harness import Sampler, Target, run_streams, sign_up, summarise, zyron_guest
from bench.harness import zyron_signed_in as signed_in_target
from bench.procs import Server, start_upstream, start_zyron
from bench.scenarios.sweep import CHUNKS, INTERVAL_MS
from tests.pg import PostgresServer, sqlalchemy_url


async def _target(
    kind: str,
    bench: Bench,
    work: Path,
    postgres: PostgresServer | None,
    profile: Path | None,
    top: int,
) -> Target:
    if kind == "postgres":
        assert postgres is not None
        name = f"zyron_relay_{uuid.uuid4().hex[:8]}"
        database = sqlalchemy_url(await seed.create_database(postgres.admin_dsn, name))
    else:
        database = f"sqlite+aiosqlite:///{work / 'relay.db'}"
    server = start_zyron(
        f"zyron-{kind}",
        database_url=database,
        upstream=bench.upstream,
        data_dir=work,
        logs=work,
        profile=profile,
    )
    if kind == "guest":
        return zyron_guest("zyron-guest", server)
    # Two virtual users per account at most: within a user's three replies at once.
    accounts = await sign_up(server, users=max(1, top // 2), sessions=top, prefix=kind)
    return signed_in_target(f"zyron-{kind}", server, accounts)


async def measure(
    postgres: PostgresServer | None,
    kind: str,
    levels: list[int],
    profile: Path | None,
    chunks: int = CHUNKS,
    streams: int = 2,
) -> list[dict[str, Any]]:
    """Run each level once and report CPU per text event."""
    work = Path(tempfile.mkdtemp(prefix="zyron-relay-"))
    upstream = start_upstream(work)
    servers: list[Server] = [upstream]
    rows = []
    try:
        bench = Bench(quick=True, logs=work, upstream=upstream)
        target = await _target(kind, bench, work, postgres, profile, max(levels))
        servers.append(target.server)
        await bench.pacing(first_token_ms=0, chunks=chunks, interval_ms=INTERVAL_MS)
        await run_streams(
            target, users=20, streams_per_user=2, ramp_seconds=0.5, expected_chunks=chunks
        )
        for level in levels:
            if profile is not None:
                target.server.popen.send_signal(signal.SIGUSR1)
            with Sampler({"server": target.server, "upstream": upstream}) as sampler:
                results = await run_streams(
                    target,
                    users=level,
                    streams_per_user=streams,
                    ramp_seconds=CHUNKS * INTERVAL_MS / 1000,
                    expected_chunks=chunks,
                    limit_seconds=60,
                )
            if profile is not None:
                target.server.popen.send_signal(signal.SIGUSR2)
                await asyncio.sleep(3)  # the stats are written by the server
            summary = summarise(results, interval_ms=INTERVAL_MS)
            events = sum(r.chunks for r in results)
            wall = sampler.wall
            us = sampler.cpu["server"] * wall / max(1, events) * 1e6
            row = {
                "level": level,
                "cpu_us_per_event": round(us, 1),
                "cpu_ms_per_stream": round(sampler.cpu["server"] * wall / len(results) * 1e3, 2),
                "cpu_server": round(sampler.cpu["server"], 2),
                **{k: summary[k] for k in ("errors", "stalls", "ttft_p50_ms", "gap_p99_ms")},
            }
            print(row, flush=True)
            rows.append(row)
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    """Parse arguments and measure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", choices=("guest", "sqlite", "postgres"), default="guest")
    parser.add_argument("--levels", default="100,300")
    parser.add_argument("--streams", type=int, default=2, help="replies per client, in turn")
    parser.add_argument("--chunks", type=int, default=CHUNKS, help="text events per reply")
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats here")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    # Postgres first, outside the event loop: starting a cluster blocks.
    postgres = None
    if args.target == "postgres":
        postgres = PostgresServer.start(url_variable="BENCH_DATABASE_URL", durable=True)
    try:
        uvloop.run(measure(postgres, args.target, levels, args.profile, args.chunks, args.streams))
    finally:
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    main()
