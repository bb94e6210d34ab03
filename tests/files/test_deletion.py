"""Deleting a file or a session: messages keep a part marked missing, no object is orphaned."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.files import samples
from tests.files.conftest import FilesEnv, key_of, uploaded
from tests.sessions.test_sessions_api import create_session
from tests.support import Account
from zyron.sessions.parts import file_part, text_part


def _stamp(env: FilesEnv) -> datetime | str:
    now = datetime.now(UTC)
    if env.server.dialect == "sqlite":
        return now.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return now


def attach(env: FilesEnv, account: Account, session_id: str, *files: dict[str, Any]) -> str:
    """Insert a user message with the files as parts, and its message_files links (superuser).

    Stands in for POST /chat with attachments until the chat side has it.
    """
    server = env.server
    message_id = str(uuid.uuid4())
    parts = [dict(text_part("see attached"))] + [
        dict(file_part(f["id"], media_type=f["media_type"], filename=f["filename"], size=f["size"]))
        for f in files
    ]
    as_json = "CAST(:parts AS JSONB)" if server.dialect == "postgresql" else ":parts"
    server.query(
        "INSERT INTO messages (id, session_id, user_id, role, content, parts, status, created_at) "
        f"VALUES (:id, :sid, :uid, 'user', 'see attached', {as_json}, 'complete', :at)",
        id=server.id(message_id),
        sid=server.id(session_id),
        uid=server.id(account.id),
        parts=json.dumps(parts),
        at=_stamp(env),
    )
    for f in files:
        server.query(
            "INSERT INTO message_files (message_id, file_id, user_id) VALUES (:m, :f, :u)",
            m=server.id(message_id),
            f=server.id(f["id"]),
            u=server.id(account.id),
        )
    return message_id


def parts_of(env: FilesEnv, message_id: str) -> list[dict[str, Any]]:
    """Return a message's stored parts."""
    (value,) = env.server.query(
        "SELECT parts FROM messages WHERE id = :id", id=env.server.id(message_id)
    )[0]
    parts: list[dict[str, Any]] = json.loads(value) if isinstance(value, str) else value
    return parts


def links_of(env: FilesEnv, file_id: str) -> int:
    """Count the message_files rows of a file."""
    return int(
        env.server.query(
            "SELECT count(*) FROM message_files WHERE file_id = :f", f=env.server.id(file_id)
        )[0][0]
    )


def file_ids(env: FilesEnv, account: Account) -> set[str]:
    """Return the ids of the user's files rows."""
    rows = env.server.query("SELECT id FROM files WHERE user_id = :u", u=env.server.id(account.id))
    return {str(uuid.UUID(str(row[0]))) for row in rows}


def test_deleting_a_file_marks_it_missing_in_its_messages(
    files_env: FilesEnv, files_client: httpx.Client, account: Account
) -> None:
    """The messages that used the file keep a part marked missing; the others are untouched."""
    gone = uploaded(files_client, account, samples.png(), filename="gone.png")
    kept = uploaded(files_client, account, samples.pdf(), filename="kept.pdf")
    first = create_session(files_client, account)["id"]
    second = create_session(files_client, account)["id"]
    both = attach(files_env, account, first, gone, kept)
    only = attach(files_env, account, second, gone)
    unrelated = attach(files_env, account, second, kept)
    before_unrelated = parts_of(files_env, unrelated)

    response = files_client.delete(f"/files/{gone['id']}", headers=account.headers)
    assert response.status_code == 204, response.text

    marked = parts_of(files_env, both)
    assert [p.get("missing", False) for p in marked if p["type"] == "file"] == [True, False]
    assert marked[1] == {**file_part(gone["id"], media_type="image/png", filename="gone.png",
                                     size=gone["size"]), "missing": True}  # fmt: skip
    assert [p.get("missing") for p in parts_of(files_env, only) if p["type"] == "file"] == [True]
    assert parts_of(files_env, unrelated) == before_unrelated
    assert links_of(files_env, gone["id"]) == 0
    assert links_of(files_env, kept["id"]) == 2
    assert file_ids(files_env, account) == {kept["id"]}
    files_env.assert_in_sync()
    assert key_of(account, kept["id"]) in files_env.stored()
    # The sessions still read.
    for session_id in (first, second):
        listed = files_client.get(f"/sessions/{session_id}/messages", headers=account.headers)
        assert listed.status_code == 200, listed.text


def test_deleting_a_session_removes_the_files_only_it_used(
    files_env: FilesEnv, files_client: httpx.Client, account: Account
) -> None:
    """Files only the session used go; shared, other sessions' and unattached files stay."""
    only_first = uploaded(files_client, account, b"only in the first\n")
    shared = uploaded(files_client, account, b"in both\n")
    only_second = uploaded(files_client, account, b"only in the second\n")
    never_attached = uploaded(files_client, account, b"never attached\n")
    first = create_session(files_client, account)["id"]
    second = create_session(files_client, account)["id"]
    attach(files_env, account, first, only_first, shared)
    attach(files_env, account, first, only_first)
    attach(files_env, account, second, shared, only_second)

    response = files_client.delete(f"/sessions/{first}", headers=account.headers)
    assert response.status_code == 204, response.text
    assert file_ids(files_env, account) == {shared["id"], only_second["id"], never_attached["id"]}
    assert links_of(files_env, shared["id"]) == 1
    files_env.assert_in_sync()
    gone = files_client.get(f"/files/{only_first['id']}", headers=account.headers)
    assert gone.status_code == 404, gone.text

    response = files_client.delete(f"/sessions/{second}", headers=account.headers)
    assert response.status_code == 204, response.text
    assert file_ids(files_env, account) == {never_attached["id"]}
    files_env.assert_in_sync()
    kept = files_client.get(f"/files/{never_attached['id']}", headers=account.headers)
    assert kept.content == b"never attached\n"


def test_deleting_a_session_without_files_keeps_every_file(
    files_env: FilesEnv, files_client: httpx.Client, account: Account
) -> None:
    """A session with no attachments takes no file with it."""
    mine = uploaded(files_client, account, b"mine\n")
    chat = create_session(files_client, account)["id"]
    assert files_client.delete(f"/sessions/{chat}", headers=account.headers).status_code == 204
    assert file_ids(files_env, account) == {mine["id"]}
    files_env.assert_in_sync()
