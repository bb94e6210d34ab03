"""What every scenario shares: the mode, the fake upstream, the servers, progress and results."""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.client import Connection
from bench.procs import Server


@dataclass
class Bench:
    """A benchmark run."""

    quick: bool
    logs: Path
    upstream: Server
    started: float = field(default_factory=time.perf_counter)
    results: dict[str, Any] = field(default_factory=dict)

    def progress(self, message: str) -> None:
        """Print a progress line with the time since the run began."""
        print(f"[{time.perf_counter() - self.started:7.1f}s] {message}", flush=True)

    async def pacing(
        self, *, first_token_ms: float = 0.0, chunks: int = 64, interval_ms: float = 20.0
    ) -> None:
        """Set how the fake upstream produces replies."""
        await self._upstream(
            "PUT",
            "/_bench/pacing",
            {"first_token_ms": first_token_ms, "chunks": chunks, "interval_ms": interval_ms},
        )
        await self._upstream("POST", "/_bench/reset", {})

    async def upstream_stats(self) -> dict[str, Any]:
        """Return the upstream's counters (requests, chunks, how late its timers ran)."""
        stats: dict[str, Any] = await self._upstream("GET", "/_bench/stats", None)
        return stats

    async def _upstream(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        connection = Connection("127.0.0.1", self.upstream.port)
        try:
            response = await connection.request(method, path, body=body)
        finally:
            await connection.close()
        return json.loads(bytes(response.body))


def machine() -> dict[str, Any]:
    """Describe the machine the figures come from."""
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu_model,
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
    }
