"""Logs of the file routes carry ids, types and sizes: never contents, keys, names or secrets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.files.conftest import key_of, upload, uploaded
from tests.s3_server import S3Server
from tests.support import live_server, make_settings, signup
from zyron.logging import JsonFormatter


def test_logs_hold_no_contents_keys_filenames_or_secrets(
    s3_server: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Start on S3, upload, refuse, download and delete: the log lines name none of it."""
    secret_content = b"the-launch-code-is-0000\n"
    filename = "private-plans.txt"
    settings = make_settings(tmp_path, **s3_server.settings(s3_server.create_bucket()))
    with (
        caplog.at_level(logging.DEBUG, logger="zyron"),
        live_server(settings) as server,
        server.client() as http,
    ):
        account = signup(http)
        body = uploaded(http, account, secret_content, filename=filename)
        assert upload(http, account, b"\x00" + secret_content).status_code == 415
        assert http.get(f"/files/{body['id']}", headers=account.headers).status_code == 200
        assert http.delete(f"/files/{body['id']}", headers=account.headers).status_code == 204
    lines = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "file uploaded" in lines
    assert "file deleted" in lines
    assert body["id"] in lines  # ids are what the logs go by
    for never in (
        secret_content.decode().strip(),
        filename,
        key_of(account, body["id"]),
        s3_server.secret_key,
        account.access_token,
    ):
        assert never not in lines, never
