"""The `zyron` command: serve, migrate, users."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from zyron.logging import configure_logging
from zyron.settings import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    parser = argparse.ArgumentParser(prog="zyron", description="Zyron chat backend")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="listen address (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: PORT or 8000)")
    serve.add_argument("--reload", action="store_true", help="restart on code changes (dev)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    migrate = commands.add_parser("migrate", help="apply database migrations and exit")
    migrate.add_argument(
        "--sql",
        action="store_true",
        help="print the Postgres SQL instead (to paste into Supabase's SQL editor)",
    )
    from zyron.admin.cli import add_parser as add_users_parser

    add_users_parser(commands)  # zyron users list | create | promote | ... (docs/admin.md)
    args = parser.parse_args(argv)

    if args.command == "migrate" and args.sql:
        from zyron.db.migrate import postgres_sql

        postgres_sql(sys.stdout)
        return 0
    try:
        settings = Settings()
        configure_logging(settings.log_level)
        if args.command == "serve":
            from zyron.ops.exposition import MetricsExposition

            exposition = MetricsExposition()  # before the workers start
            try:
                exposition.start(settings, several=args.reload or args.workers > 1)
                return _serve(settings, args.host, args.port, args.reload, args.workers)
            finally:
                exposition.close()
        if args.command == "users":
            from zyron.admin.cli import run as run_users

            return run_users(args, settings)
        return _migrate(settings)
    except ConfigError as exc:
        print(f"zyron: configuration error: {exc}", file=sys.stderr)
        return 2


# How long an idle client connection stays open (uvicorn's default is 5 s).
KEEP_ALIVE_SECONDS = 75

# What uvicorn.run exits with when the server could not start (uvicorn.server.STARTUP_FAILURE).
STARTUP_FAILURE = 3


def _serve(
    settings: Settings, host: str | None, port: int | None, reload: bool, workers: int
) -> int:
    import uvicorn

    # Once, before any worker starts: workers then find the secret made and the schema current,
    # instead of racing each other to create them.
    settings.signing_key()
    _check_models(settings)
    _migrate(settings, quiet=True)
    host, port = host or settings.host, port or settings.port
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
        # Longer than a load balancer keeps an idle connection to us (HAProxy, AWS ALB: 60 s):
        # closing first races the balancer's next request on it, which it answers 502.
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
    }
    if workers == 1 and not reload and sys.stderr.isatty():
        # One process at a terminal: once the socket is bound, tell the person there where it
        # serves (a log reader, with no terminal, gets the JSON lines only).
        from zyron.app import create_app
        from zyron.banner import AnnouncingServer
        from zyron.serving import DrainPolicy

        url = f"http://{_display_host(host)}:{port}"
        app = create_app(settings)
        config = uvicorn.Config(app, **options)
        server = AnnouncingServer(app, config, url, DrainPolicy.of(settings))
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run does
            server.run()
        return 0 if server.started else STARTUP_FAILURE
    if not reload:  # every process, or each of the workers, drains on SIGTERM (docs/deploy.md)
        from zyron.serving import DrainPolicy, serve

        policy = DrainPolicy.of(settings)
        return serve("zyron.app:create_app", options, workers, policy, settings.log_level)
    uvicorn.run("zyron.app:create_app", factory=True, reload=True, **options)
    return 0


def _display_host(host: str) -> str:
    """The host to put in a URL: a wildcard address is reached on the loopback one."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104  (a comparison, not a bind)
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _check_models(settings: Settings) -> None:
    """Build the model registry once, so a mistake in it stops the start with its message."""
    from zyron.llm.registry import build_registry

    async def run() -> None:
        await build_registry(settings).aclose()

    asyncio.run(run())


def _migrate(settings: Settings, *, quiet: bool = False) -> int:
    from zyron.db.engine import create_engine
    from zyron.db.migrate import upgrade
    from zyron.search.reindex import follow_setting

    async def run() -> None:
        engine = create_engine(settings.resolved_database_url, settings)
        try:
            await upgrade(engine, transaction_pooler=settings.db_transaction_pooler)
            await follow_setting(
                engine, settings.search_config, transaction_pooler=settings.db_transaction_pooler
            )
        finally:
            await engine.dispose()

    asyncio.run(run())
    if not quiet:
        print("database is at the newest schema", file=sys.stderr)
    return 0
