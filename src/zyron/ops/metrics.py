"""Prometheus metrics: the families Zyron keeps, and their rendering for a scrape.

Names follow Prometheus conventions, and OpenTelemetry's semantic conventions where those
define one (HTTP server, GenAI client, database client), with their attribute names as labels
(`gen_ai.request.model` becomes `gen_ai_request_model`). docs/observability.md lists them.

Under `zyron serve --workers N` every process writes its values to files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, set up by `zyron.ops.serve`
before this module is imported) and a scrape sums them; one process keeps them in memory.

Nothing here runs per streamed event: a reply is counted when a model call starts and ends,
a stream when its response starts and ends, a request when it ends.
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

if TYPE_CHECKING:
    from sqlalchemy.pool import Pool

    from zyron.llm.base import TokenUsage

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# OpenTelemetry's advice for http.server.request.duration, and longer ones for SSE streams,
# whose request lasts as long as the reply.
HTTP_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1)
HTTP_BUCKETS = (*HTTP_BUCKETS, 2.5, 5, 7.5, 10, 30, 60, 120, 300)
# OpenTelemetry's advice for gen_ai.client.operation.duration (and its first-chunk twin).
GEN_AI_SECONDS = tuple(round(0.01 * 2**power, 2) for power in range(15))  # 0.01 s to 164 s
# OpenTelemetry's advice for gen_ai.client.token.usage.
TOKEN_BUCKETS = tuple(float(4**power) for power in range(13))

MODEL = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")

http_duration = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP server requests (for a stream, until it ends).",
    ("http_request_method", "http_route", "http_response_status_code"),
    buckets=HTTP_BUCKETS,
)
operation_duration = Histogram(
    "gen_ai_client_operation_duration_seconds",
    "Duration of one call to a model, from the request to its last chunk.",
    (*MODEL, "error_type"),
    buckets=GEN_AI_SECONDS,
)
time_to_first_chunk = Histogram(
    "gen_ai_client_operation_time_to_first_chunk_seconds",
    "Time from a call to a model to the first chunk of its reply.",
    MODEL,
    buckets=GEN_AI_SECONDS,
)
token_usage = Histogram(
    "gen_ai_client_token_usage",
    "Input and output tokens of one call to a model, as its provider billed them.",
    (*MODEL, "gen_ai_token_type"),
    buckets=TOKEN_BUCKETS,
)
tokens = Counter(
    "zyron_tokens",
    "Tokens charged for replies, by kind (input, output, cache_write, cache_read, reasoning).",
    ("gen_ai_provider_name", "gen_ai_request_model", "kind"),
)
cost = Counter(
    "zyron_cost_usd",
    "What replies cost, in US dollars, at the model's prices (unpriced models add nothing).",
    ("gen_ai_provider_name", "gen_ai_request_model"),
)
replies = Counter(
    "zyron_replies",
    "Replies by how they ended (complete, cancelled, interrupted, error).",
    ("gen_ai_provider_name", "gen_ai_request_model", "status"),
)
upstream_errors = Counter(
    "zyron_upstream_errors",
    "Failed calls to a model provider, by Zyron's error code (upstream_timeout, ...).",
    ("gen_ai_provider_name", "error_type"),
)
upstream_retries = Counter(
    "zyron_upstream_retries",
    "Calls to a model provider retried after a failure, by the failure's code.",
    ("gen_ai_provider_name", "error_type"),
)
refusals = Counter(
    "zyron_refusals",
    "Requests refused by a rate limit, a concurrency limit, a quota or a budget.",
    ("limit",),
)
streams_open = Gauge(
    "zyron_streams_open",
    "Server-Sent Event responses open now.",
    multiprocess_mode="livesum",
)
pool_connections = Gauge(
    "db_client_connection_count",
    "Database connections of the pool, by state (used, idle).",
    ("db_client_connection_state",),
    multiprocess_mode="livesum",
)
pool_max = Gauge(
    "db_client_connection_max",
    "The most connections the pool may open (size plus overflow).",
    multiprocess_mode="livesum",
)

NANOS_PER_USD = 1_000_000_000
# TokenUsage's fields, by the kind label they are counted under.
TOKEN_KINDS = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_write", "cache_creation_input_tokens"),
    ("cache_read", "cache_read_input_tokens"),
    ("reasoning", "reasoning_tokens"),
)


@cache
def redis_up() -> Gauge:
    """The Redis gauge, made only where Redis is configured (made, it would report 0)."""
    return Gauge(
        "zyron_redis_up",
        "1 when Redis answered the last ping, 0 when it did not.",
        multiprocess_mode="livemin",
    )


def multiprocess() -> bool:
    """Tell whether values live in files shared by several processes."""
    return bool(os.environ.get(MULTIPROC_ENV))


def scrape_registry() -> CollectorRegistry:
    """The registry a scrape reads: this process's, or every worker's files summed."""
    if not multiprocess():
        return REGISTRY
    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def render() -> bytes:
    """Return every family in the Prometheus text format."""
    return generate_latest(scrape_registry())


def count_reply(
    provider: str,
    model: str,
    status: str,
    charged: TokenUsage | None,
    cost_nanos: int | None,
) -> None:
    """Count a reply that ended: its status, the tokens charged for it, and their cost."""
    replies.labels(provider, model, status).inc()
    if charged is not None:
        for kind, field in TOKEN_KINDS:
            value = getattr(charged, field) or 0
            if value:
                tokens.labels(provider, model, kind).inc(value)
    if cost_nanos:
        cost.labels(provider, model).inc(cost_nanos / NANOS_PER_USD)


def sample_pool(pool: Pool, max_overflow: int) -> None:
    """Copy the pool's counters into their gauges (a pool without counters reports none)."""
    from sqlalchemy.pool import QueuePool

    if not isinstance(pool, QueuePool):
        return
    pool_connections.labels("used").set(pool.checkedout())
    pool_connections.labels("idle").set(pool.checkedin())
    pool_max.set(pool.size() + max_overflow)


def process_exited(pid: int) -> None:
    """Drop an exited worker's live gauges from the sums (multiprocess mode only)."""
    if multiprocess():
        prometheus_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
