"""Traces: a span per request, per model call (gen_ai.*) and per transaction; ids in the logs."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, HttpError, TextReply
from tests.replicas import wait_until
from tests.support import LiveServer, live_server, make_settings, signup, stream_chat
from zyron.logging import JsonFormatter
from zyron.ops import tracing

MODEL = "claude-sonnet-5"


@pytest.fixture
def traced(
    backend: Backend, upstream: FakeAnthropic, tmp_path: Path
) -> Iterator[tuple[LiveServer, InMemorySpanExporter]]:
    """A server whose spans go to an in-memory exporter."""
    exporter = InMemorySpanExporter()
    settings = backend.settings(
        tmp_path,
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=upstream.base_url,
    )
    with live_server(settings, span_exporter=exporter) as server:
        yield server, exporter
    assert not tracing.enabled()  # stopped with the server


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    """The access log's lines, as the JSON formatter writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("zyron.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def spans_named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    """The spans called `name`."""
    return [span for span in spans if span.name == name]


def test_request_model_call_and_transactions_are_spans(
    traced: tuple[LiveServer, InMemorySpanExporter],
    upstream: FakeAnthropic,
    access_lines: io.StringIO,
) -> None:
    """One chat: its request span holds the model call and the transactions it made."""
    server, exporter = traced
    with server.client() as client:
        account = signup(client)
        exporter.clear()
        upstream.enqueue(TextReply(chunks=("Hi", " there")))
        events = stream_chat(client, {"message": "hello"}, account.headers)
    done = events[-1]
    assert done.event == "done"
    # The request's span ends, and its line is logged, just after the client has the last byte.
    wait_until(lambda: spans_named(exporter.get_finished_spans(), "POST /chat"), "the span")
    spans = exporter.get_finished_spans()

    (request,) = spans_named(spans, "POST /chat")
    assert request.kind == SpanKind.SERVER
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/chat"
    assert (
        request.attributes.get(
            "http.response.status_code", request.attributes.get("http.status_code")
        )
        == 200
    )
    trace_id = request.context.trace_id

    (call,) = spans_named(spans, f"chat {MODEL}")
    assert call.kind == SpanKind.CLIENT
    assert call.context.trace_id == trace_id
    assert call.attributes is not None
    usage = done.data["usage"]
    expected = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": done.data["model"],
        "gen_ai.usage.output_tokens": usage["output_tokens"],
        "gen_ai.usage.input_tokens": usage["input_tokens"]
        + usage["cache_creation_input_tokens"]
        + usage["cache_read_input_tokens"],
    }
    assert {key: call.attributes.get(key) for key in expected} == expected
    assert call.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert [event.name for event in call.events] == ["gen_ai.first_chunk"]
    assert call.status.status_code != StatusCode.ERROR

    transactions = [
        s for s in spans_named(spans, "db.transaction") if s.context.trace_id == trace_id
    ]
    # The session and messages are written, the reply saved: several transactions.
    assert len(transactions) >= 2
    system = "postgresql" if server.dialect == "postgresql" else "sqlite"
    assert all(
        s.attributes is not None and s.attributes["db.system.name"] == system for s in transactions
    )
    roles = {s.attributes["zyron.db.role"] for s in transactions if s.attributes is not None}
    assert "authenticated" in roles

    # The access log line of the request names its trace.
    def chat_lines() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in access_lines.getvalue().splitlines()]
        return [line for line in lines if line.get("path") == "/chat"]

    assert wait_until(chat_lines, "the request's log line")[-1]["trace_id"] == format(
        trace_id, "032x"
    )


def test_a_failed_model_call_is_an_error_span(
    traced: tuple[LiveServer, InMemorySpanExporter], upstream: FakeAnthropic
) -> None:
    """A call the provider refused: its span is an error, with the error's code."""
    server, exporter = traced
    with server.client() as client:
        account = signup(client)
        exporter.clear()
        upstream.enqueue(HttpError(400, "invalid_request_error"))
        events = stream_chat(client, {"message": "hello"}, account.headers)
    assert events[-1].event == "error"
    (call,) = spans_named(exporter.get_finished_spans(), f"chat {MODEL}")
    assert call.status.status_code == StatusCode.ERROR
    assert call.attributes is not None
    assert call.attributes["error.type"] == "upstream_bad_request"


def test_health_checks_are_not_traced(traced: tuple[LiveServer, InMemorySpanExporter]) -> None:
    """A load balancer's health checks would drown the traces: they make none."""
    server, exporter = traced
    with server.client() as client:
        exporter.clear()
        assert client.get("/health").status_code == 200
        assert client.get("/sessions").status_code == 401
    wait_until(lambda: spans_named(exporter.get_finished_spans(), "GET /sessions"), "the span")
    assert not spans_named(exporter.get_finished_spans(), "GET /health")


class _Collector(ThreadingHTTPServer):
    """An OTLP/HTTP receiver: keeps each export request's path and decoded spans."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.exports: list[tuple[str, str, list[str]]] = []  # (path, content type, span names)


class _CollectorHandler(BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        names = [
            span.name
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]
        self.server.exports.append((self.path, self.headers["Content-Type"], names))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_spans_are_exported_over_otlp_http(tmp_path: Path) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT, spans reach {endpoint}/v1/traces as OTLP protobuf."""
    collector = _Collector()
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{collector.server_port}/"
        settings = make_settings(tmp_path, otel_exporter_otlp_endpoint=endpoint)
        with live_server(settings) as server, server.client() as client:
            assert client.get("/sessions").status_code == 401
        # Stopping the server flushed the batch.
        paths = {path for path, _, _ in collector.exports}
        assert paths == {"/v1/traces"}
        assert {kind for _, kind, _ in collector.exports} == {"application/x-protobuf"}
        names = [name for _, _, batch in collector.exports for name in batch]
        assert "GET /sessions" in names
    finally:
        collector.shutdown()
        collector.server_close()
