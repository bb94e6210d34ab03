"""Every refusal of POST /import: a JSON 422 or 413 naming what is wrong, and nothing changed."""

from __future__ import annotations

import copy
import hashlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.portability.conftest import IMPORT_CAPS, Env, as_json, import_file, zipped
from tests.portability.samples import chatgpt_conversation, claude_export
from tests.support import Account

AT = "2026-01-01T00:00:00Z"


def _message(
    message_id: str, parent: str | None, role: str = "user", **extra: Any
) -> dict[str, Any]:
    return {
        "id": message_id,
        "parent_id": parent,
        "role": role,
        "content": "Hi",
        "parts": [{"type": "text", "text": "Hi"}],
        "status": "complete",
        "created_at": AT,
        **extra,
    }


def zyron_document(
    *sessions: list[dict[str, Any]], files: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A v1 export by hand: one session per list of messages."""
    return {
        "format": "zyron.export",
        "version": 1,
        "scope": "account",
        "exported_at": AT,
        "user": {"id": str(uuid.uuid4()), "email": None, "display_name": None, "created_at": AT},
        "sessions": [
            {
                "id": str(uuid.uuid4()),
                "title": f"Session {index}",
                "created_at": AT,
                "updated_at": AT,
                "messages": messages,
            }
            for index, messages in enumerate(sessions)
        ],
        "files": files or [],
        "usage": [],
    }


def _file_entry(
    data: bytes, *, name: str = "notes.txt", sha: str | None = None
) -> tuple[dict[str, Any], str]:
    file_id = str(uuid.uuid4())
    entry = {
        "id": file_id,
        "filename": name,
        "media_type": "text/plain",
        "size": len(data),
        "sha256": sha or hashlib.sha256(data).hexdigest(),
        "created_at": AT,
        "path": f"files/{file_id}",
    }
    return entry, file_id


def _with_file(data: bytes, **kwargs: Any) -> bytes:
    """A zip export of one session whose question attaches the file; a second, broken session
    when `broken` (so the refusal comes after a valid session and a valid file)."""
    broken = kwargs.pop("broken", False)
    entry, file_id = _file_entry(data, **kwargs)
    part = {
        "type": "file",
        "file_id": file_id,
        "media_type": "text/plain",
        "filename": entry["filename"],
        "size": len(data),
    }
    q = str(uuid.uuid4())
    sessions = [[_message(q, None, parts=[part, {"type": "text", "text": "Hi"}])]]
    if broken:
        sessions.append([_message(str(uuid.uuid4()), str(uuid.uuid4()))])
    document = zyron_document(*sessions, files=[entry])
    return zipped({"zyron-export.json": as_json(document), f"files/{file_id}": data})


def _chatgpt_without_author() -> list[dict[str, Any]]:
    conversation = chatgpt_conversation()
    del conversation["mapping"]["u2"]["message"]["author"]
    return [conversation]


def _chatgpt_with_role(role: str) -> list[dict[str, Any]]:
    conversation = chatgpt_conversation()
    conversation["mapping"]["u2"]["message"]["author"]["role"] = role
    return [conversation]


def _claude_without(field: str) -> list[dict[str, Any]]:
    conversations = copy.deepcopy(claude_export())
    del conversations[1]["chat_messages"][1][field]
    return conversations


def _claude_sender(sender: str) -> list[dict[str, Any]]:
    conversations = copy.deepcopy(claude_export())
    conversations[0]["chat_messages"][0]["sender"] = sender
    return conversations


def _long_question() -> list[dict[str, Any]]:
    conversations = copy.deepcopy(claude_export())
    conversations[1]["chat_messages"][0]["content"] = [{"type": "text", "text": "x" * 5_001}]
    return conversations


def _cycle() -> list[dict[str, Any]]:
    conversations = copy.deepcopy(claude_export())
    messages = conversations[0]["chat_messages"]
    messages[0]["parent_message_uuid"] = "m2"  # m1 -> m2 -> m1
    return conversations


def _bomb() -> bytes:
    # 400 kB of spaces around an empty list: a few hundred bytes zipped, past the 300 kB budget.
    return zipped({"conversations.json": b"[" + b" " * 400_000 + b"]"})


CASES: list[tuple[str, bytes, int, str, str]] = [
    ("empty", b"", 422, "invalid_import", "file: the file is empty"),
    ("not JSON", b"hello, world", 422, "invalid_import", "neither a zip nor valid UTF-8 JSON"),
    ("not UTF-8", b"\xff\xfe[]", 422, "invalid_import", "neither a zip nor valid UTF-8 JSON"),
    ("a number", b"42", 422, "invalid_import", "expected a JSON object or a list"),
    ("an empty list", b"[]", 422, "invalid_import", "the list holds no conversations"),
    ("unknown object", b'{"hello": 1}', 422, "invalid_import", "neither a Zyron export"),
    (
        "list of numbers",
        b"[1, 2]",
        422,
        "invalid_import",
        "[0]: a conversation must be a JSON object",
    ),
    (
        "unknown list",
        b'[{"messages": []}]',
        422,
        "invalid_import",
        "neither a ChatGPT conversation",
    ),
    (
        "other format",
        b'{"format": "other", "version": 1}',
        422,
        "invalid_import",
        "format: expected 'zyron.export'",
    ),
    (
        "wrong version",
        as_json({**zyron_document(), "version": 2}),
        422,
        "invalid_import",
        "version: 2 is not a version this server reads (it reads version 1)",
    ),
    (
        "zyron field",
        as_json(zyron_document([_message(str(uuid.uuid4()), None, role="system")])),
        422,
        "invalid_import",
        "file.sessions[0].messages[0].role: Input should be 'user' or 'assistant'",
    ),
    (
        "zyron naive time",
        as_json(
            zyron_document([_message(str(uuid.uuid4()), None, created_at="2026-01-01T00:00:00")])
        ),
        422,
        "invalid_import",
        "file.sessions[0].messages[0].created_at: Input should have timezone info",
    ),
    (
        "zyron tokens past the column",
        as_json(zyron_document([_message(str(uuid.uuid4()), None, usage={"input_tokens": 2**40})])),
        422,
        "invalid_import",
        "file.sessions[0].messages[0].usage.input_tokens: Input should be less than or equal to",
    ),
    (
        "chatgpt field",
        as_json(_chatgpt_without_author()),
        422,
        "invalid_import",
        "file[0].mapping.u2.message.author: Field required",
    ),
    (
        "chatgpt role",
        as_json(_chatgpt_with_role("critic")),
        422,
        "invalid_import",
        "file[0].mapping.u2.message.author.role: unknown role 'critic'",
    ),
    (
        "claude field",
        as_json(_claude_without("sender")),
        422,
        "invalid_import",
        "file[1].chat_messages[1].sender: Field required",
    ),
    (
        "claude sender",
        as_json(_claude_sender("robot")),
        422,
        "invalid_import",
        "file[0].chat_messages[0].sender: expected 'human' or 'assistant', not 'robot'",
    ),
    (
        "cycle",
        as_json(_cycle()),
        422,
        "invalid_import",
        "file[0]: its messages' parents form a cycle",
    ),
    (
        "question too long",
        as_json(_long_question()),
        422,
        "invalid_import",
        "file[1].chat_messages[0]: the message has 5001 characters; at most 5000 "
        "(MAX_MESSAGE_CHARS)",
    ),
    (
        "too big",
        b" " * (IMPORT_CAPS["max_import_bytes"] + 1),
        413,
        "payload_too_large",
        "an import may be at most 120000 (MAX_IMPORT_BYTES)",
    ),
    (
        "too many sessions",
        as_json([chatgpt_conversation(str(uuid.uuid4())) for _ in range(6)]),
        413,
        "payload_too_large",
        "6 conversations; one import may hold at most 5 (MAX_IMPORT_SESSIONS)",
    ),
    (
        "zip traversal",
        zipped({"conversations.json": as_json(claude_export()), "../../etc/evil": b"x"}),
        422,
        "invalid_import",
        "the zip holds an entry with an unsafe name ('../../etc/evil')",
    ),
    (
        "zip absolute name",
        zipped({"/etc/evil": b"x", "conversations.json": b"[]"}),
        422,
        "invalid_import",
        "unsafe name ('/etc/evil')",
    ),
    ("zip bomb", _bomb(), 413, "payload_too_large", "MAX_IMPORT_UNPACKED_BYTES"),
    (
        "zip of something else",
        zipped({"photo.png": b"x"}),
        422,
        "invalid_import",
        "the zip holds neither zyron-export.json (a Zyron export) nor conversations.json",
    ),
    ("broken zip", b"PK\x03\x04 not really a zip", 422, "invalid_import", "not a readable zip"),
    (
        "file bytes not matching",
        _with_file(b"Notes.\n", sha="0" * 64),
        422,
        "invalid_import",
        "file.files[0]: the bytes of 'files/",
    ),
    (
        "file not text",
        _with_file(b"\x00\x01\x02binary"),
        422,
        "invalid_import",
        "file.files[0] (notes.txt): Unsupported file type",
    ),
    (
        "file over its kind's cap",
        _with_file(b"a" * 10_001),
        413,
        "payload_too_large",
        "file.files[0] (notes.txt): The file is 10001 bytes; a text/plain file may have at "
        "most 10000 (MAX_TEXT_FILE_BYTES)",
    ),
    (
        "broken session after a valid one and a valid file",
        _with_file(b"Notes.\n", broken=True),
        422,
        "invalid_import",
        "file.sessions[1].messages[0]: parent",
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "status", "code", "detail"), CASES, ids=[c[0] for c in CASES]
)
def test_refusal_changes_nothing(
    http: httpx.Client,
    env: Env,
    alice: Account,
    name: str,
    data: bytes,
    status: int,
    code: str,
    detail: str,
) -> None:
    """The file is refused whole, saying why; no row and no stored object is left."""
    before = env.snapshot()
    response = import_file(http, alice, data)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert detail in body["detail"]
    assert env.snapshot() == before


def test_over_the_storage_quota(http: httpx.Client, env: Env, alice: Account) -> None:
    """Files that would take the caller past the quota: 413, none stored."""
    for index in range(10):
        data = f"{index}".encode() * 9_999
        response = http.post(
            "/files", files={"file": (f"{index}.txt", data, "text/plain")}, headers=alice.headers
        )
        assert response.status_code == 201, response.text
    before = env.snapshot()
    response = import_file(http, alice, _with_file(b"A few more notes.\n"))
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "storage_quota_exceeded"
    assert "MAX_STORAGE_BYTES_PER_USER" in response.json()["detail"]
    assert env.snapshot() == before


def test_a_body_past_the_cap_is_refused_before_it_is_read(
    http: httpx.Client, env: Env, alice: Account
) -> None:
    """The body cap of /import is MAX_IMPORT_BYTES plus multipart framing."""
    before = env.snapshot()
    response = import_file(http, alice, b" " * (IMPORT_CAPS["max_import_bytes"] + 70_000))
    assert response.status_code == 413
    assert "MAX_IMPORT_BYTES plus multipart" in response.json()["detail"]
    assert env.snapshot() == before


def test_not_a_multipart_file(http: httpx.Client, alice: Account) -> None:
    """Without the multipart part `file`: a 422 naming it."""
    response = http.post("/import", json={"file": "x"}, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("file: Field required")


def test_the_same_file_twice_at_once(http: httpx.Client, env: Env, alice: Account) -> None:
    """Two imports of one file racing: it is imported once, and no stored object is orphaned."""
    data = _with_file(b"Raced notes.\n")
    before = env.snapshot()

    def send() -> httpx.Response:
        with env.server.client() as client:
            return import_file(client, alice, data)

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(lambda _: send(), range(2)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses in ([200, 200], [200, 409]), [r.text for r in responses]
    created = sum(r.json().get("sessions_created", 0) for r in responses if r.status_code == 200)
    assert created == 1
    after = env.snapshot()
    assert after["sessions"] == before["sessions"] + 1
    assert after["files"] == before["files"] + 1
    # The loser's object, if it stored one, is deleted once its transaction is rolled back.
    rows = sorted(str(row[0]) for row in env.server.query("SELECT storage_key FROM files"))
    deadline = time.monotonic() + 10
    while env.stored() != rows and time.monotonic() < deadline:
        time.sleep(0.02)
    assert env.stored() == rows
