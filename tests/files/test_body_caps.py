"""Body caps per path: uploads and chat with inline attachments get room, the rest does not."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.sessions.test_sessions_api import assert_error
from tests.support import LiveServer, live_server, make_settings, signup
from zyron.app import INLINE_ALLOWANCE_BYTES, MULTIPART_ALLOWANCE_BYTES, body_caps

BODY = 2048
INLINE = 3000
FILE = 5000
CHAT_CAP = BODY + 4 * math.ceil(INLINE / 3) + INLINE_ALLOWANCE_BYTES
UPLOAD_CAP = FILE + MULTIPART_ALLOWANCE_BYTES


def test_default_caps() -> None:
    """Defaults: uploads MAX_FILE_BYTES plus framing; chat MAX_BODY_BYTES plus base64 room."""
    settings = make_settings(Path("unused"))
    default, caps = body_caps(settings)
    assert default.max_bytes == settings.max_body_bytes == 1_000_000
    assert settings.max_inline_attachment_bytes == 5_000_000
    assert caps["/files"].max_bytes == settings.max_file_bytes + MULTIPART_ALLOWANCE_BYTES
    inline = 4 * math.ceil(5_000_000 / 3)
    for path in ("/chat", "/ui/chat"):
        assert caps[path].max_bytes == 1_000_000 + inline + INLINE_ALLOWANCE_BYTES
    # POST /import: MAX_IMPORT_BYTES plus the same framing (tests/portability test the route).
    assert caps["/import"].max_bytes == settings.max_import_bytes + MULTIPART_ALLOWANCE_BYTES
    assert set(caps) == {"/files", "/import", "/chat", "/ui/chat"}


def test_no_inline_attachments_leaves_chat_at_the_body_cap() -> None:
    """MAX_INLINE_ATTACHMENT_BYTES=0: /chat has MAX_BODY_BYTES like every other route."""
    default, caps = body_caps(make_settings(Path("unused"), max_inline_attachment_bytes=0))
    assert caps["/chat"] == default


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with small caps on bodies, inline attachments and files."""
    settings = make_settings(
        tmp_path_factory.mktemp("zyron-caps"),
        max_body_bytes=BODY,
        max_inline_attachment_bytes=INLINE,
        max_file_bytes=FILE,
    )
    with live_server(settings) as running:
        yield running


def _json_of(size: int) -> bytes:
    """A JSON body of exactly `size` bytes."""
    return b'{"message": "' + b"x" * (size - 15) + b'"}'


def test_each_path_has_its_cap(capped: LiveServer) -> None:
    """Over its own cap each path is a 413 naming the limit; under it, the route decides."""
    headers = {"Content-Type": "application/json"}
    with capped.client() as http:
        account = signup(http)
        auth = {**headers, **account.headers}
        detail = assert_error(
            http.post("/sessions", content=_json_of(BODY + 1), headers=auth),
            413,
            "payload_too_large",
        )
        assert "MAX_BODY_BYTES" in detail
        assert str(BODY) in detail
        # Past MAX_BODY_BYTES but within the inline room: /chat reads it (no provider: 503).
        response = http.post("/chat", content=_json_of(BODY + 1000), headers=auth)
        assert response.status_code != 413, response.text
        for path in ("/chat", "/ui/chat"):
            detail = assert_error(
                http.post(path, content=_json_of(CHAT_CAP + 1), headers=auth),
                413,
                "payload_too_large",
            )
            assert "MAX_INLINE_ATTACHMENT_BYTES" in detail
            assert str(CHAT_CAP) in detail
        # An upload over MAX_FILE_BYTES but inside the framing allowance: the service refuses.
        files = {"file": ("a.txt", b"t" * (FILE + 1), "text/plain")}
        detail = assert_error(
            http.post("/files", files=files, headers=account.headers), 413, "payload_too_large"
        )
        assert "MAX_FILE_BYTES" in detail
        files = {"file": ("a.txt", b"t" * UPLOAD_CAP, "text/plain")}
        detail = assert_error(
            http.post("/files", files=files, headers=account.headers), 413, "payload_too_large"
        )
        assert "multipart" in detail
        assert str(UPLOAD_CAP) in detail
    assert capped.count("files") == 0


def test_a_chunked_upload_is_cut_off_at_its_cap(capped: LiveServer) -> None:
    """Without Content-Length the cap applies as the body streams in."""

    def chunks() -> Iterator[bytes]:
        boundary = b"--b\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
        for _ in range(UPLOAD_CAP // 1000 + 1):
            yield b"t" * 1000
        yield b"\r\n--b--\r\n"

    with capped.client() as http:
        account = signup(http)
        request = http.build_request(
            "POST",
            "/files",
            content=chunks(),
            headers={**account.headers, "Content-Type": "multipart/form-data; boundary=b"},
        )
        assert "content-length" not in request.headers
        response: httpx.Response = http.send(request)
        assert_error(response, 413, "payload_too_large")
    assert capped.count("files") == 0


def test_the_files_routes_are_documented(capped: LiveServer) -> None:
    """OpenAPI lists the four routes, a multipart body, and their errors with ErrorBody."""
    with capped.client() as http:
        schema = http.get("/openapi.json").json()
    ref = "#/components/schemas/ErrorBody"

    def error_ref(method: str, path: str, status: str) -> str:
        response = schema["paths"][path][method]["responses"][status]
        found: str = response["content"]["application/json"]["schema"]["$ref"]
        return found

    upload = schema["paths"]["/files"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    for status in ("401", "413", "415", "503"):
        assert error_ref("post", "/files", status) == ref, status
    assert "storage_quota_exceeded" in upload["responses"]["413"]["description"]
    for method in ("get", "delete"):
        assert error_ref(method, "/files/{file_id}", "404") == ref
        assert error_ref(method, "/files/{file_id}", "401") == ref
    assert error_ref("get", "/files", "401") == ref
