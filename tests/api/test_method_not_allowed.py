"""A 405 names every method the path takes in `Allow` (RFC 9110 §15.5.6), for every route."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.admin.support import make_admin
from tests.support import LiveServer, make_settings
from zyron.app import create_app

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _concrete(template: str) -> str:
    """A path of the template: an id where it takes one."""
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)


def test_every_405_carries_allow_with_all_the_paths_methods(
    server: LiveServer, client: httpx.Client
) -> None:
    """For each documented path, each method it does not take is a 405 listing those it does."""
    document = client.get("/openapi.json").json()
    # The admin routes are a 404 to anyone but an admin (docs/admin.md): asked as one.
    admin = make_admin(server, client).headers
    checked = 0
    for template, operations in document["paths"].items():
        taken = sorted(method.upper() for method in operations)
        headers = admin if template.startswith("/admin/") else {}
        for method in METHODS:
            if method in taken:
                continue
            response = client.request(method, _concrete(template), headers=headers)
            assert response.status_code == 405, (method, template, response.text)
            assert response.headers["allow"] == ", ".join(taken), (method, template)
            body = response.json()
            assert body["error"] == "method_not_allowed"
            assert ", ".join(taken) in body["detail"]
            checked += 1
    assert checked > 50


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/", "GET"),
        ("DELETE", "/web/app.js", "GET, HEAD"),
        ("PUT", "/openapi.json", "GET, HEAD"),
    ],
)
def test_routes_outside_the_document_too(
    client: httpx.Client, method: str, path: str, allow: str
) -> None:
    """The page, its files and the document itself."""
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow


def test_behind_a_root_path(tmp_path: Path) -> None:
    """Served under a prefix (uvicorn --root-path), a 405 still names the path's methods."""
    app = create_app(make_settings(tmp_path))
    client = TestClient(app, root_path="/api")  # no lifespan: a 405 needs no database
    response = client.put("/api/sessions")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert client.delete("/api/web/app.js").headers["allow"] == "GET, HEAD"
