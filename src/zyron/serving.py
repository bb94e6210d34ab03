"""uvicorn with a drain: on SIGTERM, /health answers 503 while running replies finish, then stop.

A replica behind a load balancer that simply stopped listening on SIGTERM would refuse the
requests the balancer still sends it until its health check notices, and cut the replies it
streams. Here the first SIGTERM only starts a drain (docs/deploy.md):

1. `/health` answers 503 `draining`, so the balancer marks the replica down and sends it
   nothing new; the socket stays open and everything that arrives is still served;
2. once at least `DRAIN_MIN_SECONDS` have passed (so a health check sees the 503 before the
   socket closes) and no reply or request is running, or at the latest after
   `DRAIN_TIMEOUT_SECONDS`, the server stops listening and shuts down as uvicorn does: the
   application's shutdown then gives a reply still running `SHUTDOWN_GRACE_SECONDS` more.

A second SIGTERM or SIGINT stops at once. SIGINT alone (Ctrl+C at a terminal) shuts down as
uvicorn does, without the drain. The same server runs in every `--workers` worker.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import time
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from zyron.logging import configure_logging

if TYPE_CHECKING:
    # Imported where used: a `--workers` worker unpickles this module's classes before it
    # starts answering the supervisor's health checks, and the application's imports take
    # seconds on a busy machine (a worker not answering in 5 s is killed as hung).
    from zyron.settings import Settings
    from zyron.state import AppState

log = logging.getLogger("zyron")

# After a drain, how long uvicorn waits for connections still open before it cancels them:
# by then nothing should be running, and what is was given the whole drain already.
CLOSE_GRACE_SECONDS = 2
# How often the supervisor, waiting for draining workers, looks for a second signal.
JOIN_POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class DrainPolicy:
    """How long a server told to stop keeps serving: at least `minimum`, at most `timeout`."""

    timeout_seconds: float
    minimum_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> DrainPolicy:
        """Read DRAIN_TIMEOUT_SECONDS and DRAIN_MIN_SECONDS."""
        return cls(settings.drain_timeout_seconds, settings.drain_min_seconds)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining on the first SIGTERM before it stops listening."""

    def __init__(self, config: uvicorn.Config, policy: DrainPolicy) -> None:
        super().__init__(config)
        self.policy = policy
        self.drain_started: float | None = None
        self._announced = False

    @property
    def draining(self) -> bool:
        """Tell whether a drain has begun."""
        return self.drain_started is not None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Start a drain on SIGTERM; on a second signal, stop at once."""
        if self.drain_started is not None:
            self._captured_signals.append(sig)  # uvicorn raises it again once stopped
            self.should_exit = self.force_exit = True
        elif sig == signal.SIGTERM and self.started and not self.should_exit:
            self._captured_signals.append(sig)
            self.drain_started = time.monotonic()
            state = self.app_state()
            if state is not None:
                state.draining = True  # at once: the next health check already sees it
        else:  # before it serves, or SIGINT: as uvicorn does
            super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """Every tick (0.1 s): end the drain once it may end; then as uvicorn does."""
        if self.drain_started is not None and not self.should_exit:
            self.should_exit = self._drain_over(time.monotonic() - self.drain_started)
        return await super().on_tick(counter)

    def _drain_over(self, elapsed: float) -> bool:
        """Tell whether the drain may end, logging when it begins and ends (not from the
        signal handler, which may have interrupted a log call)."""
        state = self.app_state()
        replies = state.generations.running if state is not None else 0
        requests = len(self.server_state.tasks)
        if not self._announced:
            self._announced = True
            log.info(
                "draining",
                extra={
                    "replies": replies,
                    "requests": requests,
                    "timeout_seconds": self.policy.timeout_seconds,
                },
            )
        if elapsed >= self.policy.timeout_seconds:
            log.warning(
                "drain timeout: stopping with work still running",
                extra={"replies": replies, "requests": requests, "seconds": round(elapsed, 1)},
            )
            return True
        if elapsed < self.policy.minimum_seconds or replies or requests:
            return False
        log.info("drained", extra={"seconds": round(elapsed, 1)})
        return True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop listening and shut down as uvicorn does, no longer waiting after a drain."""
        if self.drain_started is not None and self.config.timeout_graceful_shutdown is None:
            self.config.timeout_graceful_shutdown = CLOSE_GRACE_SECONDS
        await super().shutdown(sockets)

    def app_state(self) -> AppState | None:
        """Return the application's state once it has started (None before, or not Zyron's)."""
        app: Any = getattr(self.config, "loaded_app", None)
        # uvicorn may wrap the application in middleware of its own, each holding `.app`.
        while app is not None and not hasattr(app, "state"):
            app = getattr(app, "app", None)
        from zyron.state import AppState

        state = getattr(getattr(app, "state", None), "zyron", None)
        return state if isinstance(state, AppState) else None


class DrainingProcess(Process):
    """A `--workers` worker whose server drains, logging as the parent does."""

    def __init__(
        self,
        config: uvicorn.Config,
        sockets: list[socket.socket],
        policy: DrainPolicy,
        log_level: str,
    ) -> None:
        # Set before the process object is made: they are pickled with it.
        self.policy = policy
        self.log_level = log_level
        super().__init__(config, sockets)

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        """In the worker: set up the JSON logs (a spawned worker starts with none), then serve."""
        configure_logging(self.log_level)
        super().target(sockets)

    @property
    def server(self) -> uvicorn.Server:
        """Return the worker's server (made in the worker, on first use)."""
        if self._server is None:
            self._server = DrainingServer(self.config, self.policy)
        return self._server


class DrainingMultiprocess(Multiprocess):
    """uvicorn's supervisor of `--workers`, starting workers that drain.

    On SIGTERM uvicorn's supervisor sends SIGTERM to every worker and waits for them: each
    drains. The methods below are uvicorn's (0.54) with `DrainingProcess` for `Process`.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        sockets: list[socket.socket],
        policy: DrainPolicy,
        log_level: str,
    ) -> None:
        super().__init__(config, sockets)
        self.policy = policy
        self.log_level = log_level

    def _new_process(self) -> DrainingProcess:
        process = DrainingProcess(self.config, self.sockets, self.policy, self.log_level)
        process.start()
        return process

    def init_processes(self) -> None:
        """Start the workers."""
        for _ in range(self.processes_num):
            self.processes.append(self._new_process())

    def join_all(self) -> None:
        """Wait for the draining workers; a second SIGTERM or SIGINT stops them at once.

        uvicorn's own join blocks, and the signals queued meanwhile are never read: under
        `docker stop` or Kubernetes, which signal only this process, a second signal would
        not reach the workers.
        """
        while any(process.process.is_alive() for process in self.processes):
            for process in self.processes:
                process.process.join(timeout=JOIN_POLL_SECONDS)
            if any(sig in (signal.SIGTERM, signal.SIGINT) for sig in self.signal_queue):
                self.signal_queue.clear()
                log.info("stopping the workers at once (second signal)")
                for process in self.processes:
                    process.terminate()  # their second SIGTERM: no more draining
        for process in self.processes:
            process.join()

    def keep_subprocess_alive(self) -> None:
        """Replace a worker that died or hangs, unless it failed to start (then stop)."""
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            _forget_gauges(process.pid)
            if process.exitcode == STARTUP_FAILURE:
                log.error("a worker failed to start: stopping", extra={"pid": process.pid})
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.info("a worker died: starting another", extra={"pid": process.pid})
            self.processes[index] = self._new_process()

    def restart_all(self) -> None:
        """SIGHUP: replace each worker in turn, the new one ready before the old one drains."""
        for index, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._new_process()
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    log.error("a new worker was not ready in time: restart aborted")
                return
            old.terminate()
            old.join()
            _forget_gauges(old.pid)
            self.processes[index] = new

    def handle_ttin(self) -> None:
        """SIGTTIN: one worker more."""
        self.processes_num += 1
        self.processes.append(self._new_process())


def _forget_gauges(pid: int | None) -> None:
    """Take a worker that is gone out of the metrics' gauges (a crash left its values)."""
    from zyron.ops.metrics import process_exited

    if pid is not None:
        process_exited(pid)


def serve(
    app: str, options: dict[str, Any], workers: int, policy: DrainPolicy, log_level: str
) -> int:
    """Serve the application factory `app` ("module:function") until stopped; the exit code.

    What `uvicorn.run(app, factory=True, workers=workers, **options)` does, with draining
    servers (and no reloading: `--reload` keeps to uvicorn.run).
    """
    config = uvicorn.Config(app, factory=True, workers=workers, **options)
    if config.workers > 1:
        supervisor = DrainingMultiprocess(config, [config.bind_socket()], policy, log_level)
        supervisor.run()
        return 0
    server = DrainingServer(config, policy)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run does
        server.run()
    return 0 if server.started else STARTUP_FAILURE
