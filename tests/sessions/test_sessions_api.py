"""The /sessions routes over real HTTP: CRUD, ordering, paging, isolation and errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.support import Account, LiveServer, signup, stream_chat

MESSAGE_FIELDS = {"id", "session_id", "role", "content", "status", "model", "usage", "created_at"}
SESSION_FIELDS = {"id", "title", "model", "system_prompt", "created_at", "updated_at"}


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    """Check the one error shape and return its detail."""
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    detail: str = body["detail"]
    return detail


def assert_utc(value: str) -> datetime:
    """Check that a time is ISO 8601 in UTC and return it parsed."""
    assert value.endswith(("Z", "+00:00")), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def create_session(client: httpx.Client, account: Account, **fields: Any) -> dict[str, Any]:
    """Create a session through the API."""
    response = client.post("/sessions", json=fields, headers=account.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def get_session(client: httpx.Client, account: Account, session_id: str) -> dict[str, Any]:
    """Read a session through the API."""
    response = client.get(f"/sessions/{session_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def list_messages(
    client: httpx.Client, account: Account, session_id: str, **params: Any
) -> list[dict[str, Any]]:
    """List a session's messages through the API."""
    response = client.get(
        f"/sessions/{session_id}/messages", params=params, headers=account.headers
    )
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


def list_session_ids(client: httpx.Client, account: Account, **params: Any) -> list[str]:
    """List the ids of the caller's sessions, in the order the API gives them."""
    response = client.get("/sessions", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()]


def say(client: httpx.Client, account: Account, session_id: str, text: str) -> None:
    """Send one message in a session and check the reply finished."""
    events = stream_chat(client, {"message": text, "session_id": session_id}, account.headers)
    assert [e.event for e in events][-1] == "done", events
    assert events[0].data["session_id"] == session_id


def stored_message_count(server: LiveServer, session_id: str) -> int:
    """Count a session's message rows directly in the database."""
    # SQLite keeps UUIDs as 32 hex digits without dashes.
    rows = server.query(
        "SELECT count(*) FROM messages WHERE session_id = :s", s=server.id(session_id)
    )
    return int(rows[0][0])


def test_create_with_defaults(client: httpx.Client) -> None:
    """A session created with an empty body is titled "New chat" and has no model or prompt."""
    alice = signup(client)
    created = create_session(client, alice)
    assert set(created) >= SESSION_FIELDS
    uuid.UUID(created["id"])
    assert created["title"] == "New chat"
    assert created["model"] is None
    assert created["system_prompt"] is None
    assert assert_utc(created["created_at"]) == assert_utc(created["updated_at"])
    assert get_session(client, alice, created["id"]) == created


def test_create_with_fields(client: httpx.Client) -> None:
    """Title, model and system prompt given at creation are kept and read back."""
    alice = signup(client)
    created = create_session(
        client, alice, title="Trip plans", model="claude-haiku-4-5", system_prompt="Be brief."
    )
    assert created["title"] == "Trip plans"
    assert created["model"] == "claude-haiku-4-5"
    assert created["system_prompt"] == "Be brief."
    assert get_session(client, alice, created["id"]) == created


def test_create_rejects_empty_title(client: httpx.Client, server: LiveServer) -> None:
    """An empty title is a 422 naming `title`, and no session is written."""
    alice = signup(client)
    before = server.count("chat_sessions")
    response = client.post("/sessions", json={"title": ""}, headers=alice.headers)
    assert "title" in assert_error(response, 422, "validation_error")
    assert server.count("chat_sessions") == before


def test_list_newest_first_by_updated_at(client: httpx.Client) -> None:
    """The list is ordered by last activity: a PATCH or a chat moves a session to the front."""
    alice = signup(client)
    first = create_session(client, alice, title="first")["id"]
    second = create_session(client, alice, title="second")["id"]
    third = create_session(client, alice, title="third")["id"]
    assert list_session_ids(client, alice) == [third, second, first]

    response = client.patch(f"/sessions/{first}", json={"title": "renamed"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert list_session_ids(client, alice) == [first, third, second]

    say(client, alice, second, "hello")
    assert list_session_ids(client, alice) == [second, first, third]


def test_list_limit(client: httpx.Client) -> None:
    """`limit` returns the newest N sessions."""
    alice = signup(client)
    ids = [create_session(client, alice, title=f"s{i}")["id"] for i in range(3)]
    assert list_session_ids(client, alice, limit=2) == [ids[2], ids[1]]
    assert list_session_ids(client, alice, limit=1) == [ids[2]]
    assert list_session_ids(client, alice, limit=200) == list(reversed(ids))


@pytest.mark.parametrize("limit", ["0", "201", "x", "-1"])
def test_list_bad_limit(client: httpx.Client, limit: str) -> None:
    """A limit outside 1..200 or not a number is a 422 naming `limit`."""
    alice = signup(client)
    response = client.get("/sessions", params={"limit": limit}, headers=alice.headers)
    assert "limit" in assert_error(response, 422, "validation_error")


def test_patch_changes_only_sent_fields(client: httpx.Client) -> None:
    """PATCH changes the fields sent, leaves the others, and bumps updated_at."""
    alice = signup(client)
    created = create_session(
        client, alice, title="Original", model="claude-haiku-4-5", system_prompt="Be brief."
    )
    sid = created["id"]

    response = client.patch(f"/sessions/{sid}", json={"title": "Renamed"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    renamed = response.json()
    assert renamed["title"] == "Renamed"
    assert renamed["model"] == "claude-haiku-4-5"
    assert renamed["system_prompt"] == "Be brief."
    assert renamed["created_at"] == created["created_at"]
    assert assert_utc(renamed["updated_at"]) > assert_utc(created["updated_at"])
    assert get_session(client, alice, sid) == renamed

    response = client.patch(
        f"/sessions/{sid}", json={"system_prompt": "Be thorough."}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Renamed"
    assert response.json()["system_prompt"] == "Be thorough."
    assert response.json()["model"] == "claude-haiku-4-5"


def test_patch_null_model_clears_it(client: httpx.Client) -> None:
    """`model: null` clears the model; `system_prompt: null` clears the prompt."""
    alice = signup(client)
    sid = create_session(
        client, alice, title="Keep me", model="claude-haiku-4-5", system_prompt="Be brief."
    )["id"]
    response = client.patch(f"/sessions/{sid}", json={"model": None}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["model"] is None
    assert response.json()["title"] == "Keep me"
    assert response.json()["system_prompt"] == "Be brief."

    response = client.patch(f"/sessions/{sid}", json={"system_prompt": None}, headers=alice.headers)
    assert response.status_code == 200, response.text
    stored = get_session(client, alice, sid)
    assert stored["model"] is None
    assert stored["system_prompt"] is None
    assert stored["title"] == "Keep me"


def test_patch_null_title_is_rejected(client: httpx.Client) -> None:
    """`title: null` is a 422 naming `title`, and the session is unchanged."""
    alice = signup(client)
    created = create_session(client, alice, title="Keep me", model="claude-haiku-4-5")
    response = client.patch(
        f"/sessions/{created['id']}", json={"title": None, "model": None}, headers=alice.headers
    )
    assert "title" in assert_error(response, 422, "validation_error")
    assert get_session(client, alice, created["id"]) == created


def test_delete_removes_session_and_its_messages(client: httpx.Client, server: LiveServer) -> None:
    """DELETE answers 204 and takes the session's messages with it, and only those."""
    alice = signup(client)
    doomed = create_session(client, alice, title="doomed")["id"]
    kept = create_session(client, alice, title="kept")["id"]
    say(client, alice, doomed, "one")
    say(client, alice, doomed, "two")
    say(client, alice, kept, "three")
    assert len(list_messages(client, alice, doomed)) == 4
    assert stored_message_count(server, doomed) == 4
    assert stored_message_count(server, kept) == 2
    total = server.count("messages")
    sessions = server.count("chat_sessions")

    response = client.delete(f"/sessions/{doomed}", headers=alice.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""

    assert stored_message_count(server, doomed) == 0
    assert server.count("messages") == total - 4
    assert server.count("chat_sessions") == sessions - 1
    assert_error(client.get(f"/sessions/{doomed}", headers=alice.headers), 404, "not_found")
    assert_error(
        client.get(f"/sessions/{doomed}/messages", headers=alice.headers), 404, "not_found"
    )
    assert_error(client.delete(f"/sessions/{doomed}", headers=alice.headers), 404, "not_found")
    assert list_session_ids(client, alice) == [kept]
    assert list_messages(client, alice, kept)[0]["content"] == "three"
    assert stored_message_count(server, kept) == 2


def test_messages_oldest_first_with_fields(client: httpx.Client, upstream: FakeAnthropic) -> None:
    """Messages come oldest first, alternating user and assistant, with every documented field."""
    alice = signup(client)
    sid = create_session(client, alice, model="claude-haiku-4-5")["id"]
    for text in ("one", "two", "three"):
        say(client, alice, sid, text)

    messages = list_messages(client, alice, sid)
    assert len(messages) == 6
    for message in messages:
        assert set(message) >= MESSAGE_FIELDS, message
        uuid.UUID(message["id"])
        assert message["session_id"] == sid
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    assert [m["content"] for m in messages[::2]] == ["one", "two", "three"]
    times = [assert_utc(m["created_at"]) for m in messages]
    assert times == sorted(times)
    assert len({m["id"] for m in messages}) == 6
    for reply in messages[1::2]:
        assert reply["status"] == "complete"
        assert reply["content"] == "Hello, world!"
        assert reply["model"] == "claude-haiku-4-5"
        assert reply["usage"] == {
            "input_tokens": 12,
            "output_tokens": 4,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "reasoning_tokens": None,
        }
    for question in messages[::2]:
        assert question["status"] == "complete"
        assert question["usage"] is None
    assert [r.body["model"] for r in upstream.requests] == ["claude-haiku-4-5"] * 3


def test_messages_limit_and_before(client: httpx.Client) -> None:
    """`limit` gives the newest N oldest-first; `before` pages back from a message id."""
    alice = signup(client)
    sid = create_session(client, alice)["id"]
    for text in ("one", "two", "three"):
        say(client, alice, sid, text)
    everything = list_messages(client, alice, sid)
    ids = [m["id"] for m in everything]

    assert [m["id"] for m in list_messages(client, alice, sid, limit=2)] == ids[4:]
    assert [m["id"] for m in list_messages(client, alice, sid, limit=3)] == ids[3:]
    assert [m["id"] for m in list_messages(client, alice, sid, limit=1000)] == ids

    page = list_messages(client, alice, sid, limit=2, before=ids[4])
    assert [m["id"] for m in page] == ids[2:4]
    assert page[0]["content"] == "two"
    page = list_messages(client, alice, sid, limit=2, before=page[0]["id"])
    assert [m["id"] for m in page] == ids[0:2]
    assert list_messages(client, alice, sid, before=ids[0]) == []
    assert [m["id"] for m in list_messages(client, alice, sid, before=ids[5])] == ids[:5]


@pytest.mark.parametrize("limit", ["0", "1001", "x"])
def test_messages_bad_limit(client: httpx.Client, limit: str) -> None:
    """A message limit outside 1..1000 or not a number is a 422 naming `limit`."""
    alice = signup(client)
    sid = create_session(client, alice)["id"]
    response = client.get(
        f"/sessions/{sid}/messages", params={"limit": limit}, headers=alice.headers
    )
    assert "limit" in assert_error(response, 422, "validation_error")


def test_messages_before_unknown_or_other_session(client: httpx.Client) -> None:
    """A `before` id that is not a message of this session is a 404; a malformed one a 422."""
    alice = signup(client)
    first = create_session(client, alice)["id"]
    second = create_session(client, alice)["id"]
    say(client, alice, first, "hello")
    foreign_id = list_messages(client, alice, first)[0]["id"]

    for before in (str(uuid.uuid4()), foreign_id):
        response = client.get(
            f"/sessions/{second}/messages", params={"before": before}, headers=alice.headers
        )
        assert_error(response, 404, "not_found")
    response = client.get(
        f"/sessions/{second}/messages", params={"before": "nope"}, headers=alice.headers
    )
    assert "before" in assert_error(response, 422, "validation_error")


def test_other_user_gets_404_for_everything(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic
) -> None:
    """User B gets 404 for each of A's ids; A's session, messages and every table stay unchanged."""
    alice = signup(client)
    bob = signup(client)
    sid = create_session(client, alice, title="Alice's", model="claude-haiku-4-5")["id"]
    say(client, alice, sid, "secret plans")
    session_before = get_session(client, alice, sid)
    messages_before = list_messages(client, alice, sid)
    message_id = messages_before[0]["id"]
    bob_sid = create_session(client, bob)["id"]
    requests_before = len(upstream.requests)
    counts_before = server.counts()

    attempts: list[httpx.Response] = [
        client.get(f"/sessions/{sid}", headers=bob.headers),
        client.patch(f"/sessions/{sid}", json={"title": "pwned"}, headers=bob.headers),
        client.patch(f"/sessions/{sid}", json={"model": None}, headers=bob.headers),
        client.delete(f"/sessions/{sid}", headers=bob.headers),
        client.get(f"/sessions/{sid}/messages", headers=bob.headers),
        client.get(
            f"/sessions/{bob_sid}/messages", params={"before": message_id}, headers=bob.headers
        ),
        client.post(
            "/chat", json={"message": "hi", "session_id": sid, "stream": True}, headers=bob.headers
        ),
        client.post(
            "/chat", json={"message": "hi", "session_id": sid, "stream": False}, headers=bob.headers
        ),
        client.post("/chat", json={"message": "hi", "session_id": sid}, headers=bob.headers),
    ]
    for response in attempts:
        assert_error(response, 404, "not_found")

    assert sid not in list_session_ids(client, bob)
    assert server.counts() == counts_before
    assert len(upstream.requests) == requests_before
    assert get_session(client, alice, sid) == session_before
    assert session_before["title"] == "Alice's"
    assert list_messages(client, alice, sid) == messages_before
    assert len(messages_before) == 2


def test_unauthenticated_is_401(client: httpx.Client) -> None:
    """Without a token every /sessions route answers 401 with `WWW-Authenticate: Bearer`."""
    alice = signup(client)
    sid = create_session(client, alice)["id"]
    attempts = [
        client.get("/sessions"),
        client.post("/sessions", json={}),
        client.get(f"/sessions/{sid}"),
        client.patch(f"/sessions/{sid}", json={"title": "x"}),
        client.delete(f"/sessions/{sid}"),
        client.get(f"/sessions/{sid}/messages"),
    ]
    for response in attempts:
        assert_error(response, 401, "not_authenticated")
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert get_session(client, alice, sid)["title"] == "New chat"


def test_invalid_token_is_401(client: httpx.Client) -> None:
    """A token that is present but invalid is a 401 `invalid_token`, never anonymous."""
    for header in ("Bearer not-a-jwt", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "Bearer"):
        response = client.get("/sessions", headers={"Authorization": header})
        assert_error(response, 401, "invalid_token")
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_token_in_query_string_is_ignored(client: httpx.Client) -> None:
    """A token in the query string does not authenticate the request."""
    alice = signup(client)
    response = client.get("/sessions", params={"access_token": alice.access_token})
    assert_error(response, 401, "not_authenticated")


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/messages")],
)
def test_malformed_id_is_422(client: httpx.Client, method: str, suffix: str) -> None:
    """An id in the path that is not a UUID is a 422 naming `session_id`."""
    alice = signup(client)
    body = {"title": "x"} if method == "PATCH" else None
    response = client.request(
        method, f"/sessions/not-a-uuid{suffix}", json=body, headers=alice.headers
    )
    assert "session_id" in assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/messages")],
)
def test_unknown_id_is_404(client: httpx.Client, method: str, suffix: str) -> None:
    """A well-formed id that does not exist is a 404."""
    alice = signup(client)
    body = {"title": "x"} if method == "PATCH" else None
    response = client.request(
        method, f"/sessions/{uuid.uuid4()}{suffix}", json=body, headers=alice.headers
    )
    assert_error(response, 404, "not_found")


def test_times_are_utc(client: httpx.Client) -> None:
    """Session and message times are ISO 8601 UTC and close to now."""
    alice = signup(client)
    created = create_session(client, alice)
    say(client, alice, created["id"], "hello")
    now = datetime.now(UTC)
    stamps = [created["created_at"], created["updated_at"]]
    stamps += [m["created_at"] for m in list_messages(client, alice, created["id"])]
    stamps += [s["updated_at"] for s in client.get("/sessions", headers=alice.headers).json()]
    for stamp in stamps:
        # A server writing local time as if it were UTC would be hours off.
        assert abs(assert_utc(stamp) - now) < timedelta(minutes=5), stamp
