"""The /files routes over real HTTP: SQLite and Postgres, local disk and S3-compatible storage."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.files import samples
from tests.files.conftest import (
    CAPS,
    FilesEnv,
    data_dir,
    key_of,
    upload,
    upload_raw,
    uploaded,
)
from tests.sessions.test_sessions_api import assert_error, assert_utc
from tests.support import Account, signup

FILE_FIELDS = {"id", "filename", "media_type", "size", "created_at"}

# What does not depend on where the bytes go runs on local storage only (both databases);
# storing, reading, deleting and the refusals that could leave an object run on S3 too.
local_only = pytest.mark.parametrize("files_env", ["local"], indirect=True)


@pytest.mark.parametrize(
    ("data", "filename", "declared", "media_type"),
    [
        (samples.png(), "pixel.png", "image/png", "image/png"),
        (samples.jpeg(), "photo.jpg", "image/jpeg", "image/jpeg"),
        (samples.gif(), "anim.gif", "image/gif", "image/gif"),
        (samples.webp_lossless(), "pic.webp", "application/octet-stream", "image/webp"),
        (samples.pdf(2), "report.pdf", "application/pdf", "application/pdf"),
        ("héllo\n".encode(), "notes.txt", "text/plain", "text/plain"),
        (b"# Title\n", "readme.md", "application/octet-stream", "text/markdown"),
        (b"a,b\n1,2\n", "table.csv", "text/csv", "text/csv"),
        (b'{"a": 1}', "data.json", "application/json", "application/json"),
    ],
    ids=["png", "jpeg", "gif", "webp", "pdf", "text", "markdown", "csv", "json"],
)
def test_upload_then_download(
    files_env: FilesEnv,
    files_client: httpx.Client,
    account: Account,
    data: bytes,
    filename: str,
    declared: str,
    media_type: str,
) -> None:
    """An upload is a 201 FileRead; the download is the same bytes, type and name."""
    body = uploaded(files_client, account, data, filename=filename, content_type=declared)
    assert set(body) == FILE_FIELDS
    assert body["filename"] == filename
    assert body["media_type"] == media_type
    assert body["size"] == len(data)
    assert_utc(body["created_at"])
    assert key_of(account, body["id"]) in files_env.stored()

    response = files_client.get(f"/files/{body['id']}", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.content == data
    assert response.headers["content-type"].split(";")[0] == media_type
    assert response.headers["x-content-type-options"] == "nosniff"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert f"filename*=UTF-8''{quote(filename)}" in disposition
    files_env.assert_in_sync()


@local_only
def test_download_names_a_unicode_file_safely(files_client: httpx.Client, account: Account) -> None:
    """A name with a semicolon and non-ASCII has an ASCII fallback and the exact RFC 5987 form."""
    name = "résumé; final.txt"
    body = uploaded(files_client, account, b"cv\n", filename=name, content_type="text/plain")
    assert body["filename"] == name
    disposition = files_client.get(f"/files/{body['id']}", headers=account.headers).headers[
        "content-disposition"
    ]
    assert disposition == (
        'attachment; filename="r_sum__ final.txt"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%3B%20final.txt"
    )


@local_only
def test_list_is_newest_first_and_pages_back(
    files_env: FilesEnv, files_client: httpx.Client, account: Account
) -> None:
    """GET /files lists only the caller's files, newest first; `before` pages back."""
    other = signup(files_client)
    uploaded(files_client, other, b"not yours\n", filename="other.txt")
    ids = [uploaded(files_client, account, f"file {i}\n".encode())["id"] for i in range(3)]

    def listed(**params: Any) -> list[str]:
        response = files_client.get("/files", params=params, headers=account.headers)
        assert response.status_code == 200, response.text
        assert all(set(item) == FILE_FIELDS for item in response.json())
        return [item["id"] for item in response.json()]

    newest_first = list(reversed(ids))
    assert listed() == newest_first
    assert listed(limit=2) == newest_first[:2]
    assert listed(limit=2, before=newest_first[1]) == newest_first[2:]
    assert listed(before=newest_first[2]) == []

    cap = files_env.server.settings.max_files_page
    detail = assert_error(
        files_client.get("/files", params={"limit": cap + 1}, headers=account.headers),
        422,
        "validation_error",
    )
    assert str(cap) in detail
    assert listed(limit=cap) == newest_first
    # Someone else's file as the anchor is as unknown as a made-up id.
    theirs = uploaded(files_client, other, b"x\n")["id"]
    for anchor in (theirs, str(uuid.uuid4())):
        response = files_client.get("/files", params={"before": anchor}, headers=account.headers)
        assert_error(response, 404, "not_found")


def test_delete_removes_row_and_bytes(
    files_env: FilesEnv, files_client: httpx.Client, account: Account
) -> None:
    """DELETE is a 204; then the file is a 404, its row and its object are gone."""
    kept = uploaded(files_client, account, samples.png())
    gone = uploaded(files_client, account, samples.gif())
    response = files_client.delete(f"/files/{gone['id']}", headers=account.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_error(
        files_client.get(f"/files/{gone['id']}", headers=account.headers), 404, "not_found"
    )
    assert_error(
        files_client.delete(f"/files/{gone['id']}", headers=account.headers), 404, "not_found"
    )
    keys = files_env.wait_for_storage(lambda keys: key_of(account, gone["id"]) not in keys)
    assert key_of(account, gone["id"]) not in keys
    assert key_of(account, kept["id"]) in keys
    files_env.assert_in_sync()


# --- refusals: each one changes nothing ----------------------------------------------------


def refused(env: FilesEnv, act: Callable[[], httpx.Response], status: int, code: str) -> str:
    """Check that a request is refused with the error shape and leaves nothing behind."""
    before = env.snapshot()
    detail = assert_error(act(), status, code)
    assert env.snapshot() == before
    env.assert_in_sync()
    return detail


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (samples.pdf(), "image/png"),
        (samples.png(), "application/pdf"),
        (samples.jpeg(), "image/png"),
        (b"just text\n", "image/png"),
    ],
    ids=["pdf-as-png", "png-as-pdf", "jpeg-as-png", "text-as-png"],
)
def test_bytes_that_contradict_the_declared_type(
    files_env: FilesEnv, files_client: httpx.Client, account: Account, data: bytes, declared: str
) -> None:
    """A declared type the bytes contradict is a 415."""
    detail = refused(
        files_env,
        lambda: upload(files_client, account, data, content_type=declared),
        415,
        "unsupported_media_type",
    )
    assert declared in detail


@local_only
@pytest.mark.parametrize(
    "data",
    [samples.ZIP, samples.EXE, samples.INVALID_UTF8, b"text\x00nul"],
    ids=["zip", "exe", "invalid-utf8", "nul"],
)
def test_unsupported_bytes(
    files_env: FilesEnv, files_client: httpx.Client, account: Account, data: bytes
) -> None:
    """A ZIP, an EXE, invalid UTF-8 or NUL bytes are a 415, even named .txt."""
    refused(
        files_env,
        lambda: upload(files_client, account, data, filename="a.txt", content_type="text/plain"),
        415,
        "unsupported_media_type",
    )


@local_only
@pytest.mark.parametrize(
    ("data", "setting"),
    [
        (samples.png() + b"\x00" * CAPS["max_image_bytes"], "MAX_IMAGE_BYTES"),
        (samples.pdf() + b"%" * CAPS["max_pdf_bytes"], "MAX_PDF_BYTES"),
        (b"t" * (CAPS["max_text_file_bytes"] + 1), "MAX_TEXT_FILE_BYTES"),
        (samples.pdf(CAPS["max_pdf_pages"] + 1), "MAX_PDF_PAGES"),
        (samples.pdf() + b"%" * CAPS["max_file_bytes"], "MAX_FILE_BYTES"),
    ],
    ids=["image", "pdf", "text", "pdf-pages", "any-file"],
)
def test_over_a_size_cap(
    files_env: FilesEnv, files_client: httpx.Client, account: Account, data: bytes, setting: str
) -> None:
    """A file over its kind's cap, or over MAX_FILE_BYTES, is a 413 naming the setting."""
    detail = refused(
        files_env, lambda: upload(files_client, account, data), 413, "payload_too_large"
    )
    assert setting in detail


@local_only
def test_body_over_the_upload_cap_is_cut_off(
    files_env: FilesEnv, files_client: httpx.Client, account: Account
) -> None:
    """A body past MAX_FILE_BYTES plus the multipart allowance is refused before it is read."""
    data = b"t" * (CAPS["max_file_bytes"] + 100_000)
    detail = refused(
        files_env, lambda: upload(files_client, account, data), 413, "payload_too_large"
    )
    assert "MAX_FILE_BYTES" in detail


def test_storage_quota(files_env: FilesEnv, files_client: httpx.Client, account: Account) -> None:
    """An upload past MAX_STORAGE_BYTES_PER_USER is a 413; deleting a file makes room."""
    chunk = samples.pdf() + b"%" * 25_000  # under MAX_PDF_BYTES, four fill the quota
    ids: list[str] = []
    while (len(ids) + 1) * len(chunk) <= CAPS["max_storage_bytes_per_user"]:
        ids.append(uploaded(files_client, account, chunk)["id"])
    detail = refused(
        files_env, lambda: upload(files_client, account, chunk), 413, "storage_quota_exceeded"
    )
    assert "MAX_STORAGE_BYTES_PER_USER" in detail
    # Someone else's quota is their own.
    uploaded(files_client, signup(files_client), chunk)
    assert files_client.delete(f"/files/{ids[0]}", headers=account.headers).status_code == 204
    uploaded(files_client, account, chunk)
    files_env.assert_in_sync()


@local_only
def test_empty_file(files_env: FilesEnv, files_client: httpx.Client, account: Account) -> None:
    """An empty file is a 422 that says so."""
    detail = refused(files_env, lambda: upload(files_client, account, b""), 422, "validation_error")
    assert "empty" in detail


@local_only
def test_missing_file_field(
    files_env: FilesEnv, files_client: httpx.Client, account: Account
) -> None:
    """A multipart body without a `file` part is a 422 naming the field."""
    detail = refused(
        files_env,
        lambda: files_client.post(
            "/files",
            files={"attachment": ("a.txt", b"hi\n", "text/plain")},
            headers=account.headers,
        ),
        422,
        "validation_error",
    )
    assert "file" in detail


@local_only
def test_a_body_that_is_not_multipart(
    files_env: FilesEnv, files_client: httpx.Client, account: Account
) -> None:
    """A JSON or raw body is a 415 that says to send multipart/form-data."""
    for kwargs in (
        {"json": {"file": "aGk="}},
        {"content": samples.png(), "headers": {"Content-Type": "image/png"}},
    ):
        headers = {**account.headers, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        detail = refused(
            files_env,
            lambda: files_client.post("/files", headers=headers, **kwargs),  # noqa: B023
            415,
            "unsupported_media_type",
        )
        assert "multipart/form-data" in detail


def test_someone_elses_file_is_not_found(
    files_env: FilesEnv, files_client: httpx.Client, account: Account
) -> None:
    """Another user's id, or a made-up one, is a 404 on GET and DELETE; the file stays."""
    theirs = uploaded(files_client, signup(files_client), samples.png())
    for file_id in (theirs["id"], str(uuid.uuid4())):
        refused(
            files_env,
            lambda: files_client.get(f"/files/{file_id}", headers=account.headers),  # noqa: B023
            404,
            "not_found",
        )
        refused(
            files_env,
            lambda: files_client.delete(f"/files/{file_id}", headers=account.headers),  # noqa: B023
            404,
            "not_found",
        )


@local_only
def test_guests_are_refused(files_client: httpx.Client, account: Account) -> None:
    """Without a token every /files route is a 401."""
    mine = uploaded(files_client, account, b"x\n")
    for method, path in (
        ("POST", "/files"),
        ("GET", "/files"),
        ("GET", f"/files/{mine['id']}"),
        ("DELETE", f"/files/{mine['id']}"),
    ):
        kwargs: dict[str, Any] = {"files": {"file": ("a.txt", b"hi")}} if method == "POST" else {}
        assert_error(files_client.request(method, path, **kwargs), 401, "not_authenticated")
    assert files_client.get(f"/files/{mine['id']}", headers=account.headers).status_code == 200


@local_only
@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\y.png", "y.png"),
        ("/absolute/path/z.txt", "z.txt"),
        ("..", "file"),
        ("\x07\x08", "file"),
        ("bad\x00na\x1bme\u202egpj.txt", "badnamegpj.txt"),
        ("..\\..\\\x7f/evil", "evil"),
        ("n" * 300 + ".txt", "n" * 255),
    ],
    ids=[
        "dotdot",
        "windows",
        "absolute",
        "only-dots",
        "only-controls",
        "controls",
        "mixed",
        "long",
    ],
)
def test_a_filename_is_display_text_only(
    files_env: FilesEnv, files_client: httpx.Client, account: Account, sent: str, shown: str
) -> None:
    """A path-like name is cut to its last part; the key is made of ids alone."""
    response = upload_raw(files_client, account, sent, b"passwd-like\n")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["filename"] == shown
    stored = files_env.server.query(
        "SELECT filename, storage_key FROM files WHERE id = :id",
        id=files_env.server.id(body["id"]),
    )
    assert stored == [(shown, key_of(account, body["id"]))]
    root = data_dir(files_env)
    # Nothing was written outside the storage directory, whatever the name said.
    assert not (root.parent / "etc").exists()
    assert not list(root.parent.glob("**/passwd"))
    assert all(path.startswith("files/") for path in files_env.stored())


def _refuse_rows_named(env: FilesEnv, filename: str, event: str = "INSERT") -> list[str]:
    """Make the database refuse to INSERT or DELETE a files row of that name: at COMMIT on
    Postgres, at once on SQLite (which has no deferred triggers). Return the SQL undoing it."""
    row = "NEW" if event == "INSERT" else "OLD"
    if env.server.dialect == "postgresql":
        env.server.query(
            "CREATE OR REPLACE FUNCTION refuse_file() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN IF {row}.filename = '{filename}' THEN RAISE EXCEPTION 'refused'; END IF; "
            f"RETURN {row}; END $$"
        )
        env.server.query(
            f"CREATE CONSTRAINT TRIGGER refuse_file AFTER {event} ON files "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_file()"
        )
        return ["DROP TRIGGER refuse_file ON files", "DROP FUNCTION refuse_file()"]
    env.server.query(
        f"CREATE TRIGGER refuse_file BEFORE {event} ON files WHEN {row}.filename = '{filename}' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    return ["DROP TRIGGER refuse_file"]


def test_a_row_the_database_refuses_leaves_no_object(
    files_env: FilesEnv, files_client: httpx.Client, account: Account
) -> None:
    """Stored first; when the row is refused (on Postgres at COMMIT), the object goes too."""
    undo = _refuse_rows_named(files_env, "refused.png")
    try:
        before = files_env.snapshot()
        response = upload(files_client, account, samples.png(), filename="refused.png")
        assert_error(response, 500, "internal_error")
        files_env.assert_in_sync()
        assert files_env.snapshot() == before
        uploaded(files_client, account, samples.png(), filename="accepted.png")
    finally:
        for sql in undo:
            files_env.server.query(sql)
    files_env.assert_in_sync()


def test_a_deletion_the_database_refuses_keeps_the_bytes(
    files_env: FilesEnv, files_client: httpx.Client, account: Account
) -> None:
    """The object is deleted only once the row's deletion commits: a refused one keeps both."""
    kept = uploaded(files_client, account, samples.gif(), filename="undeletable.gif")
    undo = _refuse_rows_named(files_env, "undeletable.gif", "DELETE")
    try:
        response = files_client.delete(f"/files/{kept['id']}", headers=account.headers)
        assert_error(response, 500, "internal_error")
    finally:
        for sql in undo:
            files_env.server.query(sql)
    files_env.assert_in_sync()
    response = files_client.get(f"/files/{kept['id']}", headers=account.headers)
    assert response.content == samples.gif()
