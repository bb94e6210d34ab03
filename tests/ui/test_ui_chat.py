"""POST /ui/chat, driven by the real AI SDK client (DefaultChatTransport, readUIMessageStream)."""

from __future__ import annotations

import base64
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, HttpError, TextReply, ThinkingReply
from tests.node_client import PACKAGES, Running, drive, node_or_skip
from tests.support import Account, LiveServer, make_settings, signup

HAIKU = "claude-haiku-4-5"  # thinks with a budget


@pytest.fixture(scope="module")
def node() -> str:
    """Node, with the AI SDK installed in tests/node."""
    return node_or_skip()


def user(text: str, message_id: str = "u1") -> dict[str, Any]:
    """A user UIMessage as useChat makes it."""
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def assistant(text: str, message_id: str = "a1") -> dict[str, Any]:
    """An assistant UIMessage as useChat keeps it."""
    return {"id": message_id, "role": "assistant", "parts": [{"type": "text", "text": text}]}


def chunk_types(result: dict[str, Any]) -> list[str]:
    """The chunks' types, in order."""
    return [chunk["type"] for chunk in result["chunks"]]


@pytest.mark.parametrize("package", PACKAGES)
def test_a_guest_reply_is_assembled_by_the_client(
    node: str, server: LiveServer, upstream: FakeAnthropic, package: str
) -> None:
    """Every chunk passes the client's strict validation; the message holds the text."""
    upstream.enqueue(TextReply(chunks=("Hello", ", ", "world")))
    history = [user("Say hi", "u0"), assistant("Hi!", "a0"), user("Again, louder.")]
    result = drive(
        node,
        {"package": package, "api": f"{server.url}/ui/chat", "chatId": "c1", "messages": history},
    )
    assert result["error"] is None
    assert chunk_types(result) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    message = result["message"]
    assert message["role"] == "assistant"
    assert [p for p in message["parts"] if p["type"] == "text"] == [
        {"type": "text", "text": "Hello, world", "state": "done"}
    ]
    assert message["metadata"]["saved"] is False
    assert message["metadata"]["finishReason"] == "stop"
    assert message["metadata"]["usage"]["output_tokens"] > 0
    # The earlier turns went to the model as the history, in order.
    sent = upstream.requests[-1].body["messages"]
    assert [(m["role"], _text(m["content"])) for m in sent] == [
        ("user", "Say hi"),
        ("assistant", "Hi!"),
        ("user", "Again, louder."),
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_thinking_arrives_as_a_reasoning_part(
    node: str, server: LiveServer, upstream: FakeAnthropic, package: str
) -> None:
    upstream.enqueue(ThinkingReply(thinking=("Let me", " think."), chunks=("Answer",)))
    result = drive(
        node,
        {
            "package": package,
            "api": f"{server.url}/ui/chat",
            "chatId": "c2",
            "messages": [user("Why?")],
            "body": {"model": HAIKU, "reasoning": {"budget_tokens": 2048}},
        },
    )
    assert result["error"] is None
    assert chunk_types(result)[2:7] == [
        "reasoning-start",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
    ]
    parts = [p for p in result["message"]["parts"] if p["type"] in ("reasoning", "text")]
    assert [(p["type"], p["text"]) for p in parts] == [
        ("reasoning", "Let me think."),
        ("text", "Answer"),
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_an_upstream_error_is_an_error_chunk(
    node: str, server: LiveServer, upstream: FakeAnthropic, package: str
) -> None:
    upstream.enqueue(HttpError(400, "invalid_request_error", "bad prompt"))
    result = drive(
        node,
        {
            "package": package,
            "api": f"{server.url}/ui/chat",
            "chatId": "c3",
            "messages": [user("x")],
        },
    )
    assert "error" in chunk_types(result)
    assert result["error"] is not None  # terminateOnError: the client raises it
    error = next(c for c in result["chunks"] if c["type"] == "error")
    assert error["errorText"]


@pytest.mark.parametrize("package", PACKAGES)
def test_a_guest_regenerate_answers_the_messages_again(
    node: str, server: LiveServer, upstream: FakeAnthropic, package: str
) -> None:
    upstream.enqueue(TextReply(chunks=("Another",)))
    result = drive(
        node,
        {
            "package": package,
            "api": f"{server.url}/ui/chat",
            "chatId": "g",
            "trigger": "regenerate-message",
            "messages": [user("Once more")],
        },
    )
    assert reply_text(result) == "Another"


def test_bad_bodies_are_json_errors(server: LiveServer, upstream: FakeAnthropic) -> None:
    """Before any stream: the usual JSON errors, and nothing reaches the model."""
    before = len(upstream.requests)
    with server.client() as http:
        cases = [
            ({"id": "c", "messages": []}, 422),
            ({"id": "c", "messages": [assistant("hi")]}, 422),
            ({"id": "c", "messages": [user("   ")]}, 422),
            ({"id": "c", "messages": [user("x")], "trigger": "nonsense"}, 422),
            ({"id": "c", "messages": [user("x", "")]}, 422),
            ({"id": "c", "messages": [user("x")], "messageId": ""}, 422),
            (
                {
                    "id": "c",
                    "messages": [
                        {
                            "id": "u",
                            "role": "user",
                            "parts": [
                                {"type": "text", "text": "see"},
                                {"type": "file", "url": "https://example.com/a.png"},
                            ],
                        }
                    ],
                },
                422,
            ),
        ]
        for body, status in cases:
            response = http.post("/ui/chat", json=body)
            assert response.status_code == status, (body, response.text)
            assert response.json()["error"], response.text
    assert len(upstream.requests) == before


@pytest.fixture
def account(client: httpx.Client) -> Account:
    """A signed-up user."""
    return signup(client)


def signed_in(server: LiveServer, account: Account, package: str, chat_id: str) -> dict[str, Any]:
    """The part of a node request every signed-in call shares."""
    return {
        "package": package,
        "api": f"{server.url}/ui/chat",
        "headers": account.headers,
        "chatId": chat_id,
    }


def reply_text(result: dict[str, Any]) -> str:
    """The assembled message's text."""
    assert result["error"] is None, result["error"]
    return "".join(p["text"] for p in result["message"]["parts"] if p["type"] == "text")


@pytest.mark.parametrize("package", PACKAGES)
def test_a_signed_in_chat_is_saved_under_use_chats_id(
    node: str,
    server: LiveServer,
    upstream: FakeAnthropic,
    client: httpx.Client,
    account: Account,
    package: str,
) -> None:
    """A made-up chat id makes a session that keeps it; the history comes from the database,
    never from the messages the client sends; hydration gives the branch back as UIMessages."""
    chat_id = f"chat-{package}-{uuid.uuid4().hex[:8]}"
    base = signed_in(server, account, package, chat_id)
    upstream.enqueue(TextReply(chunks=("First", " answer")))
    first = drive(node, {**base, "messages": [user("Hello")]})
    assert reply_text(first) == "First answer"
    metadata = first["message"]["metadata"]
    assert metadata["saved"] is True
    reply_id = first["message"]["id"]
    assert reply_id == metadata["assistantMessageId"]
    upstream.enqueue(TextReply(chunks=("Second",)))
    tampered = assistant("Not what was said", reply_id)
    second = drive(node, {**base, "messages": [user("Hello"), tampered, user("More", "u2")]})
    assert reply_text(second) == "Second"
    assert second["message"]["metadata"]["sessionId"] == metadata["sessionId"]
    sent = upstream.requests[-1].body["messages"]
    assert [(m["role"], _text(m["content"])) for m in sent] == [
        ("user", "Hello"),
        ("assistant", "First answer"),
        ("user", "More"),
    ]
    # The session keeps useChat's id, and GET /sessions sees it like any other.
    sessions = client.get("/sessions", headers=account.headers).json()
    assert metadata["sessionId"] in [s["id"] for s in sessions]
    hydrated = client.get(f"/ui/chat/{chat_id}/messages", headers=account.headers)
    assert hydrated.status_code == 200
    messages = hydrated.json()
    assert [(m["id"], m["role"]) for m in messages] == [
        ("u1", "user"),
        (reply_id, "assistant"),
        ("u2", "user"),
        (second["message"]["id"], "assistant"),
    ]
    assert messages[1]["parts"] == [{"type": "text", "text": "First answer", "state": "done"}]
    assert drive(node, {"package": package, "validate": messages}) == {"valid": True}
    # Another user, or a guest, gets nothing of it.
    assert client.get(f"/ui/chat/{chat_id}/messages", headers=signup(client).headers).json() == []
    assert client.get(f"/ui/chat/{chat_id}/messages").json() == []


@pytest.mark.parametrize("package", PACKAGES)
def test_regenerate_and_edit_make_branches(
    node: str,
    server: LiveServer,
    upstream: FakeAnthropic,
    client: httpx.Client,
    account: Account,
    package: str,
) -> None:
    chat_id = f"branches-{package}-{uuid.uuid4().hex[:8]}"
    base = signed_in(server, account, package, chat_id)
    upstream.enqueue(TextReply(chunks=("One",)))
    first = drive(node, {**base, "messages": [user("Q1")]})
    reply_id = first["message"]["id"]
    # useChat's regenerate(): the messages up to the question, and the reply it replaces.
    upstream.enqueue(TextReply(chunks=("One again",)))
    again = drive(
        node,
        {**base, "trigger": "regenerate-message", "messageId": reply_id, "messages": [user("Q1")]},
    )
    assert reply_text(again) == "One again"
    assert again["message"]["id"] != reply_id
    # An edit: the edited message with its id as messageId; it branches from what u1 followed.
    upstream.enqueue(TextReply(chunks=("Edited answer",)))
    edited = drive(node, {**base, "messageId": "u1", "messages": [user("Q1, edited", "u1")]})
    assert reply_text(edited) == "Edited answer"
    assert [(m["role"], _text(m["content"])) for m in upstream.requests[-1].body["messages"]] == [
        ("user", "Q1, edited")
    ]
    messages = client.get(f"/ui/chat/{chat_id}/messages", headers=account.headers).json()
    assert [m["parts"][0]["text"] for m in messages] == ["Q1, edited", "Edited answer"]
    assert messages[0]["id"] == "u1"  # the edit kept the edited message's id
    # useChat's plain regenerate(): no messageId, the messages end at the (edited) question.
    upstream.enqueue(TextReply(chunks=("Edited, again",)))
    plain = drive(
        node, {**base, "trigger": "regenerate-message", "messages": [user("Q1, edited", "u1")]}
    )
    assert reply_text(plain) == "Edited, again"
    # regenerate({messageId}) naming the question: the same.
    upstream.enqueue(TextReply(chunks=("And again",)))
    named = drive(
        node,
        {
            **base,
            "trigger": "regenerate-message",
            "messageId": "u1",
            "messages": [user("Q1, edited", "u1")],
        },
    )
    assert reply_text(named) == "And again"
    messages = client.get(f"/ui/chat/{chat_id}/messages", headers=account.headers).json()
    assert [m["parts"][0]["text"] for m in messages] == ["Q1, edited", "And again"]
    tree = client.get(
        f"/sessions/{first['message']['metadata']['sessionId']}/messages?tree=true",
        headers=account.headers,
    ).json()
    assert len(tree["messages"] if isinstance(tree, dict) else tree) == 7


@pytest.mark.parametrize("package", PACKAGES)
def test_resume_replays_a_reply_in_progress_and_204_when_none(
    node: str,
    server: LiveServer,
    upstream: FakeAnthropic,
    account: Account,
    package: str,
) -> None:
    """useChat({resume: true}) after a reload: the reply from its start, then live, whole."""
    chat_id = f"resume-{package}-{uuid.uuid4().hex[:8]}"
    base = signed_in(server, account, package, chat_id)
    assert drive(node, {**base, "resume": True})["status"] == "nothing-to-resume"
    hold = threading.Event()
    upstream.enqueue(TextReply(chunks=("Part one", ", part two"), hold=hold))
    sending = Running(node, {**base, "messages": [user("Go")]})
    try:
        sending.wait_for_first_chunk()
        resuming = Running(node, {**base, "resume": True})
        resuming.wait_for_first_chunk()  # the replay has begun while the reply is held
        hold.set()
        resumed = resuming.result()
        sent = sending.result()
    finally:
        hold.set()
    assert reply_text(sent) == "Part one, part two"
    assert reply_text(resumed) == "Part one, part two"
    assert chunk_types(resumed)[:2] == ["start", "start-step"]
    assert chunk_types(resumed)[-1] == "finish"
    assert drive(node, {**base, "resume": True})["status"] == "nothing-to-resume"


@pytest.mark.parametrize("package", PACKAGES)
def test_a_reload_mid_reply_hydrates_then_resumes_through_use_chat(
    node: str,
    server: LiveServer,
    upstream: FakeAnthropic,
    client: httpx.Client,
    account: Account,
    package: str,
) -> None:
    """What useChat({resume: true}) does on mount: hydrated messages, then resumeStream(); the
    reply appears once, whole, after the question."""
    chat_id = f"reload-{package}-{uuid.uuid4().hex[:8]}"
    base = signed_in(server, account, package, chat_id)
    hold = threading.Event()
    upstream.enqueue(TextReply(chunks=("Part one", ", part two"), hold=hold))
    sending = Running(node, {**base, "messages": [user("Go")]})
    try:
        sending.wait_for_first_chunk()
        hydrated = client.get(f"/ui/chat/{chat_id}/messages", headers=account.headers).json()
        assert [m["role"] for m in hydrated] == ["user"]  # the reply streaming is left out
        reloaded = Running(
            node, {**base, "messages": hydrated, "steps": [{"resume": True}]}, script="use_chat.mjs"
        )
        reloaded.wait_for("response")  # the replay has begun while the reply is held
        hold.set()
        steps = reloaded.steps()
        sending.result()
    finally:
        hold.set()
    [step] = steps
    assert step["error"] is None
    assert [(m["role"], _ui_text(m)) for m in step["messages"]] == [
        ("user", "Go"),
        ("assistant", "Part one, part two"),
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_use_chats_own_requests_send_edit_regenerate(
    node: str,
    server: LiveServer,
    upstream: FakeAnthropic,
    client: httpx.Client,
    account: Account,
    package: str,
) -> None:
    """The library builds the requests (AbstractChat, what useChat wraps): a conversation, an
    edit of the first message, a regenerate; then a reload hydrates the same messages."""
    chat_id = f"abstract-{package}-{uuid.uuid4().hex[:8]}"
    upstream.enqueue(
        TextReply(chunks=("One",)), TextReply(chunks=("Two",)), TextReply(chunks=("Edited",))
    )
    upstream.enqueue(TextReply(chunks=("Regenerated",)))
    request = {
        **signed_in(server, account, package, chat_id),
        "steps": [
            {"send": "First"},
            {"send": "Second"},
            {"edit": 0, "text": "First, edited"},
            {"regenerate": True},
        ],
    }
    steps = drive(node, request, script="use_chat.mjs")["steps"]
    assert [s["error"] for s in steps] == [None] * 4
    texts = [[_ui_text(m) for m in s["messages"]] for s in steps]
    assert texts == [
        ["First", "One"],
        ["First", "One", "Second", "Two"],
        ["First, edited", "Edited"],
        ["First, edited", "Regenerated"],
    ]
    # What the server keeps is what the client shows, ids included.
    hydrated = client.get(f"/ui/chat/{chat_id}/messages", headers=account.headers).json()
    assert [(m["id"], _ui_text(m)) for m in hydrated] == [
        (m["id"], _ui_text(m)) for m in steps[-1]["messages"]
    ]
    # The edit went to the model without the turns it replaced.
    edit_prompt = upstream.requests[-2].body["messages"]
    assert [_text(m["content"]) for m in edit_prompt] == ["First, edited"]


def _ui_text(message: dict[str, Any]) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


def test_unknown_chats_and_messages(
    client: httpx.Client, upstream: FakeAnthropic, account: Account
) -> None:
    """A regenerate or edit naming what is not there is a 404; a resume of it is a 204."""
    before = len(upstream.requests)
    body = {"id": "nowhere", "messages": [user("hi")], "messageId": "m-unknown"}
    assert client.post("/ui/chat", json=body, headers=account.headers).status_code == 404
    regenerate = {**body, "trigger": "regenerate-message"}
    assert client.post("/ui/chat", json=regenerate, headers=account.headers).status_code == 404
    assert client.get("/ui/chat/nowhere/stream", headers=account.headers).status_code == 204
    assert client.get("/ui/chat/nowhere/stream").status_code == 204
    assert len(upstream.requests) == before


def test_another_users_chat_is_out_of_reach(
    server: LiveServer, upstream: FakeAnthropic, client: httpx.Client, account: Account
) -> None:
    """By Zyron id or by useChat's id, another user's chat and messages are not found."""
    upstream.enqueue(TextReply(chunks=("Mine",)))
    events = client.post(
        "/ui/chat", json={"id": "alices", "messages": [user("hi")]}, headers=account.headers
    )
    assert events.status_code == 200
    mine = client.get("/ui/chat/alices/messages", headers=account.headers).json()
    session_id = mine[0]["metadata"]["sessionId"]
    reply_id = mine[1]["id"]
    before = (server.counts(), len(upstream.requests))
    mallory = signup(client).headers
    for chat_id in ("alices", session_id):
        for extra in (
            {"messageId": "u1"},
            {"messageId": reply_id, "trigger": "regenerate-message"},
        ):
            body = {"id": chat_id, "messages": [user("mine now")], **extra}
            assert client.post("/ui/chat", json=body, headers=mallory).status_code == 404
        assert client.get(f"/ui/chat/{chat_id}/messages", headers=mallory).json() == []
        assert client.get(f"/ui/chat/{chat_id}/stream", headers=mallory).status_code == 204
    after = server.counts()
    assert after["messages"] == before[0]["messages"]
    assert after["chat_sessions"] == before[0]["chat_sessions"]
    assert len(upstream.requests) == before[1]


def _text(content: Any) -> str:
    """A message's text as the Anthropic API receives it (a string or text blocks)."""
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if block.get("type") == "text")


@pytest.mark.parametrize("package", PACKAGES)
def test_a_guest_file_part_is_an_attachment(
    node: str, server: LiveServer, upstream: FakeAnthropic, package: str
) -> None:
    """useChat's file parts are data URLs for a guest: they reach the model as the file."""
    upstream.enqueue(TextReply(chunks=("A pixel.",)))
    message = {
        "id": "u1",
        "role": "user",
        "parts": [
            {"type": "text", "text": "What is this?"},
            {"type": "file", "mediaType": "image/png", "filename": "p.png", "url": PNG_URL},
        ],
    }
    result = drive(
        node,
        {
            "package": package,
            "api": f"{server.url}/ui/chat",
            "chatId": "c4",
            "messages": [message],
            "body": {"model": HAIKU},
        },
    )
    assert result["error"] is None
    content = upstream.requests[-1].body["messages"][-1]["content"]
    images = [block for block in content if block["type"] == "image"]
    assert images[0]["source"]["media_type"] == "image/png"
    assert images[0]["source"]["data"] == PNG_URL.partition(",")[2]


def test_a_history_past_the_cap_is_refused(server: LiveServer, upstream: FakeAnthropic) -> None:
    cap = server.settings.max_history_messages
    messages = [user(f"turn {i}", f"u{i}") for i in range(cap + 1)] + [user("last", "z")]
    with server.client() as http:
        response = http.post("/ui/chat", json={"id": "c", "messages": messages})
    assert response.status_code == 422
    assert "history" in response.json()["detail"]


def test_a_cancelled_reply_ends_with_abort_and_an_error_closes_its_part() -> None:
    """The chunker alone: what a cancelled or failed reply becomes."""
    from zyron.streams.events import StreamEvent
    from zyron.ui.chunks import Chunker

    def run(*events: StreamEvent) -> list[dict[str, Any]]:
        chunker = Chunker()
        return [chunk for event in events for chunk in chunker.chunks(event)]

    session = StreamEvent(0, "session", {"assistant_message_id": "m", "saved": True})
    delta = StreamEvent(2, "delta", {"text": "Hi"})
    cancelled = run(session, delta, StreamEvent(3, "done", {"stop_reason": "cancelled"}))
    assert [c["type"] for c in cancelled][-2:] == ["text-end", "abort"]
    failed = run(session, delta, StreamEvent(3, "error", {"error": "x", "detail": "It broke."}))
    assert failed[-2:] == [
        {"type": "text-end", "id": "text-1"},
        {"type": "error", "errorText": "It broke."},
    ]


# A 1 x 1 PNG.
PNG_URL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQ"
    "DwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def test_a_chat_id_with_a_slash_resumes_and_hydrates(
    server: LiveServer, upstream: FakeAnthropic, client: httpx.Client, account: Account
) -> None:
    """useChat puts the id in the path encoded (%2F); it still names the chat."""
    upstream.enqueue(TextReply(chunks=("Slashed",)))
    body = {"id": "team/chat 1", "messages": [user("hi")]}
    assert client.post("/ui/chat", json=body, headers=account.headers).status_code == 200
    encoded = "team%2Fchat%201"
    messages = client.get(f"/ui/chat/{encoded}/messages", headers=account.headers).json()
    assert [_ui_text(m) for m in messages] == ["hi", "Slashed"]
    assert client.get(f"/ui/chat/{encoded}/stream", headers=account.headers).status_code == 204


def test_a_signed_in_file_part_names_an_upload_and_hydrates_as_its_url(
    backend: Backend, upstream: FakeAnthropic, data_dir: Path
) -> None:
    """A file part is the URL of an uploaded file; hydrated, it is that URL again, on the
    address clients use (PUBLIC_URL) rather than the one the request reached."""
    public = "https://chat.example.com/zyron"
    served = backend.claude_server(data_dir, upstream, public_url=public + "/")
    with served as server, server.client() as http:
        account = signup(http)
        png = base64.b64decode(PNG_URL.split(",", 1)[1])
        stored = http.post(
            "/files", files={"file": ("p.png", png, "image/png")}, headers=account.headers
        ).json()
        question = user("What is it?")
        question["parts"].append(
            {"type": "file", "mediaType": "image/png", "url": f"{public}/files/{stored['id']}"}
        )
        upstream.enqueue(TextReply(chunks=("A pixel",)))
        body = {"id": "with-file", "messages": [question]}
        assert http.post("/ui/chat", json=body, headers=account.headers).status_code == 200
        content = upstream.requests[-1].body["messages"][-1]["content"]
        assert [base64.b64decode(b["source"]["data"]) for b in content if b["type"] == "image"] == [
            png
        ]
        hydrated = http.get("/ui/chat/with-file/messages", headers=account.headers).json()
    files = [p for p in hydrated[0]["parts"] if p["type"] == "file"]
    assert files == [
        {
            "type": "file",
            "mediaType": "image/png",
            "filename": "p.png",
            "url": f"{public}/files/{stored['id']}",
        }
    ]
    # Not the URL of an upload: refused, saying what a file part must be.
    question["parts"][-1]["url"] = "https://elsewhere.example/cat.png"
    with backend.claude_server(data_dir, upstream) as server, server.client() as http:
        account = signup(http)
        refused = http.post(
            "/ui/chat", json={"id": "bad-file", "messages": [question]}, headers=account.headers
        )
    assert refused.status_code == 422
    assert "uploaded file" in refused.json()["detail"]


def test_public_url_must_be_an_http_url(data_dir: Path) -> None:
    for bad in ("chat.example.com", "ftp://chat.example.com", "https://x.example?a=1"):
        with pytest.raises(ValueError, match="PUBLIC_URL"):
            make_settings(data_dir, public_url=bad)
    assert make_settings(data_dir, public_url="").public_url is None
