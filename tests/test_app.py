"""The application as a whole: health, OpenAPI, CORS, error shapes, body caps and log hygiene."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, HttpError
from tests.support import LiveServer, live_server, make_settings, signup, stream_chat
from zyron.logging import JsonFormatter

ANTHROPIC_KEY = "sk-ant-test-key-never-logged"  # the key the `server` fixture is given
ERROR_BODY_REF = "#/components/schemas/ErrorBody"
LIMIT_BODY_BYTES = 2048
LIMIT_MESSAGE_CHARS = 10

PUBLIC_OPERATIONS = [
    ("get", "/health"),
    ("post", "/auth/signup"),
    ("post", "/auth/login"),
    ("post", "/auth/refresh"),
]
AUTHENTICATED_OPERATIONS = [
    ("post", "/auth/logout"),
    ("get", "/auth/me"),
    ("get", "/sessions"),
    ("post", "/sessions"),
    ("get", "/sessions/{session_id}"),
    ("patch", "/sessions/{session_id}"),
    ("delete", "/sessions/{session_id}"),
    ("get", "/sessions/{session_id}/messages"),
    ("post", "/chat"),
]
NOT_FOUND_OPERATIONS = [
    ("get", "/sessions/{session_id}"),
    ("patch", "/sessions/{session_id}"),
    ("delete", "/sessions/{session_id}"),
    ("get", "/sessions/{session_id}/messages"),
    ("post", "/chat"),
]
VALIDATED_OPERATIONS = [
    ("post", "/auth/signup"),
    ("post", "/auth/login"),
    ("post", "/auth/refresh"),
    ("get", "/sessions"),
    ("post", "/sessions"),
    ("get", "/sessions/{session_id}"),
    ("patch", "/sessions/{session_id}"),
    ("delete", "/sessions/{session_id}"),
    ("get", "/sessions/{session_id}/messages"),
    ("post", "/chat"),
]


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    """Check the one error shape and return its detail."""
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    detail: str = body["detail"]
    return detail


@pytest.fixture(scope="module")
def limited(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server with small caps on request bodies and message length."""
    settings = backend.settings(
        tmp_path_factory.mktemp("zyron-limited"),
        anthropic_api_key=ANTHROPIC_KEY,
        anthropic_base_url=fake_anthropic.base_url,
        max_body_bytes=LIMIT_BODY_BYTES,
        max_message_chars=LIMIT_MESSAGE_CHARS,
        # No inline attachments: /chat then has the plain MAX_BODY_BYTES cap too.
        max_inline_attachment_bytes=0,
    )
    with live_server(settings) as running:
        yield running


@pytest.fixture(scope="module")
def openapi(server: LiveServer) -> dict[str, Any]:
    """The server's OpenAPI document."""
    with server.client() as http:
        response = http.get("/openapi.json")
    assert response.status_code == 200, response.text
    schema: dict[str, Any] = response.json()
    return schema


# --- health and documentation -------------------------------------------------------------


def test_health(client: httpx.Client) -> None:
    """GET /health reports the server and its database as ok."""
    response = client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"


@pytest.mark.parametrize(
    ("path", "marker"), [("/docs", "swagger"), ("/redoc", "redoc"), ("/openapi.json", "openapi")]
)
def test_docs_are_served(client: httpx.Client, path: str, marker: str) -> None:
    """Swagger UI, ReDoc and the OpenAPI document are served."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert marker in response.text.lower()


def test_every_route_is_documented(openapi: dict[str, Any]) -> None:
    """Every route of the contract is in the schema with its method."""
    paths = openapi["paths"]
    for method, path in PUBLIC_OPERATIONS + AUTHENTICATED_OPERATIONS:
        assert path in paths, sorted(paths)
        assert method in paths[path], (method, path, sorted(paths[path]))


def _bearer_scheme_names(openapi: dict[str, Any]) -> set[str]:
    schemes = openapi.get("components", {}).get("securitySchemes", {})
    return {
        name
        for name, scheme in schemes.items()
        if scheme.get("type") == "http" and scheme.get("scheme", "").lower() == "bearer"
    }


def _security_names(operation: dict[str, Any]) -> set[str]:
    return {name for requirement in operation.get("security", []) for name in requirement}


def test_bearer_security_scheme(openapi: dict[str, Any]) -> None:
    """A bearer scheme exists; the authenticated operations use it and the public ones do not."""
    bearer = _bearer_scheme_names(openapi)
    assert bearer, openapi.get("components", {}).get("securitySchemes")
    for method, path in AUTHENTICATED_OPERATIONS:
        operation = openapi["paths"][path][method]
        assert _security_names(operation) & bearer, (method, path, operation.get("security"))
    for method, path in PUBLIC_OPERATIONS:
        operation = openapi["paths"][path][method]
        assert not _security_names(operation) & bearer, (method, path)


def _error_ref(operation: dict[str, Any], status: str) -> str | None:
    response = operation["responses"].get(status)
    if response is None:
        return None
    ref: str | None = (
        response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    )
    return ref


def test_validation_errors_use_error_body(openapi: dict[str, Any]) -> None:
    """Every 422 is documented with the ErrorBody schema, not FastAPI's default."""
    schemas = openapi["components"]["schemas"]
    assert set(schemas["ErrorBody"]["required"]) == {"error", "detail"}
    assert "HTTPValidationError" not in schemas
    for method, path in VALIDATED_OPERATIONS:
        assert _error_ref(openapi["paths"][path][method], "422") == ERROR_BODY_REF, (method, path)
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if "422" in operation.get("responses", {}):
                assert _error_ref(operation, "422") == ERROR_BODY_REF, (method, path)


def test_error_responses_are_documented(openapi: dict[str, Any]) -> None:
    """401 and 404 answers are documented with the ErrorBody schema."""
    for method, path in AUTHENTICATED_OPERATIONS:
        assert _error_ref(openapi["paths"][path][method], "401") == ERROR_BODY_REF, (method, path)
    for method, path in NOT_FOUND_OPERATIONS:
        assert _error_ref(openapi["paths"][path][method], "404") == ERROR_BODY_REF, (method, path)
    assert _error_ref(openapi["paths"]["/auth/login"]["post"], "401") == ERROR_BODY_REF
    assert _error_ref(openapi["paths"]["/auth/refresh"]["post"], "401") == ERROR_BODY_REF
    assert _error_ref(openapi["paths"]["/auth/signup"]["post"], "409") == ERROR_BODY_REF


# --- CORS ---------------------------------------------------------------------------------


def _preflight(client: httpx.Client, origin: str) -> httpx.Response:
    return client.options(
        "/chat",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


def test_cors_allows_default_origin(client: httpx.Client) -> None:
    """A preflight from a default allowed origin is answered with that origin."""
    response = _preflight(client, "http://localhost:3000")
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_cors_refuses_other_origin(client: httpx.Client) -> None:
    """A preflight or request from an origin not listed gets no allow-origin header."""
    response = _preflight(client, "http://evil.example")
    assert response.status_code >= 400
    assert "access-control-allow-origin" not in response.headers
    response = client.get("/health", headers={"Origin": "http://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_cors_uses_configured_origins(data_dir: Path) -> None:
    """A server given ALLOWED_ORIGINS allows exactly those origins, not the defaults."""
    settings = make_settings(data_dir, allowed_origins=["https://app.example"])
    with live_server(settings) as running, running.client() as http:
        response = _preflight(http, "https://app.example")
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        response = http.get("/health", headers={"Origin": "https://app.example"})
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        for origin in ("http://localhost:3000", "http://evil.example"):
            response = _preflight(http, origin)
            assert "access-control-allow-origin" not in response.headers, origin


# --- error shapes -------------------------------------------------------------------------


def test_unknown_path_is_json_404(client: httpx.Client) -> None:
    """An unknown path answers the JSON error shape."""
    assert_error(client.get("/no/such/path"), 404, "not_found")
    assert_error(client.post("/sessions/x/y/z", json={}), 404, "not_found")


def test_wrong_method_is_json_405(client: httpx.Client) -> None:
    """A known path with a wrong method answers 405 as JSON, with Allow."""
    response = client.post("/health")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]
    assert_error(client.put("/sessions", json={}), 405, "method_not_allowed")


def test_malformed_json_is_422(client: httpx.Client, server: LiveServer) -> None:
    """A body that is not JSON is a 422 `invalid_json` and changes nothing."""
    before = server.counts()
    for raw in (b'{"email": ', b"{'email': 'a@example.com'}", b"not json"):
        response = client.post(
            "/auth/login", content=raw, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 422, "invalid_json")
    response = client.post(
        "/auth/signup",
        content=b'{"email": "x@example.com", "password": "long enough pw",',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 422, "invalid_json")
    assert server.counts() == before


def test_body_not_utf8_is_invalid_json(client: httpx.Client) -> None:
    """A JSON body that is not UTF-8 is malformed JSON: 422 `invalid_json`, not a 400."""
    response = client.post(
        "/auth/login",
        content=b'{"email": "\xff\xfe@example.com", "password": "x"}',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 422, "invalid_json")


def test_missing_field_is_named(client: httpx.Client) -> None:
    """A missing or invalid field is a 422 that names it."""
    response = client.post("/auth/login", json={"email": "someone@example.com"})
    assert "password" in assert_error(response, 422, "validation_error")
    response = client.post("/auth/login", json={"password": "whatever"})
    assert "email" in assert_error(response, 422, "validation_error")
    response = client.post("/auth/signup", json={"email": "not-an-email", "password": "long pw!!"})
    assert "email" in assert_error(response, 422, "validation_error")
    response = client.post("/chat", json={"stream": False})
    assert "message" in assert_error(response, 422, "validation_error")


def test_wrong_content_type_is_refused(client: httpx.Client, server: LiveServer) -> None:
    """Correct credentials sent as text/plain are not accepted as JSON: no tokens, no rows."""
    account = signup(client)
    before = server.counts()
    response = client.post(
        "/auth/login",
        content=f'{{"email": "{account.email}", "password": "correct horse battery staple"}}',
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code in (415, 422), response.text
    code = "unsupported_media_type" if response.status_code == 415 else "validation_error"
    assert_error(response, response.status_code, code)
    assert "access_token" not in response.text
    assert server.counts() == before


def test_unauthenticated_has_www_authenticate(client: httpx.Client) -> None:
    """A 401 carries `WWW-Authenticate: Bearer`."""
    response = client.get("/auth/me")
    assert_error(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")
    response = client.get("/auth/me", headers={"Authorization": "Bearer nope"})
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_token_in_query_string_is_ignored(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic
) -> None:
    """A token in the query string does not authenticate: /auth/me is a 401, /chat a guest."""
    account = signup(client)
    response = client.get("/auth/me", params={"access_token": account.access_token})
    assert_error(response, 401, "not_authenticated")

    before = server.counts()
    with client.stream(
        "POST", "/chat", params={"access_token": account.access_token}, json={"message": "hi"}
    ) as streamed:
        assert streamed.status_code == 200
        text = streamed.read().decode()
    assert '"saved":false' in text
    assert server.counts() == before
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/auth/login", {"json": []}),
        ("POST", "/auth/login", {"json": None}),
        ("POST", "/auth/login", {"json": {"email": {"nested": 1}, "password": 5}}),
        ("POST", "/auth/signup", {"json": {"email": "a\x00@example.com", "password": "x" * 20}}),
        ("POST", "/auth/refresh", {"json": {"refresh_token": "\x00"}}),
        ("POST", "/auth/refresh", {"json": {"refresh_token": "x" * 5000}}),
        ("GET", "/sessions", {"params": {"limit": "9" * 40}}),
        ("GET", "/sessions/%00", {}),
        ("GET", "/auth/me", {"headers": {"Authorization": "Bearer " + "a" * 4000}}),
        ("GET", "/auth/me", {"headers": {"Authorization": "Bearer e30.e30.e30"}}),
        ("GET", "/auth/me", {"headers": {"Authorization": "Basic Og=="}}),
        ("POST", "/chat", {"json": {"message": "   "}}),
        ("POST", "/chat", {"json": {"message": "hi", "history": [{"role": "system"}]}}),
        ("POST", "/chat", {"json": {"message": "hi", "session_id": "x"}}),
        ("POST", "/chat", {"json": {"message": "hi", "max_tokens": 0}}),
        ("POST", "/chat", {"json": {"message": "hi", "session_id": str(uuid.uuid4())}}),
    ],
)
def test_bad_requests_never_500(
    client: httpx.Client, server: LiveServer, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    """Odd requests get a 4xx JSON error without a stack trace, and change nothing."""
    before = server.counts()
    response = client.request(method, path, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert server.counts() == before


# --- size caps ----------------------------------------------------------------------------


def _oversized_signup() -> dict[str, str]:
    # A valid signup plus padding: if the cap did not apply, an account would be created.
    return {
        "email": f"big-{uuid.uuid4().hex[:8]}@example.com",
        "password": "correct horse battery staple",
        "padding": "x" * (LIMIT_BODY_BYTES + 500),
    }


def test_body_over_cap_by_content_length(limited: LiveServer, upstream: FakeAnthropic) -> None:
    """A body whose Content-Length is over the cap is a 413 and nothing is written."""
    with limited.client() as http:
        account = signup(http)
        before = limited.counts()
        response = http.post("/auth/signup", json=_oversized_signup())
        assert_error(response, 413, "payload_too_large")
        response = http.post(
            "/chat",
            json={"message": "hi", "system": "y" * LIMIT_BODY_BYTES},
            headers=account.headers,
        )
        assert_error(response, 413, "payload_too_large")
    assert limited.counts() == before
    assert upstream.requests == []


def test_chunked_body_over_cap(limited: LiveServer, upstream: FakeAnthropic) -> None:
    """A chunked body (no Content-Length) is cut off at the cap with a 413; nothing is written."""

    def chunks(payload: dict[str, Any]) -> Iterator[bytes]:
        raw = json.dumps(payload).encode()
        for start in range(0, len(raw), 256):
            yield raw[start : start + 256]

    with limited.client() as http:
        account = signup(http)
        before = limited.counts()
        request = http.build_request(
            "POST",
            "/auth/signup",
            content=chunks(_oversized_signup()),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        assert_error(http.send(request), 413, "payload_too_large")

        chat = {"message": "hi", "system": "y" * LIMIT_BODY_BYTES, "stream": False}
        response = http.post(
            "/chat",
            content=chunks(chat),
            headers={"Content-Type": "application/json", **account.headers},
        )
        assert_error(response, 413, "payload_too_large")
    assert limited.counts() == before
    assert upstream.requests == []


def test_small_chunked_body_is_accepted(limited: LiveServer) -> None:
    """A chunked body under the cap goes through: the cap is not a ban on chunked bodies."""
    email = f"chunked-{uuid.uuid4().hex[:8]}@example.com"
    payload = f'{{"email": "{email}", "password": "correct horse battery staple"}}'.encode()

    def chunks() -> Iterator[bytes]:
        yield payload[:10]
        yield payload[10:]

    with limited.client() as http:
        response = http.post(
            "/auth/signup", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("signed_in", [True, False])
def test_message_over_cap(
    limited: LiveServer, upstream: FakeAnthropic, stream: bool, signed_in: bool
) -> None:
    """A message over MAX_MESSAGE_CHARS is a 422 naming `message`; nothing is written or sent."""
    with limited.client() as http:
        headers = signup(http).headers if signed_in else {}
        before = limited.counts()
        response = http.post(
            "/chat",
            json={"message": "x" * (LIMIT_MESSAGE_CHARS + 1), "stream": stream},
            headers=headers,
        )
        assert "message" in assert_error(response, 422, "validation_error")
    assert limited.counts() == before
    assert upstream.requests == []


def test_message_at_cap_is_accepted(limited: LiveServer, upstream: FakeAnthropic) -> None:
    """A message of exactly MAX_MESSAGE_CHARS goes through to the model."""
    with limited.client() as http:
        account = signup(http)
        events = stream_chat(http, {"message": "x" * LIMIT_MESSAGE_CHARS}, account.headers)
    assert events[-1].event == "done", events
    assert len(upstream.requests) == 1


# --- logs ---------------------------------------------------------------------------------


class _Capture(logging.Handler):
    """Keep every record the server emits, formatted as the production formatter does."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []
        # The test's own HTTP client logs the URLs it calls (query strings included); only what
        # the server's threads log matters here.
        self._test_thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._test_thread:
            self.lines.append(self.format(record))


@contextmanager
def _capture_logs() -> Iterator[_Capture]:
    """Capture every record reaching the root logger, at DEBUG, for the block."""
    root = logging.getLogger()
    handler = _Capture()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _wait_for_line(capture: _Capture, *needles: str) -> None:
    """Wait (bounded) until a captured line contains every needle."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(all(n in line for n in needles) for line in list(capture.lines)):
            return
        time.sleep(0.02)
    raise AssertionError(f"no log line with {needles}")


def test_logs_never_contain_secrets(client: httpx.Client, upstream: FakeAnthropic) -> None:
    """Passwords, access and refresh tokens and the Anthropic key never reach a log record."""
    password = f"pw-{uuid.uuid4().hex}"
    with _capture_logs() as capture:
        account = signup(client, password=password)
        login = client.post("/auth/login", json={"email": account.email, "password": password})
        assert login.status_code == 200, login.text
        tokens = login.json()
        refreshed = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        rotated = refreshed.json()
        headers = {"Authorization": f"Bearer {rotated['access_token']}"}

        events = stream_chat(client, {"message": "hello"}, headers)
        assert events[-1].event == "done", events

        upstream.enqueue(HttpError(401, "authentication_error", "invalid x-api-key"))
        events = stream_chat(client, {"message": "again"}, headers)
        assert events[-1].event == "error", events
        assert events[-1].data["error"] == "upstream_auth"

        upstream.enqueue(HttpError(401, "authentication_error", "invalid x-api-key"))
        response = client.post("/chat", json={"message": "json", "stream": False}, headers=headers)
        assert response.json()["error"] == "upstream_auth", response.text

        response = client.get("/auth/me", params={"access_token": account.access_token})
        assert_error(response, 401, "not_authenticated")
        response = client.post("/auth/logout", headers=headers)
        assert response.status_code == 204, response.text
        # Requests on one keep-alive connection are served in turn, so once this one's line is
        # there, every earlier request has been logged.
        assert client.get("/health").status_code == 200
        _wait_for_line(capture, '"path": "/health"')

    # The key really was in use (sent upstream), so its absence from the logs means something.
    assert any(ANTHROPIC_KEY in value for value in upstream.requests[0].headers.values())
    lines = capture.lines
    assert any('"path": "/auth/login"' in line for line in lines)
    assert any("upstream failed" in line and "upstream_auth" in line for line in lines)
    secrets = {"password": password, "anthropic key": ANTHROPIC_KEY}
    for name, token in (
        ("signup access", account.access_token),
        ("signup refresh", account.refresh_token),
        ("login access", tokens["access_token"]),
        ("login refresh", tokens["refresh_token"]),
        ("rotated access", rotated["access_token"]),
        ("rotated refresh", rotated["refresh_token"]),
    ):
        secrets[name] = token
        if token.count(".") == 2:
            # A JWT's signature alone is enough to matter; catch a partial leak too.
            secrets[f"{name} signature"] = token.rsplit(".", 1)[1]
    leaks = {name: line for name, s in secrets.items() for line in lines if s in line}
    assert leaks == {}
