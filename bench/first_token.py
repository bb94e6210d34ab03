"""From `git clone` to the first streamed token, as a newcomer meets Zyron.

Clones this repository (at HEAD, or at --ref) into a temporary directory and runs `make run`
there with empty uv and pip caches, no API key and a fresh data directory, then streams a guest
chat and times the first text from the local model. Packages come from the registries, as on a
new machine; the clone is local, so the network's speed shows only in the downloads.

Run: `.venv/bin/python -m bench.first_token` (about a minute; --ref for an older commit). The
figures in the README come from it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

REPOSITORY = Path(__file__).resolve().parent.parent
# Variables that would give the server a provider other than the local model, or a cache.
UNSET = (
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "MODELS_FILE",
    "LOCAL_MODEL",
    "LOCAL_RUNTIME",
    "DATABASE_URL",
    "REDIS_URL",
    "VIRTUAL_ENV",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _first_token(base_url: str) -> str:
    """Stream a guest chat; return the first text the model sends."""
    body = {"message": "Say hello in five words."}
    with (
        httpx.Client(base_url=base_url, timeout=120) as http,
        http.stream("POST", "/chat", json=body) as response,
    ):
        response.raise_for_status()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "delta":
                text: str = json.loads(line.removeprefix("data: "))["text"]
                return text
    raise SystemExit("the stream ended without any text")


def measure(ref: str | None, budget: float) -> dict[str, float]:
    """Clone, `make run`, chat; return the seconds each step ended at, from the clone's start."""
    with tempfile.TemporaryDirectory(prefix="zyron-first-token-") as scratch:
        root = Path(scratch)
        checkout = root / "zyron"
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env.update(
            UV_CACHE_DIR=str(root / "uv-cache"),
            PIP_CACHE_DIR=str(root / "pip-cache"),
            ZYRON_DATA_DIR=str(root / "data"),
            PORT=str(port),
        )
        started = time.monotonic()
        subprocess.run(["git", "clone", "-q", str(REPOSITORY), str(checkout)], check=True)
        if ref is not None:
            subprocess.run(["git", "-C", str(checkout), "checkout", "-q", ref], check=True)
        marks = {"cloned": time.monotonic() - started}
        log = (root / "make-run.log").open("wb")
        server = subprocess.Popen(
            ["make", "run"],
            cwd=checkout,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: make, uvicorn and all they started
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            while True:
                elapsed = time.monotonic() - started
                if server.poll() is not None or elapsed > budget:
                    tail = (root / "make-run.log").read_text(errors="replace")[-3000:]
                    raise SystemExit(f"make run did not serve within {elapsed:.0f} s:\n{tail}")
                try:
                    if httpx.get(f"{base_url}/health", timeout=2).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            marks["serving"] = time.monotonic() - started
            text = _first_token(base_url)
            marks["first token"] = time.monotonic() - started
            print(f"first text from the model: {text!r}")
            # What make and uv printed (the server's own lines are JSON, and left out).
            output = (root / "make-run.log").read_text(errors="replace").splitlines()
            print("\n".join(line for line in output if not line.startswith("{")))
        finally:
            with contextlib.suppress(ProcessLookupError):  # make run may have exited already
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
            log.close()
        return marks


def main() -> None:
    """Measure once and print the marks."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ref", help="the commit to measure (default: HEAD)")
    parser.add_argument("--budget", type=float, default=1800, help="seconds before giving up")
    args = parser.parse_args()
    marks = measure(args.ref, args.budget)
    for name, seconds in marks.items():
        print(f"{name:<12} {seconds:7.1f} s after git clone started")


if __name__ == "__main__":
    main()
