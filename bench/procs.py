"""Start the servers under test as real processes and read their CPU time and memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
LITELLM_DIR = ROOT / "bench" / "litellm"
LITELLM_BIN = LITELLM_DIR / ".venv" / "bin" / "litellm"
# Signs the benchmark's own tokens; not a secret, the servers live only for the run.
BENCH_SECRET_KEY = "bench-secret-key-that-is-long-enough-0123456789"  # noqa: S105


def free_port() -> int:
    """Ask the OS for a free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process (and its workers) with a port and a log file."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path
    _process: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self._process = psutil.Process(self.popen.pid)

    @property
    def url(self) -> str:
        """Return the base URL."""
        return f"http://127.0.0.1:{self.port}"

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self._process, *self._process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """Return user + system CPU time of the process and its children still running."""
        total = 0.0
        for process in self._tree():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def rss(self) -> int:
        """Return the resident memory of the process and its workers, in bytes."""
        total = 0
        for process in self._tree():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), then kill."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                for process in self._tree():
                    process.kill()
                self.popen.wait(timeout=5)

    def log_tail(self, lines: int = 20) -> str:
        """Return the end of the server's output, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def launch(
    name: str,
    argv: list[str],
    *,
    port: int,
    env: Mapping[str, str],
    logs: Path,
    ready_path: str,
    timeout: float = 120.0,
) -> Server:
    """Start a process and wait until `ready_path` answers 200."""
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(  # our own argv, no shell
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=ROOT,
        )
    server = Server(name, port, popen, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited with {popen.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + ready_path, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} did not become ready in {timeout:.0f} s:\n{server.log_tail()}")


def start_upstream(logs: Path) -> Server:
    """Start the fake Anthropic upstream."""
    port = free_port()
    return launch(
        "upstream",
        [sys.executable, "-m", "bench.upstream", "--port", str(port)],
        port=port,
        env={},
        logs=logs,
        ready_path="/_bench/stats",
    )


def start_zyron(
    name: str,
    *,
    database_url: str,
    upstream: Server,
    data_dir: Path,
    logs: Path,
    workers: int = 1,
    extra_env: Mapping[str, str] | None = None,
    profile: Path | None = None,
    limits: bool = True,
    redis_url: str | None = None,
) -> Server:
    """Start `zyron serve` as a user would, pointed at the fake upstream.

    Its limits are on, as shipped (in memory, or in Redis with `redis_url`), and the harness
    is its trusted proxy, which says in X-Forwarded-For who each request comes from.
    `limits=False` is RATE_LIMIT_ENABLED=false, to show what they cost. With `profile`, the
    server runs under cProfile (bench.profiled).
    """
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "ANTHROPIC_API_KEY": "sk-ant-bench",
        "ANTHROPIC_BASE_URL": upstream.url,
        "ZYRON_DATA_DIR": str(data_dir),
        "SECRET_KEY": BENCH_SECRET_KEY,
        "TRUSTED_PROXIES": "127.0.0.1",
        **({} if limits else {"RATE_LIMIT_ENABLED": "false"}),
        **({"REDIS_URL": redis_url} if redis_url else {}),
        # Tokens are minted once per scenario, and a sweep lasts longer than the default 15 min.
        "ACCESS_TOKEN_TTL_SECONDS": "86400",
        **(extra_env or {}),
    }
    argv = [str(VENV_BIN / "zyron"), "serve", "--port", str(port)]
    if profile is not None:
        argv = [sys.executable, "-m", "bench.profiled", str(profile), *argv[1:]]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return launch(name, argv, port=port, env=env, logs=logs, ready_path="/health")


def start_litellm(upstream: Server, logs: Path, *, workers: int = 1) -> Server:
    """Start the LiteLLM proxy (its own locked virtualenv) in front of the fake upstream."""
    if not LITELLM_BIN.exists():
        raise RuntimeError("LiteLLM is not installed: run `make bench` (it installs it)")
    port = free_port()
    env = {
        "BENCH_UPSTREAM_URL": upstream.url,
        "BENCH_UPSTREAM_KEY": "sk-ant-bench",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MASTER_KEY": "sk-bench-master",
        "LITELLM_MODE": "PRODUCTION",
        "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    }
    argv = [
        str(LITELLM_BIN),
        "--config",
        str(LITELLM_DIR / "config.yaml"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        str(workers),
    ]
    return launch("litellm", argv, port=port, env=env, logs=logs, ready_path="/health/liveliness")
