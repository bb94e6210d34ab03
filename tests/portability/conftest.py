"""Fixtures of the export and import tests: a server per database, with small import caps."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.files.conftest import CAPS
from tests.support import Account, LiveServer, signup

# Small, so each cap is reached with small files.
IMPORT_CAPS: dict[str, Any] = {
    **CAPS,
    "max_import_bytes": 120_000,
    "max_import_unpacked_bytes": 300_000,
    "max_import_sessions": 5,
    "max_import_messages": 200,
    "max_message_chars": 5_000,
}


@dataclass
class Env:
    """A server and what its database and storage hold."""

    server: LiveServer

    def stored(self) -> list[str]:
        """Every object of the local storage, as keys."""
        root = self.server.settings.data_dir
        return sorted(
            path.relative_to(root).as_posix()
            for path in (root / "files").rglob("*")
            if path.is_file()
        )

    def snapshot(self) -> dict[str, Any]:
        """Rows of every table an import writes, and the stored objects."""
        counts = self.server.query(
            "SELECT (SELECT count(*) FROM chat_sessions), (SELECT count(*) FROM messages), "
            "(SELECT count(*) FROM files), (SELECT count(*) FROM message_files), "
            "(SELECT count(*) FROM usage_daily)"
        )[0]
        names = ("sessions", "messages", "files", "message_files", "usage_daily")
        return {**dict(zip(names, counts, strict=True)), "keys": self.stored()}


@pytest.fixture(scope="module")
def env(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    """A server on each database, its Claude models the fake upstream, files on local disk."""
    with backend.claude_server(
        tmp_path_factory.mktemp("zyron-portability"), fake_anthropic, **IMPORT_CAPS
    ) as running:
        yield Env(running)


@pytest.fixture
def http(env: Env, upstream: FakeAnthropic) -> Iterator[httpx.Client]:
    """An HTTP client for the server; the upstream starts each test clean."""
    with env.server.client() as client:
        yield client


@pytest.fixture
def alice(http: httpx.Client) -> Account:
    """A new signed-up user."""
    return signup(http)


@pytest.fixture
def bob(http: httpx.Client) -> Account:
    """Another new signed-up user."""
    return signup(http)


def import_file(
    http: httpx.Client, account: Account, data: bytes, filename: str = "import.json"
) -> httpx.Response:
    """POST /import with the file as the multipart part `file`."""
    return http.post(
        "/import",
        files={"file": (filename, data, "application/octet-stream")},
        headers=account.headers,
    )


def imported(http: httpx.Client, account: Account, data: bytes, **kwargs: Any) -> dict[str, Any]:
    """Import and return the summary, checking the 200."""
    response = import_file(http, account, data, **kwargs)
    assert response.status_code == 200, response.text
    summary: dict[str, Any] = response.json()
    return summary


def as_json(value: Any) -> bytes:
    """A document as the bytes of a .json file."""
    return orjson.dumps(value)


def zipped(entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of the entries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def sessions(http: httpx.Client, account: Account) -> list[dict[str, Any]]:
    """The account's sessions, oldest first."""
    response = http.get("/sessions", headers=account.headers)
    assert response.status_code == 200, response.text
    return sorted(response.json(), key=lambda s: (s["created_at"], s["id"]))


def tree(http: httpx.Client, account: Account, session_id: str) -> list[dict[str, Any]]:
    """Every message of a session, all branches, oldest first."""
    response = http.get(
        f"/sessions/{session_id}/messages",
        params={"tree": "true", "limit": 1000},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    page: list[dict[str, Any]] = response.json()
    return page


def active(http: httpx.Client, account: Account, session_id: str) -> list[dict[str, Any]]:
    """The active branch of a session."""
    response = http.get(
        f"/sessions/{session_id}/messages", params={"limit": 1000}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    page: list[dict[str, Any]] = response.json()
    return page
