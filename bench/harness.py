"""Targets (Zyron, the direct path, LiteLLM) and a load run that measures streams and processes."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psutil

from bench.client import ANTHROPIC, OPENAI, ZYRON, Connection, Dialect, StreamResult, stream_result
from bench.procs import Server
from bench.stats import median, ms, percentile

MODEL = "claude-bench"
PROMPT = "Say something short."
Request = tuple[str, dict[str, Any], dict[str, str]]
_ADDRESSES = itertools.count(1)


def forwarded_for() -> dict[str, str]:
    """A header naming a new client address, as the trusted proxy in front would forward it.

    Zyron runs with its limits on, as it ships; each request coming from an address of its
    own keeps the per-address limits (20 guest chats an hour) from capping the load itself.
    """
    n = next(_ADDRESSES)
    return {"X-Forwarded-For": f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"}


@dataclass
class Target:
    """One way to get a streamed reply: its server, its request for a user, its stream dialect."""

    name: str
    port: int
    dialect: Dialect
    request: Callable[[int], Request]
    distinct: int = 1  # how many different requests `request` makes (sessions, for signed-in)
    process: Server | None = None  # whose CPU and memory to read

    @property
    def server(self) -> Server:
        """Return the process serving this target."""
        if self.process is None:
            raise RuntimeError(f"{self.name} has no process to measure")
        return self.process

    def connection(self) -> Connection:
        """Open a connection to this target's server."""
        return Connection("127.0.0.1", self.port)


def _upstream_body() -> dict[str, Any]:
    """The streamed request both the upstream and LiteLLM take: the same prompt as Zyron's."""
    return {
        "model": MODEL,
        "max_tokens": 1024,
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
    }


def direct(upstream: Server) -> Target:
    """The client talks to the fake upstream itself: the baseline."""
    body = _upstream_body()
    headers = {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"}
    return Target(
        "direct",
        upstream.port,
        ANTHROPIC,
        lambda _: ("/v1/messages", body, headers),
        process=upstream,
    )


def litellm(server: Server) -> Target:
    """LiteLLM's OpenAI-style endpoint, the one its own benchmarks use."""
    body = _upstream_body()
    headers = {"Authorization": "Bearer sk-bench-master"}
    return Target(
        "litellm",
        server.port,
        OPENAI,
        lambda _: ("/chat/completions", body, headers),
        process=server,
    )


def zyron_guest(name: str, server: Server) -> Target:
    """Zyron without a token: nothing stored; every request from an address of its own."""
    body = {"message": PROMPT}
    return Target(
        name, server.port, ZYRON, lambda _: ("/chat", body, forwarded_for()), process=server
    )


@dataclass
class Account:
    """A signed-in user of the benchmark with sessions to chat in."""

    token: str
    sessions: list[str]


def zyron_signed_in(name: str, server: Server, accounts: list[Account]) -> Target:
    """Zyron with a bearer token, chatting in a session that already has history.

    Neighbouring virtual users belong to different accounts, so the per-user limits (three
    replies at once, 300 chats an hour) see the load spread as it is over real users.
    """
    count = len(accounts)
    distinct = sum(len(account.sessions) for account in accounts)

    def request(user: int) -> Request:
        account = accounts[user % count]
        session = account.sessions[(user // count) % len(account.sessions)]
        return (
            "/chat",
            {"message": PROMPT, "session_id": session},
            {"Authorization": f"Bearer {account.token}", **forwarded_for()},
        )

    return Target(name, server.port, ZYRON, request, distinct=distinct, process=server)


async def sign_up(server: Server, *, users: int, sessions: int, prefix: str) -> list[Account]:
    """Create accounts (each from an address of its own) and `sessions` sessions over them."""
    accounts: list[Account] = []
    semaphore = asyncio.Semaphore(4)  # password hashing is the cost: about the cores there are

    async def account(index: int) -> Account:
        async with semaphore:
            connection = Connection("127.0.0.1", server.port)
            response = await connection.request(
                "POST",
                "/auth/signup",
                body={"email": f"{prefix}-{index}@bench.example", "password": "bench-password-1"},
                headers=forwarded_for(),
            )
            await connection.close()
        if response.status != 201:
            raise RuntimeError(f"signup failed: {response.status} {bytes(response.body)[:200]!r}")
        return Account(token=json.loads(bytes(response.body))["access_token"], sessions=[])

    accounts = list(await asyncio.gather(*(account(index) for index in range(users))))
    semaphore = asyncio.Semaphore(16)

    async def create(account: Account) -> None:
        async with semaphore:
            conn = Connection("127.0.0.1", server.port)
            response = await conn.request(
                "POST",
                "/sessions",
                body={"title": "bench"},
                headers={"Authorization": f"Bearer {account.token}"},
            )
            await conn.close()
            if response.status != 201:
                raise RuntimeError(f"session failed: {response.status}")
            account.sessions.append(json.loads(bytes(response.body))["id"])

    await asyncio.gather(*(create(accounts[i % users]) for i in range(max(sessions, users))))
    return accounts


async def give_history(target: Target, *, turns: int, concurrency: int = 4) -> None:
    """Chat `turns` times in every session of a signed-in target, so requests carry history."""
    semaphore = asyncio.Semaphore(concurrency)

    async def chat(user: int) -> None:
        async with semaphore:
            connection = target.connection()
            for _ in range(turns):
                path, body, headers = target.request(user)
                response = await connection.request(
                    "POST", path, body=body, headers=headers, stream=target.dialect
                )
                if not stream_result(response).ok:
                    raise RuntimeError(f"history chat failed: {stream_result(response).error}")
            await connection.close()

    await asyncio.gather(*(chat(user) for user in range(target.distinct)))


@dataclass
class Usage:
    """CPU and memory of the processes involved over one run."""

    cpu: dict[str, float]
    rss_max: dict[str, int]
    machine_cpu: float


class Sampler:
    """Read CPU time and RSS of the servers, this process and the machine, around a run."""

    def __init__(self, servers: dict[str, Server]) -> None:
        self.servers = servers
        self.me = psutil.Process()
        self.rss_max: dict[str, int] = dict.fromkeys(servers, 0)
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> Sampler:
        self.started = time.perf_counter()
        self.cpu0 = {name: server.cpu_seconds() for name, server in self.servers.items()}
        times = self.me.cpu_times()
        self.me0 = times.user + times.system
        self.machine0 = psutil.cpu_times()
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    async def _sample(self, every: float = 0.5) -> None:
        while True:
            now = time.perf_counter() - self.started
            rss = {name: server.rss() for name, server in self.servers.items()}
            for name, value in rss.items():
                self.rss_max[name] = max(self.rss_max[name], value)
            self.samples.append((now, rss))
            await asyncio.sleep(every)

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
        wall = time.perf_counter() - self.started
        self.wall = wall
        self.cpu = {
            name: (server.cpu_seconds() - self.cpu0[name]) / wall
            for name, server in self.servers.items()
        }
        times = self.me.cpu_times()
        self.cpu["loadgen"] = (times.user + times.system - self.me0) / wall
        machine = psutil.cpu_times()
        busy = (machine.user + machine.system + machine.nice + machine.softirq + machine.irq) - (
            self.machine0.user
            + self.machine0.system
            + self.machine0.nice
            + self.machine0.softirq
            + self.machine0.irq
        )
        self.machine_cpu = busy / wall


async def run_streams(
    target: Target,
    *,
    users: int,
    streams_per_user: int,
    ramp_seconds: float,
    expected_chunks: int | None,
    limit_seconds: float = 120.0,
) -> list[StreamResult]:
    """Run `users` virtual users, each streaming replies back to back on one connection."""
    results: list[StreamResult] = []

    async def user(index: int) -> None:
        await asyncio.sleep(ramp_seconds * index / max(1, users))
        connection = target.connection()
        try:
            for _ in range(streams_per_user):
                path, body, headers = target.request(index)
                started = time.perf_counter()
                try:
                    response = await connection.request(
                        "POST",
                        path,
                        body=body,
                        headers=headers,
                        stream=target.dialect,
                        limit_seconds=limit_seconds,
                    )
                except (OSError, TimeoutError) as exc:
                    results.append(
                        StreamResult(
                            ok=False,
                            ttft=None,
                            total=time.perf_counter() - started,
                            chunks=0,
                            gaps=(),
                            error=f"{type(exc).__name__}: {exc}",
                        )
                    )
                    continue
                results.append(stream_result(response, expected_chunks=expected_chunks))
        finally:
            await connection.close()

    await asyncio.gather(*(user(i) for i in range(users)))
    return results


def summarise(results: list[StreamResult], *, interval_ms: float | None) -> dict[str, Any]:
    """Medians and tails of TTFT, gaps and totals; errors and stalls (gap over 2x pacing)."""
    ttfts = [r.ttft for r in results if r.ttft is not None]
    gaps = [gap for r in results for gap in r.gaps]
    stall_limit = 2 * interval_ms / 1000 if interval_ms else None
    stalls = sum(1 for gap in gaps if stall_limit is not None and gap > stall_limit)
    errors = [r.error for r in results if not r.ok]
    return {
        "streams": len(results),
        "errors": len(errors),
        "error_examples": sorted({e for e in errors if e})[:3],
        "stalls": stalls,
        "ttft_p50_ms": ms(median(ttfts)),
        "ttft_p99_ms": ms(percentile(ttfts, 99)),
        "gap_p50_ms": ms(median(gaps)),
        "gap_p99_ms": ms(percentile(gaps, 99)),
        "gap_max_ms": ms(max(gaps) if gaps else None),
        "total_p50_ms": ms(median([r.total for r in results])),
    }


async def shuffled_rounds(
    targets: list[Target],
    rounds: int,
    run: Callable[[Target, int], Awaitable[None]],
    *,
    seed: int = 7,
) -> None:
    """Run every target once per round, in a different order each round."""
    rng = random.Random(seed)
    for round_index in range(rounds):
        order = list(targets)
        rng.shuffle(order)
        for target in order:
            await run(target, round_index)
