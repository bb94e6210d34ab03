"""What `zyron serve` tells the person at the terminal once it serves: where, what, what next."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from zyron import __version__
from zyron.serving import DrainingServer, DrainPolicy
from zyron.state import AppState

log = logging.getLogger("zyron")


class AnnouncingServer(DrainingServer):
    """The draining server, printing the banner once its socket is bound and the app started."""

    def __init__(self, app: FastAPI, config: uvicorn.Config, url: str, policy: DrainPolicy) -> None:
        super().__init__(config, policy)
        self.app = app
        self.url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does; then, serving, print the banner."""
        await super().startup(sockets)
        if not self.started:
            return
        try:
            print(banner(self.app.state.zyron, self.url), file=sys.stderr, flush=True)
        except Exception as exc:  # a message for people: never a reason to stop serving
            log.warning("banner failed", extra={"reason": type(exc).__name__})


def banner(state: AppState, url: str) -> str:
    """The lines printed once the server is ready: its URL, model, data, and a first request."""
    settings = state.settings
    models = state.models
    if models.default is None:
        model = "none: POST /chat answers 503 no_provider (ANTHROPIC_API_KEY in .env, README)"
    else:
        kind = models.providers[models.models[models.default].provider].kind
        model = models.default
        if kind == "local":
            model += " (in process, offline; ANTHROPIC_API_KEY in .env gives Claude)"
    data = f"{settings.data_dir.resolve()} (signing key, uploaded files)"
    database = make_url(state.engine.url)
    if database.get_backend_name() != "sqlite":  # the host and database only: no password
        data += f"; database {database.get_backend_name()} {database.host}/{database.database}"
    elif Path(database.database or "").parent != settings.data_dir.resolve():
        data += f"; database {database.database}"
    else:
        data = data.replace("(signing key", "(SQLite database, signing key")
    lines = [
        f"Zyron {__version__} is ready at {url}",
        f"  model  {model}",
        f"  data   {data}",
        f"  chat   {url}/ in a browser",
        f"  API    {url}/docs",
        "  try    curl -N "
        f"{url}/chat -H 'content-type: application/json' -d '{{\"message\": \"Hello!\"}}'",
        "Ctrl+C stops it.",
    ]
    return "\n".join(lines)
