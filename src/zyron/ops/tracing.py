"""OpenTelemetry traces: off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (docs/observability.md).

When on, each request has a span (OpenTelemetry's FastAPI instrumentation), each call to a
model one with the GenAI conventions' `gen_ai.*` attributes, and each database transaction
one. When off, no tracer exists and each of those places costs one `is None` test.

The tracer is the process's (module state): one process serves one app, and tests that
trace install an in-memory exporter for the app they start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from zyron import __version__

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from zyron.settings import Settings

# Health checks (every second from each load balancer) and scrapes would drown the traces.
# Regular expressions searched in the whole URL: anchored, so /health-reports is traced.
EXCLUDED_URLS = r"/health(\?.*)?$,/metrics(\?.*)?$"

_tracer: Tracer | None = None


def configure(
    app: FastAPI, settings: Settings, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Start tracing `app` when an endpoint (or, in tests, an exporter) is given; else None."""
    global _tracer
    if exporter is None and not settings.otel_exporter_otlp_endpoint:
        _tracer = None
        return None
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create(
        {SERVICE_NAME: settings.otel_service_name, SERVICE_VERSION: __version__}
    )
    provider = TracerProvider(resource=resource)  # OTEL_TRACES_SAMPLER applies
    if exporter is None:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(settings)))
    else:  # a test's: each span is there as soon as it ends
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _tracer = provider.get_tracer("zyron", __version__)
    # Only the request's span: the instrumentation's spans per body chunk sent or received
    # would cost per streamed event.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],
    )
    return provider


def _otlp_exporter(settings: Settings) -> SpanExporter:
    """The OTLP/HTTP exporter, sending to the endpoint's /v1/traces as the spec says."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return OTLPSpanExporter()  # the traces endpoint, as given
    base = str(settings.otel_exporter_otlp_endpoint).rstrip("/")
    return OTLPSpanExporter(endpoint=f"{base}/v1/traces")


def stop(provider: TracerProvider | None) -> None:
    """Send the spans still buffered and stop tracing."""
    global _tracer
    if provider is not None:
        _tracer = None
        provider.shutdown()


def enabled() -> bool:
    """Tell whether spans are being made."""
    return _tracer is not None


def start_span(
    name: str, attributes: Mapping[str, AttributeValue], *, kind: SpanKind = SpanKind.INTERNAL
) -> Span | None:
    """Start a span the caller ends (it does not become current); None when tracing is off."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, kind=kind, attributes=attributes)


@contextmanager
def current_span(name: str, attributes: Mapping[str, AttributeValue]) -> Iterator[Span | None]:
    """Run the block inside a span that is current (its children nest); nothing when off."""
    if _tracer is None:
        yield None
        return
    # An exception through the block is often the API's answer (a 404 raised inside a
    # transaction), not the span's failure: callers mark failures with fail().
    with _tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        yield span


def fail(span: Span, error_type: str) -> None:
    """Mark a span failed with the error's code (the conventions' `error.type`)."""
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))


def log_ids() -> tuple[str, str] | None:
    """Return the current trace and span ids in hex, for the logs; None outside a trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
