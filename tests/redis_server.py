"""A real Redis server for the tests: a throwaway redis-server, or ZYRON_TEST_REDIS_URL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port

_PLACES = ("/usr/bin", "/usr/local/bin", "/opt/homebrew/bin")
_START_TIMEOUT = 20.0


class RedisUnavailable(Exception):
    """No Redis server can be had; the message says why (printed as the skip reason)."""


def _find_binary() -> str | None:
    """Find redis-server: PATH first, then the usual places."""
    found = shutil.which("redis-server")
    if found:
        return found
    for directory in _PLACES:
        candidate = Path(directory) / "redis-server"
        if candidate.exists():
            return str(candidate)
    return None


def _answers_ping(port: int) -> bool:
    """Tell whether a Redis server on 127.0.0.1:port answers PING (inline command)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A Redis server for a test run; a throwaway one can be stopped and restarted."""

    url: str
    port: int | None = None
    _binary: str | None = None
    _dir: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, *, throwaway: bool = False) -> RedisServer:
        """Use ZYRON_TEST_REDIS_URL, else start a throwaway redis-server; else RedisUnavailable.

        `throwaway=True` always starts one: tests that stop or restart Redis need their own.
        """
        url = os.environ.get("ZYRON_TEST_REDIS_URL")
        if url and not throwaway:
            return cls(url=url)
        binary = _find_binary()
        if binary is None:
            raise RedisUnavailable(
                "redis-server not found (install Redis, e.g. apt-get install redis-server, "
                "or set ZYRON_TEST_REDIS_URL)"
            )
        port = free_port()
        server = cls(
            url=f"redis://127.0.0.1:{port}/0",
            port=port,
            _binary=binary,
            _dir=Path(tempfile.mkdtemp(prefix="zyron-redis-")),
        )
        server._launch()
        return server

    @property
    def throwaway(self) -> bool:
        """Tell whether this server was started here (and so can be stopped and restarted)."""
        return self._binary is not None

    def _launch(self) -> None:
        if self._binary is None or self.port is None or self._dir is None:
            raise RedisUnavailable("cannot restart a server given by ZYRON_TEST_REDIS_URL")
        log = self._dir / "redis.log"
        self._process = subprocess.Popen(
            [self._binary, "--save", "", "--appendonly", "no", "--port", str(self.port),
             "--bind", "127.0.0.1", "--daemonize", "no", "--dir", str(self._dir),
             "--logfile", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT
        while not _answers_ping(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._terminate()
                output = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RedisUnavailable(f"redis-server did not start on port {self.port}: {output}")
            time.sleep(0.05)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Stop a throwaway server and delete its files; a given server is left alone."""
        self._terminate()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def restart(self) -> None:
        """Stop the throwaway server and start it again on the same port (its data is lost)."""
        self._terminate()
        self._launch()
