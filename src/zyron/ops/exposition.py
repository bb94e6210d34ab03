"""Before `zyron serve` starts its workers: where their metrics meet, and the metrics port."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from zyron.settings import ConfigError, Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # zyron.ops.metrics reads it at import


class MetricsExposition:
    """The metrics set-up of one `zyron serve`: undone by close() when it exits."""

    def __init__(self) -> None:
        self._made: Path | None = None
        self._server: object | None = None

    def start(self, settings: Settings, *, several: bool) -> None:
        """Give `several` processes (workers, a reloader's child) one directory of metrics
        files; open METRICS_PORT if set.

        Runs before the workers start: they are spawned, so each imports prometheus_client
        afresh and, finding the directory, writes its values there for a scrape to sum. This
        process may have imported it already; it writes no values, and its scrapes read the
        directory when they run.
        """
        if several or os.environ.get(MULTIPROC_ENV):
            self._share_directory()
        if settings.metrics_port is not None:
            self._open_port(settings.metrics_host, settings.metrics_port)

    def _share_directory(self) -> None:
        given = os.environ.get(MULTIPROC_ENV)
        if given:
            directory = Path(given)
            if not directory.is_dir():
                raise ConfigError(f"{MULTIPROC_ENV}={given} is not a directory.")
            # The previous run's files would be added to this one's (prometheus-client's
            # advice: empty the directory between runs).
            for stale in directory.glob("*.db"):
                stale.unlink()
            return
        self._made = Path(tempfile.mkdtemp(prefix="zyron-metrics-"))
        os.environ[MULTIPROC_ENV] = str(self._made)

    def _open_port(self, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        from zyron.ops import metrics

        registry = metrics.scrape_registry()
        try:
            server, _ = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise ConfigError(f"METRICS_PORT={port} on {host} cannot be opened: {exc}") from exc
        self._server = server

    def close(self) -> None:
        """Stop the metrics port and remove the directory made for this run."""
        shutdown = getattr(self._server, "shutdown", None)
        if shutdown is not None:
            shutdown()
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)
