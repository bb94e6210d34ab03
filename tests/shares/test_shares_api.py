"""Share links over real HTTP, on SQLite and Postgres: make, read without an account, revoke.

A link shows a snapshot that later changes to the session never touch, serves the files its
messages show (kept while any link shows them), and a revoked or foreign id changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply, ThinkingReply
from tests.files.samples import png
from tests.sessions.test_sessions_api import assert_error, create_session
from tests.support import (
    PASSWORD,
    Account,
    LiveServer,
    live_server,
    make_settings,
    parse_sse,
    signup,
    stream_chat,
    unique_email,
)
from zyron.app import create_app
from zyron.logging import JsonFormatter
from zyron.shares import service

HAIKU = "claude-haiku-4-5"  # thinks with a budget
MESSAGE_KEYS = {"id", "role", "content", "parts", "status", "model", "created_at"}
NOTES = b"Shared notes\n"


@pytest.fixture
def alice(client: httpx.Client) -> Account:
    """A signed-up user."""
    return signup(client)


@pytest.fixture
def bob(client: httpx.Client) -> Account:
    """Another signed-up user."""
    return signup(client)


def say(
    client: httpx.Client,
    account: Account,
    upstream: FakeAnthropic,
    message: str,
    reply: str,
    **body: Any,
) -> dict[str, Any]:
    """Send a message whose reply is `reply`; return the `session` event's data."""
    upstream.enqueue(TextReply(chunks=(reply,)))
    events = stream_chat(client, {"message": message, **body}, account.headers)
    assert events[-1].event == "done", events[-1].data
    return events[0].data


def upload(client: httpx.Client, account: Account, data: bytes, filename: str) -> dict[str, Any]:
    """Upload a file; return its FileRead."""
    response = client.post(
        "/files",
        files={"file": (filename, data, "application/octet-stream")},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def make_share(
    client: httpx.Client, account: Account, session_id: str, **body: Any
) -> dict[str, Any]:
    """POST /sessions/{id}/shares; return the 201 body."""
    response = client.post(f"/sessions/{session_id}/shares", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def read_shared(server: LiveServer, token: str) -> dict[str, Any]:
    """GET /shared/{token} from a client that holds nothing but the token."""
    with server.client() as anonymous:
        response = anonymous.get(f"/shared/{token}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def page(client: httpx.Client, account: Account, session_id: str) -> list[dict[str, Any]]:
    """The session's active branch, as its owner reads it."""
    response = client.get(f"/sessions/{session_id}/messages", headers=account.headers)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()
    return messages


def share_rows(server: LiveServer, account: Account) -> list[tuple[Any, ...]]:
    """Every shares row of the user, and how many share_files rows each has (superuser)."""
    return sorted(
        (str(uuid.UUID(str(row[0]))), str(row[1]), int(row[2]))
        for row in server.query(
            "SELECT s.id, s.token_hash, (SELECT count(*) FROM share_files f "
            "WHERE f.share_id = s.id) FROM shares s WHERE s.user_id = :u",
            u=server.id(account.id),
        )
    )


def stored_objects(server: LiveServer, account: Account) -> set[str]:
    """The ids (hex) of the user's files whose bytes are in storage."""
    root = server.settings.data_dir / "files" / account.id.hex
    return {path.name for path in root.iterdir()} if root.exists() else set()


def wait_gone(server: LiveServer, account: Account, file_id: str) -> set[str]:
    """Wait for a file's bytes to go (deleted just after the commit); return what is left."""
    deadline = time.monotonic() + 10
    while uuid.UUID(file_id).hex in stored_objects(server, account):
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return stored_objects(server, account)


def conversation_with_file(
    client: httpx.Client, account: Account, upstream: FakeAnthropic
) -> tuple[str, dict[str, Any]]:
    """q1 (with a text file) -> a1 -> q2 -> a2; return the session id and the file."""
    file = upload(client, account, NOTES, "notes.txt")
    first = say(client, account, upstream, "Read this", "Read it", attachments=[file["id"]])
    session_id = first["session_id"]
    say(client, account, upstream, "And then?", "Then this", session_id=session_id)
    return session_id, file


def test_a_link_is_made_read_without_an_account_listed_and_revoked(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic, alice: Account
) -> None:
    """The token is shown once and stored as its hash; anyone with it reads; revoked, 404."""
    session_id, file = conversation_with_file(client, alice, upstream)
    created = make_share(client, alice, session_id)
    token = created["token"]
    assert len(token) == 43
    assert created["url"] == f"{server.url}/shared/{token}"
    assert created["session_id"] == session_id
    assert created["title"] == "New chat"
    owner_view = page(client, alice, session_id)
    assert created["up_to_message_id"] == owner_view[-1]["id"]
    ((share_id, stored_hash, files_rows),) = share_rows(server, alice)
    assert share_id == created["id"]
    assert stored_hash == hashlib.sha256(token.encode()).hexdigest()
    assert files_rows == 1
    # The token itself is nowhere in the database.
    (dump,) = server.query(
        "SELECT snapshot, title, token_hash FROM shares WHERE id = :id", id=server.id(share_id)
    )
    assert token not in repr(dump)

    with server.client() as anonymous:
        response = anonymous.get(f"/shared/{token}")
    assert response.headers["cache-control"] == "no-store"  # revoked means gone, caches too
    assert response.headers["x-robots-tag"] == "noindex"
    shared = read_shared(server, token)
    assert response.json() == shared
    assert set(shared) == {"title", "created_at", "messages", "files"}
    assert shared["title"] == "New chat"
    assert [m["content"] for m in shared["messages"]] == [
        "Read this",
        "Read it",
        "And then?",
        "Then this",
    ]
    assert [m["role"] for m in shared["messages"]] == ["user", "assistant"] * 2
    assert [m["id"] for m in shared["messages"]] == [m["id"] for m in owner_view]
    for message in shared["messages"]:
        assert set(message) == MESSAGE_KEYS  # no usage, cost, session id or parent
    assert shared["messages"][0]["parts"] == [
        {
            "type": "file",
            "file_id": file["id"],
            "media_type": "text/plain",
            "filename": "notes.txt",
            "size": len(NOTES),
        },
        {"type": "text", "text": "Read this"},
    ]
    file_url = f"{server.url}/shared/{token}/files/{file['id']}"
    assert shared["files"] == [
        {
            "id": file["id"],
            "filename": "notes.txt",
            "media_type": "text/plain",
            "size": len(NOTES),
            "url": file_url,
        }
    ]
    with server.client() as anonymous:
        served = anonymous.get(file_url)
    assert served.status_code == 200
    assert served.content == NOTES
    assert served.headers["content-type"] == "text/plain; charset=utf-8"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["content-disposition"].startswith("attachment;")
    assert served.headers["content-security-policy"] == "default-src 'none'; sandbox"

    listed = client.get(f"/sessions/{session_id}/shares", headers=alice.headers)
    assert listed.status_code == 200
    expected = {k: v for k, v in created.items() if k not in ("token", "url")}
    assert listed.json() == [expected]
    assert client.get("/shares", headers=alice.headers).json() == [expected]

    assert client.delete(f"/shares/{share_id}", headers=alice.headers).status_code == 204
    with server.client() as anonymous:
        gone = anonymous.get(f"/shared/{token}")
        gone_file = anonymous.get(file_url)
        malformed = anonymous.get("/shared/not-a-token")
    assert_error(gone, 404, "not_found")
    assert_error(gone_file, 404, "not_found")
    # A revoked link and a made-up one answer alike: nothing tells them apart.
    assert gone.json() == malformed.json()
    assert share_rows(server, alice) == []
    assert client.get("/shares", headers=alice.headers).json() == []
    # The file is still the session's: revoking took only the link.
    assert client.get(f"/files/{file['id']}", headers=alice.headers).content == NOTES


def test_a_token_opens_its_own_share_and_nothing_else(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic, alice: Account, bob: Account
) -> None:
    """Malformed, unknown or another link's file: the same 404, and no account is needed."""
    session_id, file = conversation_with_file(client, alice, upstream)
    private = upload(client, alice, b"private\n", "private.txt")
    mine = make_share(client, alice, session_id)
    bob_session, bob_file = conversation_with_file(client, bob, upstream)
    theirs = make_share(client, bob, bob_session)
    with server.client() as anonymous:
        answers = {
            "malformed": anonymous.get("/shared/abc"),
            "too long": anonymous.get(f"/shared/{mine['token']}x"),
            "unknown": anonymous.get(f"/shared/{'A' * 43}"),
            "another link's file": anonymous.get(f"/shared/{mine['token']}/files/{bob_file['id']}"),
            "owner's unshared file": anonymous.get(
                f"/shared/{mine['token']}/files/{private['id']}"
            ),
            "unknown file": anonymous.get(f"/shared/{mine['token']}/files/{uuid.uuid4()}"),
            "file of an unknown link": anonymous.get(f"/shared/{'A' * 43}/files/{file['id']}"),
        }
    for name, answer in answers.items():
        assert answer.status_code == 404, name
        assert_error(answer, 404, "not_found")
    link_answers = [answers[k].json() for k in ("malformed", "too long", "unknown")]
    assert link_answers == [{"error": "not_found", "detail": "No such share link."}] * 3
    # Signed in as someone else changes nothing: the token alone opens the link.
    as_bob = client.get(f"/shared/{mine['token']}", headers=bob.headers)
    assert as_bob.status_code == 200
    assert [f["id"] for f in as_bob.json()["files"]] == [file["id"]]
    assert [f["id"] for f in read_shared(server, theirs["token"])["files"]] == [bob_file["id"]]


def test_foreign_unknown_and_revoked_share_ids_are_404_and_change_nothing(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic, alice: Account, bob: Account
) -> None:
    """Bob can neither list, make nor revoke links of Alice's; a revoked id is gone for good."""
    session_id, _ = conversation_with_file(client, alice, upstream)
    share = make_share(client, alice, session_id)
    before = share_rows(server, alice)
    refused = {
        "revoke another's": client.delete(f"/shares/{share['id']}", headers=bob.headers),
        "list another's session": client.get(f"/sessions/{session_id}/shares", headers=bob.headers),
        "share another's session": client.post(
            f"/sessions/{session_id}/shares", json={}, headers=bob.headers
        ),
        "revoke unknown": client.delete(f"/shares/{uuid.uuid4()}", headers=alice.headers),
        "page from another's": client.get(
            "/shares", params={"before": share["id"]}, headers=bob.headers
        ),
    }
    for name, answer in refused.items():
        assert answer.status_code == 404, name
        assert_error(answer, 404, "not_found")
    assert share_rows(server, alice) == before
    assert share_rows(server, bob) == []
    assert client.get("/shares", headers=bob.headers).json() == []
    read_shared(server, share["token"])

    for method, path in (
        ("POST", f"/sessions/{session_id}/shares"),
        ("GET", f"/sessions/{session_id}/shares"),
        ("GET", "/shares"),
        ("DELETE", f"/shares/{share['id']}"),
    ):
        assert_error(client.request(method, path), 401, "not_authenticated")
    assert share_rows(server, alice) == before

    assert client.delete(f"/shares/{share['id']}", headers=alice.headers).status_code == 204
    again = client.delete(f"/shares/{share['id']}", headers=alice.headers)
    assert_error(again, 404, "not_found")
    assert share_rows(server, alice) == []
    assert_error(
        client.get(f"/shares/{share['id']}", headers=alice.headers), 405, "method_not_allowed"
    )


def test_the_snapshot_stays_as_it_was_whatever_happens_to_the_session(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic, alice: Account
) -> None:
    """Renaming, regenerating, editing, adding and deleting leave the link's snapshot alone."""
    session_id, file = conversation_with_file(client, alice, upstream)
    created = make_share(client, alice, session_id)
    snapshot = read_shared(server, created["token"])
    (stored,) = server.query(
        "SELECT snapshot FROM shares WHERE id = :id", id=server.id(created["id"])
    )

    renamed = client.patch(
        f"/sessions/{session_id}", json={"title": "Renamed"}, headers=alice.headers
    )
    assert renamed.status_code == 200
    last_reply = page(client, alice, session_id)[-1]["id"]
    upstream.enqueue(TextReply(chunks=("Regenerated",)))
    regenerated = client.post(
        f"/chat/{last_reply}/regenerate", json={"stream": False}, headers=alice.headers
    )
    assert regenerated.status_code == 200, regenerated.text
    first_reply = page(client, alice, session_id)[1]["id"]
    say(client, alice, upstream, "An edit", "Edited", session_id=session_id, parent_id=first_reply)
    say(client, alice, upstream, "More", "And more", session_id=session_id)
    assert [m["content"] for m in page(client, alice, session_id)][-3:] == [
        "Edited",
        "More",
        "And more",
    ]
    assert read_shared(server, created["token"]) == snapshot

    assert client.delete(f"/sessions/{session_id}", headers=alice.headers).status_code == 204
    assert read_shared(server, created["token"]) == snapshot
    assert server.query(
        "SELECT snapshot FROM shares WHERE id = :id", id=server.id(created["id"])
    ) == [stored]
    # The link outlives its session, and its owner can still find and revoke it.
    (listed,) = client.get("/shares", headers=alice.headers).json()
    assert listed["id"] == created["id"]
    assert listed["session_id"] is None
    assert listed["title"] == "New chat"
    with server.client() as anonymous:
        assert anonymous.get(snapshot["files"][0]["url"]).content == NOTES
    assert client.delete(f"/shares/{created['id']}", headers=alice.headers).status_code == 204
    assert file["id"] not in {f["id"] for f in client.get("/files", headers=alice.headers).json()}


def test_up_to_a_message_shares_the_path_down_to_it(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic, alice: Account, bob: Account
) -> None:
    """Any message of the session, on any branch: the path from the root to it; else a 404."""
    first = say(client, alice, upstream, "q1", "a1")
    session_id = first["session_id"]
    say(client, alice, upstream, "q2", "a2", session_id=session_id)
    say(
        client,
        alice,
        upstream,
        "q2 edited",
        "a2 edited",
        session_id=session_id,
        parent_id=first["assistant_message_id"],
    )
    say(client, alice, upstream, "q3", "a3", session_id=session_id)
    tree = client.get(
        f"/sessions/{session_id}/messages", params={"tree": "true"}, headers=alice.headers
    ).json()
    by_content = {m["content"]: m["id"] for m in tree}

    def shown(**body: Any) -> list[str]:
        created = make_share(client, alice, session_id, **body)
        return [m["content"] for m in read_shared(server, created["token"])["messages"]]

    assert shown() == ["q1", "a1", "q2 edited", "a2 edited", "q3", "a3"]
    assert shown(up_to_message_id=by_content["a1"]) == ["q1", "a1"]
    assert shown(up_to_message_id=by_content["q1"]) == ["q1"]
    # A branch that is no longer the active one.
    assert shown(up_to_message_id=by_content["a2"]) == ["q1", "a1", "q2", "a2"]
    created = make_share(client, alice, session_id, up_to_message_id=by_content["a1"])
    assert created["up_to_message_id"] == by_content["a1"]

    before = share_rows(server, alice)
    other = say(client, alice, upstream, "elsewhere", "other session")
    bobs = say(client, bob, upstream, "bob's", "reply")
    for message_id in (other["user_message_id"], bobs["user_message_id"], str(uuid.uuid4())):
        refused = client.post(
            f"/sessions/{session_id}/shares",
            json={"up_to_message_id": message_id},
            headers=alice.headers,
        )
        assert_error(refused, 404, "not_found")
    bodies: list[Any] = [{"up_to_message_id": "nope"}, {"up_to_message_id": 5}, []]
    for body in bodies:
        refused = client.post(f"/sessions/{session_id}/shares", json=body, headers=alice.headers)
        assert_error(refused, 422, "validation_error")
    assert share_rows(server, alice) == before
    # No body at all is the active branch, as `{}` is.
    bare = client.post(f"/sessions/{session_id}/shares", headers=alice.headers)
    assert bare.status_code == 201, bare.text


def test_an_empty_session_or_a_reply_in_progress_is_a_409(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic, alice: Account
) -> None:
    """Nothing to share yet, or a reply not finished: refused, no row written."""
    empty = create_session(client, alice)
    detail = assert_error(
        client.post(f"/sessions/{empty['id']}/shares", headers=alice.headers),
        409,
        "nothing_to_share",
    )
    assert "no message" in detail

    first = say(client, alice, upstream, "q1", "a1")
    session_id = first["session_id"]
    hold = threading.Event()
    upstream.enqueue(TextReply(chunks=("w0 ", "w1"), hold=hold))
    with client.stream(
        "POST", "/chat", json={"message": "slow", "session_id": session_id}, headers=alice.headers
    ) as slow:
        lines = slow.iter_lines()
        session_event = parse_sse(next(lines) + "\n" + next(lines) + "\n" + next(lines))[0][0]
        streaming = session_event.data["assistant_message_id"]
        while next(lines) != "event: delta":
            pass
        for body in ({}, {"up_to_message_id": streaming}):
            refused = client.post(
                f"/sessions/{session_id}/shares", json=body, headers=alice.headers
            )
            assert_error(refused, 409, "reply_in_progress")
        # The finished part of the conversation can be shared meanwhile.
        earlier = make_share(
            client, alice, session_id, up_to_message_id=first["assistant_message_id"]
        )
        hold.set()
        assert "event: done" in list(lines)
    assert [row[0] for row in share_rows(server, alice)] == [earlier["id"]]
    assert len(make_share(client, alice, session_id)["token"]) == 43


def test_a_branch_over_the_message_cap_is_a_422(
    client: httpx.Client,
    server: LiveServer,
    upstream: FakeAnthropic,
    alice: Account,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More messages than a link shows: refused, naming the cap; up to an earlier one works.

    The cap is lowered in the server, which runs in this process (tests.support.live_server).
    """
    first = say(client, alice, upstream, "q1", "a1")
    session_id = first["session_id"]
    say(client, alice, upstream, "q2", "a2", session_id=session_id)
    monkeypatch.setattr(service, "MAX_SHARED_MESSAGES", 3)
    before = share_rows(server, alice)
    for body in ({}, {"up_to_message_id": page(client, alice, session_id)[-1]["id"]}):
        refused = client.post(f"/sessions/{session_id}/shares", json=body, headers=alice.headers)
        detail = assert_error(refused, 422, "validation_error")
        assert detail.startswith("up_to_message_id: ")
        assert "more than 3 messages" in detail
    assert share_rows(server, alice) == before
    # Exactly at the cap is shared.
    third = page(client, alice, session_id)[2]["id"]
    shared = make_share(client, alice, session_id, up_to_message_id=third)
    assert len(read_shared(server, shared["token"])["messages"]) == 3


def test_a_snapshot_over_the_byte_cap_is_a_422(
    client: httpx.Client,
    server: LiveServer,
    upstream: FakeAnthropic,
    alice: Account,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A branch whose snapshot takes more bytes than a link shows: refused, no row written."""
    first = say(client, alice, upstream, "short", "ok")
    session_id = first["session_id"]
    say(client, alice, upstream, "long " * 100, "long reply " * 100, session_id=session_id)
    monkeypatch.setattr(service, "MAX_SNAPSHOT_BYTES", 1500)
    before = share_rows(server, alice)
    refused = client.post(f"/sessions/{session_id}/shares", headers=alice.headers)
    detail = assert_error(refused, 422, "validation_error")
    assert detail.startswith("up_to_message_id: ")
    assert "(1500)" in detail
    assert share_rows(server, alice) == before
    # The short start of the conversation fits.
    shared = make_share(client, alice, session_id, up_to_message_id=first["assistant_message_id"])
    assert [m["content"] for m in read_shared(server, shared["token"])["messages"]] == [
        "short",
        "ok",
    ]


def test_reasoning_is_not_shared(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic, alice: Account
) -> None:
    """The model's thinking, and its signature, stay out of the link and its stored snapshot."""
    upstream.enqueue(
        ThinkingReply(thinking=("Secret", " musing"), chunks=("Answer",), signature="sig-secret")
    )
    events = stream_chat(
        client,
        {"message": "Why?", "model": HAIKU, "reasoning": {"budget_tokens": 1024}},
        alice.headers,
    )
    session_id = events[0].data["session_id"]
    assert page(client, alice, session_id)[1]["parts"][0]["type"] == "reasoning"
    created = make_share(client, alice, session_id)
    shared = read_shared(server, created["token"])
    assert shared["messages"][1]["parts"] == [{"type": "text", "text": "Answer"}]
    assert shared["messages"][1]["content"] == "Answer"
    (stored,) = server.query(
        "SELECT snapshot FROM shares WHERE id = :id", id=server.id(created["id"])
    )
    for secret in ("Secret musing", "sig-secret", "reasoning", "usage", "cost"):
        assert secret not in repr(stored)


def test_shared_files_outlive_the_session_until_the_last_link_is_revoked(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic, alice: Account
) -> None:
    """Deleting the session keeps the files its links show; the last revoke deletes them."""
    session_id, file = conversation_with_file(client, alice, upstream)
    image = upload(client, alice, png(4, 4), "only-here.png")
    say(
        client,
        alice,
        upstream,
        "And this",
        "Seen",
        session_id=session_id,
        attachments=[image["id"]],
    )
    loose = upload(client, alice, b"never attached\n", "loose.txt")
    first, second = make_share(client, alice, session_id), make_share(client, alice, session_id)
    ids = {uuid.UUID(f["id"]).hex for f in (file, image, loose)}
    assert stored_objects(server, alice) == ids

    assert client.delete(f"/sessions/{session_id}", headers=alice.headers).status_code == 204
    assert stored_objects(server, alice) == ids
    owned = {f["id"] for f in client.get("/files", headers=alice.headers).json()}
    assert owned == {file["id"], image["id"], loose["id"]}
    for share in (first, second):
        shown = read_shared(server, share["token"])
        assert {f["id"] for f in shown["files"]} == {file["id"], image["id"]}

    assert client.delete(f"/shares/{first['id']}", headers=alice.headers).status_code == 204
    with server.client() as anonymous:
        for shown_file in read_shared(server, second["token"])["files"]:
            assert anonymous.get(shown_file["url"]).status_code == 200
    assert stored_objects(server, alice) == ids

    assert client.delete(f"/shares/{second['id']}", headers=alice.headers).status_code == 204
    left = wait_gone(server, alice, image["id"])
    assert left == {uuid.UUID(loose["id"]).hex}
    owned = {f["id"] for f in client.get("/files", headers=alice.headers).json()}
    assert owned == {loose["id"]}
    rows = server.query(
        "SELECT count(*) FROM share_files WHERE user_id = :u", u=server.id(alice.id)
    )
    assert rows == [(0,)]


def test_revoking_keeps_a_file_other_messages_still_use(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic, alice: Account
) -> None:
    """A file also attached in another session stays when the session and the link go."""
    session_id, file = conversation_with_file(client, alice, upstream)
    say(client, alice, upstream, "Again", "Again read", attachments=[file["id"]])
    share = make_share(client, alice, session_id)
    assert client.delete(f"/sessions/{session_id}", headers=alice.headers).status_code == 204
    assert client.delete(f"/shares/{share['id']}", headers=alice.headers).status_code == 204
    assert client.get(f"/files/{file['id']}", headers=alice.headers).content == NOTES
    assert uuid.UUID(file["id"]).hex in stored_objects(server, alice)


def test_a_file_a_link_shows_cannot_be_deleted(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic, alice: Account
) -> None:
    """DELETE /files/{id} is a 409 naming the links; nothing changes until they are revoked."""
    session_id, file = conversation_with_file(client, alice, upstream)
    share = make_share(client, alice, session_id)
    before = page(client, alice, session_id)
    refused = client.delete(f"/files/{file['id']}", headers=alice.headers)
    detail = assert_error(refused, 409, "file_shared")
    assert share["id"] in detail
    assert page(client, alice, session_id) == before  # the part is not marked missing
    assert client.get(f"/files/{file['id']}", headers=alice.headers).content == NOTES
    assert uuid.UUID(file["id"]).hex in stored_objects(server, alice)
    assert share_rows(server, alice)[0][2] == 1

    assert client.delete(f"/shares/{share['id']}", headers=alice.headers).status_code == 204
    assert client.delete(f"/files/{file['id']}", headers=alice.headers).status_code == 204
    assert page(client, alice, session_id)[0]["parts"][0]["missing"] is True
    assert uuid.UUID(file["id"]).hex not in wait_gone(server, alice, file["id"])
    # A link made now shows the file as deleted, and serves nothing for it.
    later = make_share(client, alice, session_id)
    shown = read_shared(server, later["token"])
    assert shown["files"] == []
    assert shown["messages"][0]["parts"][0]["missing"] is True


def test_lists_page_back_newest_first(
    client: httpx.Client, upstream: FakeAnthropic, alice: Account
) -> None:
    """GET /shares and a session's list: newest first, `before` pages back, `limit` capped."""
    first = say(client, alice, upstream, "q1", "a1")["session_id"]
    second = say(client, alice, upstream, "q2", "a2")["session_id"]
    made = [make_share(client, alice, sid)["id"] for sid in (first, second, first)]
    listed = client.get("/shares", headers=alice.headers).json()
    assert [s["id"] for s in listed] == made[::-1]
    older = client.get("/shares", params={"limit": 1, "before": made[2]}, headers=alice.headers)
    assert [s["id"] for s in older.json()] == [made[1]]
    of_first = client.get(f"/sessions/{first}/shares", headers=alice.headers).json()
    assert [s["id"] for s in of_first] == [made[2], made[0]]
    for params in ({"limit": 0}, {"limit": 201}):
        assert_error(
            client.get("/shares", params=params, headers=alice.headers), 422, "validation_error"
        )


def test_no_token_reaches_the_logs(
    client: httpx.Client,
    server: LiveServer,
    upstream: FakeAnthropic,
    alice: Account,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Making, reading and revoking a link log its id, never its token, nor the messages."""
    session_id, _ = conversation_with_file(client, alice, upstream)
    with caplog.at_level(logging.DEBUG, logger="zyron"):
        created = make_share(client, alice, session_id)
        shown = read_shared(server, created["token"])
        with server.client() as anonymous:
            assert anonymous.get(shown["files"][0]["url"]).status_code == 200
            assert anonymous.get(f"/shared/{created['token'][:-1]}").status_code == 404
        assert client.delete(f"/shares/{created['id']}", headers=alice.headers).status_code == 204
    lines = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "share created" in lines
    assert "share revoked" in lines
    assert created["id"] in lines
    assert "/shared/[token]" in lines
    for never in (created["token"], created["token"][:-1], "Read this", NOTES.decode().strip()):
        assert never not in lines, never


def test_the_url_follows_the_root_path(tmp_path: Path, upstream: FakeAnthropic) -> None:
    """Served under a prefix (uvicorn --root-path behind a proxy), the links carry it."""
    settings = make_settings(
        tmp_path, anthropic_api_key="sk-ant-test", anthropic_base_url=upstream.base_url
    )
    with TestClient(create_app(settings), root_path="/api") as http:
        signed_up = http.post(
            "/api/auth/signup", json={"email": unique_email(), "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {signed_up.json()['access_token']}"}
        file = http.post(
            "/api/files", files={"file": ("notes.txt", NOTES, "text/plain")}, headers=headers
        ).json()
        reply = http.post(
            "/api/chat",
            json={"message": "Hi", "stream": False, "attachments": [file["id"]]},
            headers=headers,
        )
        assert reply.status_code == 200, reply.text
        session_id = reply.json()["session_id"]
        created = http.post(f"/api/sessions/{session_id}/shares", headers=headers).json()
        link = f"http://testserver/api/shared/{created['token']}"
        assert created["url"] == link
        shown = http.get(f"/api/shared/{created['token']}").json()
        assert [f["url"] for f in shown["files"]] == [f"{link}/files/{file['id']}"]
        assert http.get(shown["files"][0]["url"]).content == NOTES


def test_a_trusted_proxy_says_the_scheme_of_the_link(
    tmp_path: Path, upstream: FakeAnthropic
) -> None:
    """Behind a TLS-terminating proxy of TRUSTED_PROXIES, the link is https; from anyone else
    X-Forwarded-Proto is ignored."""
    for trusted, scheme in ((["127.0.0.1"], "https"), ([], "http")):
        settings = make_settings(
            tmp_path / scheme,
            anthropic_api_key="sk-ant-test",
            anthropic_base_url=upstream.base_url,
            trusted_proxies=trusted,
        )
        with live_server(settings) as running, running.client() as http:
            account = signup(http)
            session_id = say(http, account, upstream, "Hi", "Hello")["session_id"]
            response = http.post(
                f"/sessions/{session_id}/shares",
                headers={**account.headers, "X-Forwarded-Proto": "https"},
            )
            assert response.status_code == 201, response.text
            host = running.url.removeprefix("http://")
            assert response.json()["url"] == f"{scheme}://{host}/shared/{response.json()['token']}"


def test_reads_of_links_are_limited_per_address(tmp_path: Path, upstream: FakeAnthropic) -> None:
    """Past SHARED_READ_RATE an address gets 429 with Retry-After, the page and its files alike."""
    settings = make_settings(
        tmp_path,
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=upstream.base_url,
        rate_limit_enabled=True,
        shared_read_rate="3/hour",
    )
    with live_server(settings) as server, server.client() as client:
        owner = signup(client)
        session_id = say(client, owner, upstream, "Share me", "Shared.")["session_id"]
        token = make_share(client, owner, session_id)["token"]
        with server.client() as anonymous:
            statuses = [anonymous.get(f"/shared/{token}").status_code for _ in range(3)]
            refused = anonymous.get(f"/shared/{token}")
            file_refused = anonymous.get(f"/shared/{token}/files/{uuid.uuid4()}")
        assert statuses == [200, 200, 200]
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) > 0
        assert file_refused.status_code == 429
        # The owner's own routes count nothing of it.
        assert (
            client.get(f"/sessions/{session_id}/shares", headers=owner.headers).status_code == 200
        )
