"""A real HAProxy (Debian's package) running the repository's deploy/haproxy.cfg for a test.

The shipped file reads its addresses from the environment (defaulting to the compose file's
service names), so the test runs that very file, only with local ports.
"""

from __future__ import annotations

import contextlib
import csv
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.replicas import Replica
from tests.support import free_port

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
BACKEND = "replicas"
START_SECONDS = 20.0


class HaproxyUnavailable(Exception):
    """No haproxy binary; the message says why (printed as the skip reason)."""


def find_haproxy() -> str:
    """Return the haproxy binary (PATH, then Debian's /usr/sbin), or raise HaproxyUnavailable."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise HaproxyUnavailable("haproxy not found (Debian: apt-get install haproxy)")
    return found


@dataclass
class Haproxy:
    """deploy/haproxy.cfg in front of `replicas` (named zyron1, zyron2, ... in its backend)."""

    binary: str
    replicas: Sequence[Replica]
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Return the proxy's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> Path:
        """Return the path of the admin (stats) socket."""
        return self.workdir / "haproxy.sock"

    @property
    def log_file(self) -> Path:
        """Return where HAProxy's output (its request log) goes."""
        return self.workdir / "haproxy.log"

    def env(self) -> dict[str, str]:
        """Return the environment the shipped config reads."""
        env = {
            "HAPROXY_BIND": f"127.0.0.1:{self.port}",
            "HAPROXY_STATS_SOCKET": str(self.socket_path),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        for index, replica in enumerate(self.replicas, start=1):
            env[f"ZYRON{index}"] = f"127.0.0.1:{replica.port}"
        return env

    def check(self) -> subprocess.CompletedProcess[str]:
        """Run `haproxy -c` on the config with this environment."""
        return subprocess.run(
            [self.binary, "-c", "-f", str(CONFIG)],
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )

    def start(self) -> Haproxy:
        """Start HAProxy in the foreground and wait until every replica is up in it."""
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(  # the system's haproxy, our own config
                [self.binary, "-db", "-f", str(CONFIG)],
                env=self.env(),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"haproxy exited {self.process.returncode}: {self.log()}")
            with contextlib.suppress(OSError):
                if all(row["status"] == "UP" for row in self.servers().values()):
                    return self
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy did not see every replica up: {self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop HAProxy."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self, chars: int = 3000) -> str:
        """Return the end of HAProxy's output."""
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(errors="replace")[-chars:]

    def command(self, line: str) -> str:
        """Send one command to the admin socket and return its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect(str(self.socket_path))
            conn.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        """Return `show stat` for each replica of the backend, by server name."""
        lines = self.command("show stat").lstrip("# ").splitlines()
        rows = csv.DictReader(line for line in lines if line)
        return {
            row["svname"]: row
            for row in rows
            if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def served(self) -> dict[str, int]:
        """Return how many requests each replica has been sent (`stot`), by server name."""
        return {name: int(row["stot"]) for name, row in self.servers().items()}

    def status(self, name: str) -> str:
        """Return a replica's state as HAProxy's health checks have it (UP, DOWN, ...)."""
        return self.servers()[name]["status"]

    def set_state(self, name: str, state: str) -> None:
        """`set server`: ready, drain (no new requests) or maint."""
        answer = self.command(f"set server {BACKEND}/{name} state {state}")
        assert not answer.strip(), answer
