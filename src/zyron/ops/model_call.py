"""One call to a model as metrics and a span see it: started, first chunk, then an end."""

from __future__ import annotations

import time

from opentelemetry.trace import SpanKind

from zyron.llm.base import Finished
from zyron.ops import metrics, tracing

OPERATION = "chat"  # gen_ai.operation.name of every call Zyron makes to a model


class ModelCall:
    """Time one streamed call to a model; record it once it has ended, one way or another."""

    __slots__ = ("_labels", "_provider", "_span", "_started")

    def __init__(self, provider: str, kind: str, model: str, max_tokens: int) -> None:
        self._provider = provider
        self._labels = (OPERATION, provider, model)
        self._started = time.perf_counter()
        self._span = tracing.start_span(
            f"{OPERATION} {model}",
            {
                "gen_ai.operation.name": OPERATION,
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "gen_ai.request.max_tokens": max_tokens,
                "zyron.provider.kind": kind,
            },
            kind=SpanKind.CLIENT,
        )

    def first_chunk(self) -> None:
        """Note the first chunk of the reply (once per call)."""
        metrics.time_to_first_chunk.labels(*self._labels).observe(
            time.perf_counter() - self._started
        )
        if self._span is not None:
            self._span.add_event("gen_ai.first_chunk")

    def finished(self, finished: Finished) -> None:
        """Record a call that ended normally, with what the provider billed."""
        metrics.operation_duration.labels(*self._labels, "").observe(
            time.perf_counter() - self._started
        )
        usage = finished.usage
        # The conventions' input tokens include those read from or written to the cache.
        metrics.token_usage.labels(*self._labels, "input").observe(usage.prompt_tokens)
        metrics.token_usage.labels(*self._labels, "output").observe(usage.output_tokens)
        span = self._span
        if span is not None:
            span.set_attributes(
                {
                    "gen_ai.response.model": finished.model,
                    "gen_ai.response.finish_reasons": [finished.stop_reason or "unknown"],
                    "gen_ai.usage.input_tokens": usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                    "gen_ai.usage.cache_read.input_tokens": usage.cache_read_input_tokens,
                    "gen_ai.usage.cache_creation.input_tokens": usage.cache_creation_input_tokens,
                }
            )
            span.end()

    def failed(self, error_type: str, *, upstream: bool = True) -> None:
        """Record a call that failed (`upstream`: the provider's failure, not a cancel)."""
        metrics.operation_duration.labels(*self._labels, error_type).observe(
            time.perf_counter() - self._started
        )
        if upstream:
            metrics.upstream_errors.labels(self._provider, error_type).inc()
        if self._span is not None:
            tracing.fail(self._span, error_type)
            self._span.end()
