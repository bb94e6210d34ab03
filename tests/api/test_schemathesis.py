"""Schemathesis against a live server: every operation, every check, signed in and as a guest.

The configuration is schemathesis.toml at the root of the repository; its hooks are in
tests/api/schemathesis_hooks.py. The real CLI runs, as a user or CI would run it, against the
server's own /openapi.json, and its report is printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.support import (
    PASSWORD,
    Account,
    LiveServer,
    live_server,
    make_settings,
    signup,
    stream_chat,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHAT_ID = "schemathesis-chat"  # the id a front end gave a /ui/chat chat
# A run takes 20 to 30 s on 2 cores; far more means something hangs.
RUN_TIMEOUT = 240


@dataclass
class Target:
    """The server under test and the environment both runs read."""

    server: LiveServer
    env: dict[str, str]
    auth_file: Path


def _chat(http: httpx.Client, account: Account) -> tuple[str, str]:
    """Chat once, as `account`; return the session's id and the reply's."""
    events = stream_chat(http, {"message": "Hello"}, account.headers)
    started = events[0].data
    assert events[0].event == "session", events
    assert events[-1].event == "done", events
    return started["session_id"], started["assistant_message_id"]


def _upload(http: httpx.Client, account: Account) -> str:
    """Upload a small text file as `account`; return its id."""
    files = {"file": ("notes.txt", b"Some notes.\n", "text/plain")}
    response = http.post("/files", files=files, headers=account.headers)
    assert response.status_code == 201, response.text
    file_id: str = response.json()["id"]
    return file_id


def _share(http: httpx.Client, account: Account) -> tuple[str, str, str, str]:
    """Share a conversation with a file as `account`; return the share's id and token, its
    session's id and the file's."""
    file_id = _upload(http, account)
    body = {"message": "Hello", "attachments": [file_id], "stream": False}
    chat = http.post("/chat", json=body, headers=account.headers)
    assert chat.status_code == 200, chat.text
    session_id: str = chat.json()["session_id"]
    share = http.post(f"/sessions/{session_id}/shares", headers=account.headers)
    assert share.status_code == 201, share.text
    created = share.json()
    return created["id"], created["token"], session_id, file_id


def _ui_chat(http: httpx.Client, account: Account) -> str:
    """Start the /ui/chat chat CHAT_ID as `account`; return its session's id."""
    message = {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "Hello"}]}
    body = {"id": CHAT_ID, "messages": [message]}
    response = http.post("/ui/chat", json=body, headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.text.rstrip().endswith("data: [DONE]"), response.text
    start = json.loads(response.text.split("\n", 1)[0].removeprefix("data: "))
    session_id: str = start["messageMetadata"]["sessionId"]
    return session_id


@pytest.fixture(scope="module")
def target(
    fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """A server on SQLite with the fake upstream, an owner with data, a peer, a throwaway."""
    fake_anthropic.reset()
    folder = tmp_path_factory.mktemp("schemathesis")
    settings = make_settings(
        folder / "data",
        anthropic_api_key="sk-ant-test-key-never-logged",
        anthropic_base_url=fake_anthropic.base_url,
    )
    with live_server(settings) as server, server.client() as http:
        owner, peer, throwaway = signup(http), signup(http), signup(http)
        # The admin routes go as an admin of their own, on a target of their own.
        admin, target = signup(http), signup(http)
        server.query("UPDATE users SET role = 'admin' WHERE id = :id", id=server.id(admin.id))
        session_id, message_id = _chat(http, owner)
        file_id = _upload(http, owner)
        ui_session_id = _ui_chat(http, owner)
        share_id, share_token, shared_session_id, shared_file_id = _share(http, owner)
        # The peer has objects of their own, so lists differ by who asks.
        _chat(http, peer)
        _upload(http, peer)
        _ui_chat(http, peer)
        auth_file = folder / "auth.json"
        users = [
            {"name": name, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {token}"}]}
            for name, token in (("owner", owner.access_token), ("peer", peer.access_token))
        ]
        auth_file.write_text(json.dumps({"auth": users}), encoding="utf-8")
        env = {
            "ZYRON_ST_BASE_URL": server.url,
            "ZYRON_ST_SESSION_ID": session_id,
            "ZYRON_ST_MESSAGE_ID": message_id,
            "ZYRON_ST_CHAT_ID": CHAT_ID,
            "ZYRON_ST_KEEP": ",".join(
                (session_id, ui_session_id, file_id, share_id, shared_session_id, shared_file_id)
            ),
            "ZYRON_ST_SHARE_ID": share_id,
            "ZYRON_ST_SHARE_TOKEN": share_token,
            "ZYRON_ST_SHARED_FILE_ID": shared_file_id,
            "ZYRON_ST_THROWAWAY_EMAIL": throwaway.email,
            "ZYRON_ST_THROWAWAY_PASSWORD": PASSWORD,
            "ZYRON_ST_REFRESH_TOKEN": throwaway.refresh_token,
            "ZYRON_ST_ADMIN_TOKEN": admin.access_token,
            "ZYRON_ST_ADMIN_TARGET_ID": str(target.id),
            "ZYRON_ST_KEEP_USERS": ",".join(str(a.id) for a in (owner, peer, throwaway, admin)),
        }
        yield Target(server, env, auth_file)


def run_schemathesis(
    target: Target, *, signed_in: bool, reports: Path
) -> subprocess.CompletedProcess[str]:
    """Run `schemathesis run` on the server's schema from the root, where its config is."""
    env = {
        **os.environ,
        **target.env,
        "NO_COLOR": "1",
        "COLUMNS": "120",
        # Hypothesis keeps its caches there, not in the repository.
        "HYPOTHESIS_STORAGE_DIRECTORY": str(reports / "hypothesis"),
    }
    env.pop("ZYRON_ST_AUTH", None)
    if signed_in:
        env["ZYRON_ST_AUTH"] = str(target.auth_file)
    # To a guest the admin routes are paths that do not exist: checked apart (admin_404s).
    excluded = [] if signed_in else ["--exclude-path-regex", "^/admin/"]
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{target.server.url}/openapi.json",
        # Every check: schemathesis.toml's `[checks]` (with `max_response_time`), not
        # `--checks all`, which would override the checks it turns off for the admin routes
        # (a 404, not a 401).
        "--report",
        "har",
        "--report-har-path",
        str(reports / "run.har"),
        *excluded,
    ]
    return subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def statuses_by_operation(target: Target, har: Path) -> dict[str, Counter[int]]:
    """Count the statuses each operation of the document answered in a run's HAR file."""
    document = httpx.get(f"{target.server.url}/openapi.json").json()
    routes = [
        (
            method.upper(),
            re.compile(re.sub(r"\{[^/}]+\}", "[^/]+", path) + "$"),
            f"{method.upper()} {path}",
        )
        for path, operations in document["paths"].items()
        for method in operations
    ]
    seen: dict[str, Counter[int]] = {label: Counter() for _, _, label in routes}
    for entry in json.loads(har.read_text(encoding="utf-8"))["log"]["entries"]:
        method = entry["request"]["method"]
        path = urlsplit(entry["request"]["url"]).path
        for route_method, pattern, label in routes:
            if method == route_method and pattern.match(path):
                seen[label][entry["response"]["status"]] += 1
                break
    return seen


def admin_404s(target: Target) -> dict[str, tuple[int, str]]:
    """Send every admin operation of the document as a guest and as a user (the peer, and the
    owner); return those that answered anything but an unknown path's 404."""
    document = httpx.get(f"{target.server.url}/openapi.json").json()
    users = json.loads(target.auth_file.read_text(encoding="utf-8"))["auth"]
    callers = [{}] + [{h["name"]: h["value"] for h in user["fixedHeaders"]} for user in users]
    told: dict[str, tuple[int, str]] = {}
    with target.server.client() as http:
        for headers in callers:
            unknown = http.get("/admin/no-such-path", headers=headers)
            for path, operations in document["paths"].items():
                if not path.startswith("/admin/"):
                    continue
                url = re.sub(r"\{[^/}]+\}", "00000000-0000-4000-8000-000000000000", path)
                for method in (*operations, "put"):
                    answer = http.request(method.upper(), url, json={}, headers=headers)
                    if (answer.status_code, answer.content) != (404, unknown.content):
                        told[f"{method.upper()} {path}"] = (answer.status_code, answer.text)
    return told


@pytest.mark.timeout(RUN_TIMEOUT + 60)
@pytest.mark.parametrize("signed_in", [True, False], ids=["signed-in", "guest"])
def test_schemathesis_finds_no_failure(target: Target, signed_in: bool, tmp_path: Path) -> None:
    """Every operation, every check: schemathesis reports no failure and no warning it fails on.

    And every operation was reached: signed in, each answered a success at least once (the
    admin routes as an admin); as a guest, each answered something else than 404 (401 where
    an account is required), but the admin routes, which answer a guest 404 and only that.
    """
    result = run_schemathesis(target, signed_in=signed_in, reports=tmp_path)
    print(result.stdout + result.stderr)
    seen = statuses_by_operation(target, tmp_path / "run.har")
    print("Statuses each operation answered:")
    print("\n".join(f"{label}: {dict(sorted(counts.items()))}" for label, counts in seen.items()))
    if signed_in:
        unreached = [
            label for label, counts in seen.items() if not any(200 <= s < 300 for s in counts)
        ]
    else:
        unreached = [
            label
            for label, counts in seen.items()
            if not label.split(" ", 1)[1].startswith("/admin/") and not set(counts) - {404}
        ]
        assert admin_404s(target) == {}, "admin routes told a non-admin they exist"
    exit_code = result.returncode
    assert exit_code == 0, f"schemathesis exited {exit_code}: its report is above"
    assert not unreached, f"operations never reached: {unreached}"
