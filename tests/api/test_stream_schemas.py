"""Real streamed events validate against the schemas /openapi.json gives for them.

Every kind of native event and every UI chunk type Zyron sends is produced over HTTP (signed
in and as a guest, thinking, titles, errors, cancels, resumes) and checked with jsonschema_rs
against the served document, so the document cannot drift from the streams.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.fakes.anthropic_upstream import (
    FakeAnthropic,
    MidStreamError,
    TextReply,
    ThinkingReply,
)
from tests.support import Account, LiveServer, live_server, make_settings, parse_sse, signup

NATIVE_KINDS = {"session", "reasoning", "delta", "done", "error", "title"}
UI_TYPES = {
    "start",
    "start-step",
    "text-start",
    "text-delta",
    "text-end",
    "reasoning-start",
    "reasoning-delta",
    "reasoning-end",
    "finish-step",
    "finish",
    "abort",
    "error",
}
HAIKU = "claude-haiku-4-5"  # thinks with a budget


@pytest.fixture(scope="module")
def titled(
    fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server on SQLite that titles new sessions, so `title` events are sent too."""
    settings = make_settings(
        tmp_path_factory.mktemp("stream-schemas"),
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=fake_anthropic.base_url,
        auto_titles=True,
        title_model=HAIKU,
        title_wait_seconds=5,
    )
    with live_server(settings) as running:
        yield running


@pytest.fixture
def http(titled: LiveServer, upstream: FakeAnthropic) -> Iterator[httpx.Client]:
    """A client of that server."""
    with titled.client() as client:
        yield client


@pytest.fixture(scope="module")
def validators(titled: LiveServer) -> dict[str, jsonschema_rs.Draft202012Validator]:
    """Validators of the served document's ReplyStreamEvent and UIMessageChunk."""
    with titled.client() as client:
        document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    found = {}
    for name in ("ReplyStreamEvent", "UIMessageChunk"):
        schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
        assert jsonschema_rs.meta.is_valid(schema), name
        found[name] = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
    # Each stream names its item schema: the SSE event as sent, its data JSON text.
    for path, method, name in (
        ("/chat", "post", "ReplyStreamItem"),
        ("/chat/{message_id}/regenerate", "post", "ReplyStreamItem"),
        ("/chat/{message_id}/stream", "get", "ReplyStreamItem"),
        ("/sessions/{session_id}/stream", "get", "ReplyStreamItem"),
        ("/ui/chat", "post", "UIMessageStreamItem"),
        ("/ui/chat/{chat_id}/stream", "get", "UIMessageStreamItem"),
    ):
        media = document["paths"][path][method]["responses"]["200"]["content"]["text/event-stream"]
        item = {"$ref": f"#/components/schemas/{name}"}
        assert media == {"schema": {"type": "array", "items": item}, "itemSchema": item}, path
    for name in ("ReplyStreamItem", "UIMessageStreamItem"):
        schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
        assert jsonschema_rs.meta.is_valid(schema), name
        found[name] = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
    return found


class Seen:
    """Validates events and chunks as they come, and remembers which kinds were seen."""

    def __init__(self, validators: dict[str, jsonschema_rs.Draft202012Validator]) -> None:
        self.validators = validators
        self.kinds: set[str] = set()
        self.types: set[str] = set()

    def native(self, raw: str) -> list[dict[str, Any]]:
        """Check a native stream body; return its events as the schema's items."""
        events, _ = parse_sse(raw)
        items: list[dict[str, Any]] = []
        for event in events:
            item = {"id": event.id, "event": event.event, "data": event.data}
            self.validators["ReplyStreamEvent"].validate(item)
            wire = {**item, "data": json.dumps(event.data)}
            self.validators["ReplyStreamItem"].validate(wire)
            self.kinds.add(event.event)
            items.append(item)
        return items

    def ui(self, raw: str) -> list[dict[str, Any]]:
        """Check a UI message stream body; return its chunks."""
        lines = [block for block in raw.split("\n\n") if block.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        for line in lines:
            self.validators["UIMessageStreamItem"].validate({"data": line[len("data: ") :]})
        chunks = [json.loads(line[len("data: ") :]) for line in lines[:-1]]
        for chunk in chunks:
            self.validators["UIMessageChunk"].validate(chunk)
            self.types.add(chunk["type"])
        return chunks


def _post_stream(
    http: httpx.Client, path: str, body: dict[str, Any], account: Account | None
) -> str:
    with http.stream("POST", path, json=body, headers=account.headers if account else {}) as r:
        assert r.status_code == 200, r.read().decode()
        return r.read().decode()


def _ui_user(text: str, message_id: str = "u1") -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def _wait_streaming(http: httpx.Client, account: Account, exclude: str) -> str:
    """Wait until a reply streams in a session other than `exclude`; return the reply's id."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for chat in http.get("/sessions", headers=account.headers).json():
            if chat["id"] == exclude:
                continue
            path = f"/sessions/{chat['id']}/messages"
            for message in http.get(path, headers=account.headers).json():
                if message["role"] == "assistant" and message["status"] == "streaming":
                    reply_id: str = message["id"]
                    return reply_id
        time.sleep(0.05)
    raise AssertionError("the reply never started")


def test_every_event_and_chunk_matches_the_document(
    http: httpx.Client,
    upstream: FakeAnthropic,
    validators: dict[str, jsonschema_rs.Draft202012Validator],
) -> None:
    """Thinking, titles, guests, errors, cancels and resumes: each item validates."""
    seen = Seen(validators)
    alice = signup(http)
    # Signed in, thinking (one block redacted), then a title: session … done, title.
    upstream.enqueue(ThinkingReply(redacted=True), TextReply(chunks=('"Thoughts"',)))
    events = seen.native(
        _post_stream(
            http,
            "/chat",
            {"message": "Think first.", "model": HAIKU, "reasoning": {"budget_tokens": 1024}},
            alice,
        )
    )
    assert [e["event"] for e in events][-1] == "title"
    session_id = events[0]["data"]["session_id"]
    reply_id = events[0]["data"]["assistant_message_id"]
    # A replay of the finished reply (turns_sent and turns_omitted are null in it).
    with http.stream("GET", f"/chat/{reply_id}/stream", headers=alice.headers) as response:
        seen.native(response.read().decode())
    with http.stream("GET", f"/sessions/{session_id}/stream", headers=alice.headers) as response:
        seen.native(response.read().decode())
    # A regenerate, and an upstream error mid-reply.
    upstream.enqueue(MidStreamError())
    events = seen.native(_post_stream(http, f"/chat/{reply_id}/regenerate", {}, alice))
    assert events[-1]["event"] == "error"
    # A guest: the ids are null.
    upstream.enqueue(TextReply())
    events = seen.native(_post_stream(http, "/chat", {"message": "Hi"}, None))
    assert events[0]["data"]["saved"] is False
    # A cancelled reply: `done` with stop_reason cancelled; in the UI stream, `abort`.
    hold = threading.Event()
    upstream.enqueue(TextReply(chunks=("One", "Two"), hold=hold))
    body: dict[str, str] = {}

    def ui_chat() -> None:
        body["raw"] = _post_stream(
            http, "/ui/chat", {"id": "chat-cancel", "messages": [_ui_user("Go on")]}, alice
        )

    runner = threading.Thread(target=ui_chat)
    runner.start()
    try:
        streaming = _wait_streaming(http, alice, exclude=session_id)
        # The UI resume of a reply in progress, and the native one, while it runs.
        resumed: dict[str, str] = {}

        def ui_resume() -> None:
            with http.stream("GET", "/ui/chat/chat-cancel/stream", headers=alice.headers) as r:
                assert r.status_code == 200
                resumed["raw"] = r.read().decode()

        resumer = threading.Thread(target=ui_resume)
        resumer.start()
        time.sleep(0.2)
        assert http.post(f"/chat/{streaming}/cancel", headers=alice.headers).status_code == 202
    finally:
        hold.set()
        runner.join(30)
    resumer.join(30)
    assert seen.ui(body["raw"])[-1]["type"] == "abort"
    seen.ui(resumed["raw"])
    with http.stream("GET", f"/chat/{streaming}/stream", headers=alice.headers) as response:
        events = seen.native(response.read().decode())
    assert events[-1]["data"]["stop_reason"] == "cancelled"
    # The UI stream: thinking signed in, a guest's plain reply, and an error.
    upstream.enqueue(ThinkingReply(), TextReply(chunks=('"More"',)))
    chunks = seen.ui(
        _post_stream(
            http,
            "/ui/chat",
            {
                "id": "chat-think",
                "messages": [_ui_user("Think.")],
                "model": HAIKU,
                "reasoning": {"budget_tokens": 1024},
            },
            alice,
        )
    )
    assert chunks[-1]["type"] == "finish"
    upstream.enqueue(TextReply())
    seen.ui(_post_stream(http, "/ui/chat", {"id": "guest", "messages": [_ui_user("Hi")]}, None))
    upstream.enqueue(MidStreamError())
    chunks = seen.ui(
        _post_stream(http, "/ui/chat", {"id": "guest-2", "messages": [_ui_user("Hi")]}, None)
    )
    assert chunks[-1]["type"] == "error"
    # Nothing the schemas describe went unchecked.
    assert seen.kinds == NATIVE_KINDS
    assert seen.types == UI_TYPES


def test_the_schemas_refuse_what_is_not_sent(
    validators: dict[str, jsonschema_rs.Draft202012Validator],
) -> None:
    """An unknown kind, a missing field or an extra one fails: the check can fail."""
    events = validators["ReplyStreamEvent"]
    chunks = validators["UIMessageChunk"]
    assert events.is_valid({"id": "3", "event": "delta", "data": {"text": "x"}})
    assert not events.is_valid({"id": "3", "event": "delta", "data": {}})
    assert not events.is_valid({"id": "3", "event": "delta", "data": {"text": "x", "more": 1}})
    assert not events.is_valid({"id": "3", "event": "thinking", "data": {"text": "x"}})
    assert not events.is_valid({"id": "0", "event": "session", "data": {"session_id": "nope"}})
    assert chunks.is_valid({"type": "text-delta", "id": "text-1", "delta": "x"})
    assert not chunks.is_valid({"type": "text-delta", "id": "text-1"})
    assert not chunks.is_valid({"type": "tool-input-start", "id": "t"})


def test_page_limits_and_models_come_from_the_configuration(tmp_path: Path) -> None:
    """The document declares the configured page caps and names the offered models."""
    settings = make_settings(
        tmp_path,
        anthropic_api_key="sk-ant-test",
        max_sessions_page=7,
        max_messages_page=9,
        max_files_page=11,
    )
    with live_server(settings) as running, running.client() as client:
        document = client.get("/openapi.json").json()
        offered = [m["id"] for m in client.get("/models").json()["models"]]
    paths = document["paths"]

    def limit(path: str) -> dict[str, Any]:
        (parameter,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == "limit"]
        schema: dict[str, Any] = parameter["schema"]
        return schema

    assert limit("/sessions")["maximum"] == 7
    assert "(7)" in limit("/sessions")["description"]
    assert limit("/sessions/{session_id}/messages")["maximum"] == 9
    assert limit("/files")["maximum"] == 11
    # Bounds are JSON Schema's own keywords, not pydantic's names for them.
    text = json.dumps(document)
    for keyword in ("ge", "le", "gt", "lt"):
        assert f'"{keyword}":' not in text, keyword
    schemas = document["components"]["schemas"]
    assert schemas["ReasoningOptions"]["properties"]["budget_tokens"]["anyOf"][0]["minimum"] == 1024
    for name in ("ChatRequest", "RegenerateRequest", "SessionCreate", "SessionUpdate"):
        field = schemas[name]["properties"]["model"]
        (string,) = [a for a in field["anyOf"] if a.get("type") == "string"]
        assert string["enum"] == offered, name
