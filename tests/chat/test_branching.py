"""Edits (parent_id) and regenerate: a session becomes a tree; the newest branch is shown."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.support import Account, LiveServer, parse_sse, signup, stream_chat


@pytest.fixture
def alice(client: httpx.Client) -> Account:
    """A signed-up user."""
    return signup(client)


def _say(
    client: httpx.Client,
    account: Account,
    upstream: FakeAnthropic,
    message: str,
    reply: str,
    **body: Any,
) -> dict[str, Any]:
    upstream.enqueue(TextReply(chunks=(reply,)))
    events = stream_chat(client, {"message": message, **body}, account.headers)
    assert events[-1].event == "done", events[-1].data
    return events[0].data


def _page(client: httpx.Client, account: Account, sid: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"/sessions/{sid}/messages", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    page: list[dict[str, Any]] = response.json()
    return page


def _conversation(
    client: httpx.Client, account: Account, upstream: FakeAnthropic
) -> tuple[str, list[dict[str, Any]]]:
    """q1 → a1 → q2 → a2; returns the session id and the four messages."""
    first = _say(client, account, upstream, "q1", "a1")
    sid = first["session_id"]
    _say(client, account, upstream, "q2", "a2", session_id=sid)
    return sid, _page(client, account, sid)


def test_edit_branches_from_an_earlier_reply(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """parent_id = a1: the new message follows a1; the model sees q1, a1, the edit."""
    sid, (_q1, a1, q2, a2) = _conversation(client, alice, upstream)
    edited = _say(client, alice, upstream, "q2 edited", "a2'", session_id=sid, parent_id=a1["id"])

    assert upstream.requests[-1].body["messages"] == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2 edited"},
    ]
    active = _page(client, alice, sid)
    assert [m["content"] for m in active] == ["q1", "a1", "q2 edited", "a2'"]
    assert active[2]["parent_id"] == a1["id"]
    assert active[2]["id"] == edited["user_message_id"]

    tree = _page(client, alice, sid, tree="true")
    assert [m["content"] for m in tree] == ["q1", "a1", "q2", "a2", "q2 edited", "a2'"]
    assert tree[2]["parent_id"] == tree[4]["parent_id"] == a1["id"]

    # Continuing without parent_id follows the active (edited) branch.
    _say(client, alice, upstream, "q3", "a3", session_id=sid)
    assert [m["content"] for m in upstream.requests[-1].body["messages"]] == [
        "q1",
        "a1",
        "q2 edited",
        "a2'",
        "q3",
    ]
    assert q2["id"] not in [m["id"] for m in _page(client, alice, sid)]
    assert a2["id"] in [m["id"] for m in _page(client, alice, sid, tree="true")]


def test_edit_of_the_first_message_is_a_new_root(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """parent_id null starts over: the model sees only the new message."""
    sid, _ = _conversation(client, alice, upstream)
    _say(client, alice, upstream, "q1 edited", "a1'", session_id=sid, parent_id=None)
    assert upstream.requests[-1].body["messages"] == [{"role": "user", "content": "q1 edited"}]
    active = _page(client, alice, sid)
    assert [m["content"] for m in active] == ["q1 edited", "a1'"]
    assert active[0]["parent_id"] is None


def test_bad_parent_ids_are_refused_and_change_nothing(
    server: LiveServer, client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """A user message, another session's reply, a stranger's, or no session: clear errors."""
    sid, (q1, a1, _, _) = _conversation(client, alice, upstream)
    _other_sid, (_, other_a1, _, _) = _conversation(client, alice, upstream)
    bob = signup(client)
    _bob_sid, (_, bob_a1, _, _) = _conversation(client, bob, upstream)
    requests = len(upstream.requests)
    before = server.counts()

    cases = [
        ({"session_id": sid, "parent_id": q1["id"]}, 422, "validation_error"),
        ({"session_id": sid, "parent_id": other_a1["id"]}, 404, "not_found"),
        ({"session_id": sid, "parent_id": bob_a1["id"]}, 404, "not_found"),
        ({"parent_id": a1["id"]}, 422, "validation_error"),
        ({"session_id": sid, "parent_id": "not-a-uuid"}, 422, "validation_error"),
    ]
    for extra, status, code in cases:
        response = client.post("/chat", json={"message": "x", **extra}, headers=alice.headers)
        assert response.status_code == status, (extra, response.text)
        assert response.json()["error"] == code
    guest = client.post("/chat", json={"message": "x", "parent_id": a1["id"]})
    assert guest.status_code == 422
    assert guest.json()["error"] == "validation_error"
    assert server.counts() == before
    assert len(upstream.requests) == requests


def test_regenerate_makes_a_sibling_reply(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """A new reply to the same question: same parent, newest, so its branch is active."""
    sid, (_q1, _a1, q2, a2) = _conversation(client, alice, upstream)
    upstream.enqueue(TextReply(chunks=("a2 again",)))
    with client.stream("POST", f"/chat/{a2['id']}/regenerate", headers=alice.headers) as response:
        assert response.status_code == 200
        events, _ = parse_sse(response.read().decode())
    assert [e.event for e in events] == ["session", "delta", "done"]
    session = events[0].data
    assert session["user_message_id"] == q2["id"]
    assert session["assistant_message_id"] != a2["id"]
    assert upstream.requests[-1].body["messages"] == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    active = _page(client, alice, sid)
    assert [m["content"] for m in active] == ["q1", "a1", "q2", "a2 again"]
    assert active[-1]["parent_id"] == q2["id"]
    tree = _page(client, alice, sid, tree="true")
    assert [m["content"] for m in tree] == ["q1", "a1", "q2", "a2", "a2 again"]


def test_regenerate_as_json_with_another_model(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """stream=false answers with the new reply; `model` picks another model for it."""
    _, (_, a1, _, _) = _conversation(client, alice, upstream)
    upstream.enqueue(TextReply(chunks=("again",)))
    response = client.post(
        f"/chat/{a1['id']}/regenerate",
        json={"stream": False, "model": "claude-opus-5"},
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["message"]["content"] == "again"
    assert upstream.requests[-1].body["model"] == "claude-opus-5"
    assert upstream.requests[-1].body["messages"] == [{"role": "user", "content": "q1"}]


def test_regenerate_refuses_what_it_cannot_regenerate(
    server: LiveServer, client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """A user message, a stranger's reply, an unknown model, no token: errors, no writes."""
    _, (q1, a1, _, _) = _conversation(client, alice, upstream)
    bob = signup(client)
    requests = len(upstream.requests)
    before = server.counts()
    cases = [
        (f"/chat/{q1['id']}/regenerate", alice.headers, {}, 422, "validation_error"),
        (f"/chat/{a1['id']}/regenerate", bob.headers, {}, 404, "not_found"),
        (
            "/chat/00000000-0000-0000-0000-000000000000/regenerate",
            alice.headers,
            {},
            404,
            "not_found",
        ),
        (f"/chat/{a1['id']}/regenerate", alice.headers, {"model": "gpt-9"}, 422, "unknown_model"),
        (f"/chat/{a1['id']}/regenerate", {}, {}, 401, "not_authenticated"),
        (
            f"/chat/{a1['id']}/regenerate",
            alice.headers,
            {"max_tokens": 10**9},
            422,
            "validation_error",
        ),
    ]
    for path, headers, body, status, code in cases:
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == status, (path, body, response.text)
        assert response.json()["error"] == code
    assert server.counts() == before
    assert len(upstream.requests) == requests


def test_paging_back_follows_the_branch(
    client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """`before` pages up the active branch, never into the abandoned one."""
    sid, (q1, a1, _, _) = _conversation(client, alice, upstream)
    _say(client, alice, upstream, "q2 edited", "a2'", session_id=sid, parent_id=a1["id"])
    newest = _page(client, alice, sid, limit=2)
    assert [m["content"] for m in newest] == ["q2 edited", "a2'"]
    older = _page(client, alice, sid, limit=2, before=newest[0]["id"])
    assert [m["content"] for m in older] == ["q1", "a1"]
    assert _page(client, alice, sid, limit=2, before=q1["id"]) == []
    response = client.get(
        f"/sessions/{sid}/messages",
        params={"before": "00000000-0000-0000-0000-000000000000"},
        headers=alice.headers,
    )
    assert response.status_code == 404


def test_nothing_follows_a_reply_still_being_produced(
    server: LiveServer, client: httpx.Client, alice: Account, upstream: FakeAnthropic
) -> None:
    """A second send, an edit after, or a regenerate of a streaming reply is a 409, no writes."""
    sid, (_, a1, _, _) = _conversation(client, alice, upstream)
    hold = threading.Event()
    upstream.enqueue(TextReply(chunks=("w0 ", "w1"), hold=hold))
    requests = len(upstream.requests) + 1
    with client.stream(
        "POST", "/chat", json={"message": "slow", "session_id": sid}, headers=alice.headers
    ) as slow:
        lines = slow.iter_lines()
        session_event = parse_sse(next(lines) + "\n" + next(lines) + "\n" + next(lines))[0][0]
        streaming = session_event.data["assistant_message_id"]
        while next(lines) != "event: delta":  # the model is answering: its request is in
            pass
        before = server.counts()
        cases: list[tuple[str, dict[str, Any]]] = [
            ("/chat", {"message": "again", "session_id": sid}),
            ("/chat", {"message": "edit", "session_id": sid, "parent_id": streaming}),
            (f"/chat/{streaming}/regenerate", {}),
        ]
        for path, body in cases:
            response = client.post(path, json=body, headers=alice.headers)
            assert response.status_code == 409, (path, body, response.text)
            assert response.json()["error"] == "reply_in_progress"
        assert server.counts() == before
        assert len(upstream.requests) == requests
        # Branching from an earlier, finished reply is still allowed meanwhile.
        _say(client, alice, upstream, "q2 again", "a2'", session_id=sid, parent_id=a1["id"])
        hold.set()
        assert "event: done" in list(lines)
    # Once it is done, the session takes new messages again.
    _say(client, alice, upstream, "after", "ok", session_id=sid)
