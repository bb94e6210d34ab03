"""Fixtures of the files tests: a server per database and storage kind, with small caps."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import Backend
from tests.s3_server import S3Server
from tests.support import Account, LiveServer, live_server, signup

# Small caps, so every limit is reached with small bodies.
CAPS: dict[str, int] = {
    "max_file_bytes": 64_000,
    "max_image_bytes": 20_000,
    "max_pdf_bytes": 30_000,
    "max_pdf_pages": 5,
    "max_text_file_bytes": 10_000,
    "max_storage_bytes_per_user": 100_000,
}
S3_PREFIX = "zyron-test"


@dataclass
class FilesEnv:
    """A server and a way to see what its storage holds."""

    server: LiveServer
    storage: str  # "local" or "s3"
    s3: S3Server | None = None
    bucket: str | None = None

    def stored(self) -> list[str]:
        """Every object the storage holds, as keys (files/<user>/<file>), leftovers included."""
        if self.s3 is not None and self.bucket is not None:
            names = self.s3.keys(self.bucket)
            assert all(name.startswith(f"{S3_PREFIX}/") for name in names), names
            return sorted(name.removeprefix(f"{S3_PREFIX}/") for name in names)
        root = self.server.settings.data_dir
        return sorted(
            path.relative_to(root).as_posix()
            for path in (root / "files").rglob("*")
            if path.is_file()
        )

    def row_keys(self) -> list[str]:
        """The storage keys of every row of the files table."""
        return sorted(str(row[0]) for row in self.server.query("SELECT storage_key FROM files"))

    def snapshot(self) -> dict[str, Any]:
        """Rows of the tables files touch, and the stored objects."""
        counts = self.server.query(
            "SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM message_files), "
            "(SELECT count(*) FROM messages)"
        )[0]
        return {
            "files": counts[0],
            "message_files": counts[1],
            "messages": counts[2],
            "keys": self.stored(),
        }

    def wait_for_storage(self, predicate: Callable[[list[str]], bool]) -> list[str]:
        """Wait until the stored keys satisfy `predicate` (deletes run after the response)."""
        deadline = time.monotonic() + 10
        while True:
            keys = self.stored()
            if predicate(keys) or time.monotonic() > deadline:
                return keys
            time.sleep(0.02)

    def assert_in_sync(self) -> None:
        """Check that the storage holds exactly the objects of the files rows: no orphans."""
        rows = self.row_keys()
        assert self.wait_for_storage(lambda keys: keys == rows) == rows


@pytest.fixture(scope="session", params=["local", "s3"])
def files_env(
    request: pytest.FixtureRequest, backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FilesEnv]:
    """A server on each database, with files on local disk and in an S3-compatible bucket."""
    overrides: dict[str, Any] = dict(CAPS)
    s3: S3Server | None = None
    bucket = None
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
        bucket = s3.create_bucket()
        overrides.update(s3.settings(bucket, s3_prefix=S3_PREFIX))
    settings = backend.settings(
        tmp_path_factory.mktemp(f"zyron-files-{request.param}"), **overrides
    )
    with live_server(settings) as running:
        yield FilesEnv(running, request.param, s3, bucket)


@pytest.fixture
def files_client(files_env: FilesEnv) -> Iterator[httpx.Client]:
    """An HTTP client for the files server."""
    with files_env.server.client() as http:
        yield http


@pytest.fixture
def account(files_client: httpx.Client) -> Account:
    """A new signed-up user."""
    return signup(files_client)


def upload(
    client: httpx.Client,
    account: Account,
    data: bytes,
    *,
    filename: str = "file.bin",
    content_type: str = "application/octet-stream",
) -> httpx.Response:
    """POST /files with one multipart part named `file`."""
    return client.post(
        "/files", files={"file": (filename, data, content_type)}, headers=account.headers
    )


def upload_raw(
    client: httpx.Client, account: Account, filename: str, data: bytes
) -> httpx.Response:
    """POST /files with a multipart body built by hand: the filename goes as raw UTF-8.

    httpx percent-encodes control characters in filenames; a hostile client would not.
    """
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return client.post(
        "/files",
        content=body,
        headers={**account.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


def uploaded(client: httpx.Client, account: Account, data: bytes, **kwargs: Any) -> dict[str, Any]:
    """Upload and return the FileRead body, checking the 201."""
    response = upload(client, account, data, **kwargs)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def key_of(account: Account, file_id: str) -> str:
    """Return the storage key the server makes for a file: ids only."""
    return f"files/{account.id.hex}/{uuid.UUID(file_id).hex}"


def data_dir(env: FilesEnv) -> Path:
    """Return the server's data directory."""
    return env.server.settings.data_dir
