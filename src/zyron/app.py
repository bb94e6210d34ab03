"""create_app(settings): the FastAPI application with its lifespan, middleware and routers."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from zyron import __version__
from zyron.admin.router import router as admin_router
from zyron.auth.deps import forget_account, stop_replies_if_refused
from zyron.auth.jwks import JwksCache
from zyron.auth.passwords import Passwords
from zyron.auth.router import router as auth_router
from zyron.auth.service import AuthService
from zyron.auth.verify import TokenVerifier
from zyron.chat.attachments import base64_length
from zyron.chat.follow import router as follow_router
from zyron.chat.generation import Generations
from zyron.chat.router import router as chat_router
from zyron.chat.writer import recover_abandoned
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.migrate import upgrade
from zyron.errors import RouteMethods, install_error_handlers
from zyron.files.router import router as files_router
from zyron.files.storage import open_storage
from zyron.health import router as health_router
from zyron.limits.client_ip import ClientAddresses, parse_networks
from zyron.limits.concurrency import ConcurrencyLimiter
from zyron.limits.rates import RateLimiter
from zyron.limits.router import router as usage_router
from zyron.limits.usage import GuestUsage
from zyron.llm.registry import build_registry
from zyron.llm.router import router as models_router
from zyron.middleware import AccessLog, BodyCap, BodySizeLimit
from zyron.openapi import refine_openapi
from zyron.ops import metrics, tracing
from zyron.ops.router import router as metrics_router
from zyron.ops.sampler import sample_periodically
from zyron.portability.router import router as portability_router
from zyron.search.reindex import follow_setting
from zyron.search.router import router as search_router
from zyron.sessions.router import router as sessions_router
from zyron.settings import Settings
from zyron.shares.router import public_router as shared_router
from zyron.shares.router import router as shares_router
from zyron.state import AppState
from zyron.streams.redis_hub import RedisHub
from zyron.ui.page import mount_page
from zyron.ui.page import router as page_router
from zyron.ui.router import router as ui_router

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("zyron")

SHUTDOWN_GRACE_SECONDS = 20.0

DESCRIPTION = """Zyron streams Claude's replies over Server-Sent Events, saves every chat session
and message, and authenticates users with its own accounts or Supabase Auth. Without an
`Authorization` header, `POST /chat` runs in guest mode and saves nothing.

Every error is JSON: `{"error": "<machine_code>", "detail": "<sentence>"}`."""


async def _start_hub(settings: Settings) -> RedisHub | None:
    """Connect the Redis mirror of reply streams, when REDIS_URL is set."""
    if not settings.redis_url:
        return None
    hub = RedisHub.from_url(settings.redis_url, retention_seconds=settings.stream_retention_seconds)
    await hub.start()
    return hub


async def _recover_periodically(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, generations: Generations
) -> None:
    """Close replies whose lease expired, for as long as the server runs."""
    while True:
        await asyncio.sleep(settings.recovery_interval_seconds)
        try:
            await recover_abandoned(sessionmaker, alive=generations.live_keys())
        except Exception as exc:  # the database may be away for a while; try again later
            log.warning("recovery sweep failed", extra={"reason": str(exc)})


def _account_changed(state: AppState, user_id: uuid.UUID | None) -> None:
    """An account changed on some replica (None: changes may have been missed): act on it here.

    A deletion, a disabling or enabling, a change of role (docs/admin.md): what was cached of
    the account goes at once, and the replies this process still produces for it stop if it
    is gone or disabled (the provider stops billing).
    """
    forget_account(state, user_id)
    if user_id is not None:
        stop_replies_if_refused(state, user_id)
        return
    # Announcements may have been missed while Redis was away: look again at every user
    # whose replies run here (without cancelling any if the database cannot say).
    for owner in state.generations.owners():
        stop_replies_if_refused(state, owner, when_unsure=False)


def create_app(
    settings: Settings | None = None, *, span_exporter: SpanExporter | None = None
) -> FastAPI:
    """Build the application; the database is migrated when it starts.

    Traces go to OTEL_EXPORTER_OTLP_ENDPOINT when it is set, or to `span_exporter` (tests).
    """
    settings = settings or Settings()
    # uvicorn's access log prints query strings, where a careless client may put a token; ours
    # (zyron.access) logs paths only. Disabled here too, for `uvicorn --factory` launches.
    logging.getLogger("uvicorn.access").disabled = True
    signing_key = settings.signing_key()  # fail now, not at the first login, if it is unusable

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        models = build_registry(settings)  # first: a configuration mistake stops the start
        engine = create_engine(settings.resolved_database_url, settings)
        await upgrade(engine, transaction_pooler=settings.db_transaction_pooler)
        await follow_setting(
            engine, settings.search_config, transaction_pooler=settings.db_transaction_pooler
        )
        http = httpx.AsyncClient(follow_redirects=False)
        jwks = None
        if settings.supabase_url:
            jwks = JwksCache(
                f"{settings.supabase_url.rstrip('/')}/auth/v1/.well-known/jwks.json",
                http,
                ttl_seconds=settings.jwks_cache_seconds,
                min_refetch_seconds=settings.jwks_min_refetch_seconds,
            )
        secret = settings.supabase_jwt_secret
        sessionmaker = create_sessionmaker(engine)
        guest_usage = GuestUsage(settings.redis_url)
        running = ConcurrencyLimiter(
            enabled=settings.rate_limit_enabled,
            maximum={
                "user": settings.user_max_concurrent,
                "guest": settings.guest_max_concurrent,
            },
            redis_url=settings.redis_url,
            hold_seconds=settings.upstream_timeout_seconds + settings.title_timeout_seconds,
        )
        hub = await _start_hub(settings)
        storage = await open_storage(settings)
        generations = Generations(settings, sessionmaker, mirror=hub.publish if hub else None)
        if hub is not None:
            hub.on_cancel(generations.cancel_here)
        # Replies left streaming by a process that died: at start, then every so often.
        try:
            await recover_abandoned(sessionmaker)
        except Exception as exc:  # never a reason not to start; the periodic sweep retries
            log.warning("recovery at start failed", extra={"reason": str(exc)})
        recovery = asyncio.create_task(_recover_periodically(sessionmaker, settings, generations))
        state = AppState(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            hub=hub,
            http=http,
            verifier=TokenVerifier(
                builtin_key=signing_key,
                builtin_issuer=settings.token_issuer,
                supabase_url=settings.supabase_url,
                supabase_secret=secret.get_secret_value() if secret else None,
                jwks=jwks,
                leeway_seconds=settings.jwt_leeway_seconds,
            ),
            passwords=Passwords(),
            models=models,
            limiter=RateLimiter(settings),
            running=running,
            guest_usage=guest_usage,
            clients=ClientAddresses(
                parse_networks(settings.trusted_proxies), settings.client_ipv6_prefix
            ),
            generations=generations,
            storage=storage,
        )
        app.state.zyron = state
        sampler = None
        if settings.metrics_token or settings.metrics_port:
            sampler = asyncio.create_task(sample_periodically(state))
        if hub is not None:
            hub.on_account_change(lambda user_id: _account_changed(state, user_id))
        app.state.auth_service = AuthService(settings, state.passwords, signing_key)
        log.info(
            "started",
            extra={
                "database": engine.dialect.name,
                "providers": list(models.providers),
                "models": len(models.models),
                "default_model": models.default,
                "supabase": bool(settings.supabase_url or secret),
            },
        )
        if models.default is None:
            log.warning("no model: /chat answers no_provider until one is configured (README)")
        # Before serving: the first chat does not wait for the model, and llama.cpp silences
        # the process's output while it loads (docs/local-model.md), so nothing else runs then.
        await models.preload()
        # Everything made at start-up (modules, schemas, validators) lives as long as the
        # process: move it out of the collector's reach. Without this, each full collection
        # walked it all and paused every stream for 120-210 ms under load (docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            recovery.cancel()
            if sampler is not None:
                sampler.cancel()
            await state.generations.shutdown(SHUTDOWN_GRACE_SECONDS)
            if hub is not None:
                await hub.close()
            await models.aclose()
            await running.aclose()
            await guest_usage.aclose()
            await storage.aclose()
            await http.aclose()
            await engine.dispose()
            tracing.stop(tracer_provider)
            metrics.process_exited(os.getpid())

    app = FastAPI(
        title="Zyron",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # A path with a slash too many (or too few) is a 404 like any unknown path, not a
        # 307 to the route: the redirect would tell a non-admin which /admin paths exist,
        # and a 307 sends a request's body through a second time.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    tracer_provider = tracing.configure(app, settings, span_exporter)
    default_cap, caps = body_caps(settings)
    app.add_middleware(BodySizeLimit, default=default_cap, caps=caps)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key"],
        max_age=600,
    )
    app.add_middleware(AccessLog)
    routers = (
        health_router,
        metrics_router,
        auth_router,
        sessions_router,
        chat_router,
        follow_router,
        models_router,
        usage_router,
        files_router,
        search_router,
        portability_router,
        shares_router,
        shared_router,
        ui_router,
        admin_router,
    )
    for router in routers:
        app.include_router(router)
    mount_page(app)
    app.state.route_methods = RouteMethods.of(
        [
            *app.router.routes,
            *(route for router in (*routers, page_router) for route in router.routes),
        ]
    )
    refine_openapi(app, settings, lambda: _offered_models(app), caps=(default_cap, caps))
    return app


# Multipart framing around an upload: boundaries, part headers, a long filename.
MULTIPART_ALLOWANCE_BYTES = 64 * 1024
# JSON around inline attachments: field names, media types, filenames, base64 padding.
INLINE_ALLOWANCE_BYTES = 64 * 1024
CHAT_ROUTES = ("/chat", "/ui/chat")


def body_caps(settings: Settings) -> tuple[BodyCap, dict[str, BodyCap]]:
    """Return the default body cap and the paths with caps of their own (uploads, chat)."""
    upload = BodyCap(
        settings.max_file_bytes + MULTIPART_ALLOWANCE_BYTES, "MAX_FILE_BYTES plus multipart"
    )
    inline = settings.max_inline_attachment_bytes
    chat = BodyCap(settings.max_body_bytes, "MAX_BODY_BYTES")
    if inline:
        chat = BodyCap(
            settings.max_body_bytes + base64_length(inline) + INLINE_ALLOWANCE_BYTES,
            "MAX_BODY_BYTES plus MAX_INLINE_ATTACHMENT_BYTES in base64",
        )
    imports = BodyCap(
        settings.max_import_bytes + MULTIPART_ALLOWANCE_BYTES, "MAX_IMPORT_BYTES plus multipart"
    )
    caps = {"/files": upload, "/import": imports} | dict.fromkeys(CHAT_ROUTES, chat)
    return BodyCap(settings.max_body_bytes, "MAX_BODY_BYTES"), caps


def _offered_models(app: FastAPI) -> list[str] | None:
    """The model ids the started server offers; None before it has started."""
    state: AppState | None = getattr(app.state, "zyron", None)
    return None if state is None else list(state.models.models)
