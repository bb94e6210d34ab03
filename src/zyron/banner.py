"""What `zyron serve` tells the person at the terminal once it serves: where, what, what next."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from zyron import __version__
from zyron.state import AppState


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
    database = make_url(state.engine.url)
    if database.get_backend_name() == "sqlite":
        data = f"{settings.data_dir.resolve()} (SQLite database, signing key, uploaded files)"
    else:  # the host and database only: never the password
        data = f"{database.get_backend_name()} {database.host}/{database.database}"
    lines = [
        f"Zyron {__version__} is ready at {url}",
        f"  model  {model}",
        f"  data   {data}",
        f"  API    {url}/docs",
        "  try    curl -N "
        f"{url}/chat -H 'content-type: application/json' -d '{{\"message\": \"Hello!\"}}'",
        "Ctrl+C stops it.",
    ]
    return "\n".join(lines)
