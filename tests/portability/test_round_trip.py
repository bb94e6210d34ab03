"""Export then import is lossless: every branch, reasoning with its signature, files, times."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply, ThinkingReply
from tests.files.samples import png
from tests.portability.conftest import Env, active, imported, sessions
from tests.support import Account, parse_sse, stream_chat

HAIKU = "claude-haiku-4-5"
NOTES = b"Notes kept apart from any chat.\n"


def _upload(http: httpx.Client, account: Account, name: str, data: bytes, kind: str) -> str:
    response = http.post("/files", files={"file": (name, data, kind)}, headers=account.headers)
    assert response.status_code == 201, response.text
    file_id: str = response.json()["id"]
    return file_id


def _say(
    http: httpx.Client, account: Account, upstream: FakeAnthropic, reply: Any, **body: Any
) -> dict[str, Any]:
    upstream.enqueue(reply)
    events = stream_chat(http, body, account.headers)
    assert events[-1].event == "done", events[-1].data
    started: dict[str, Any] = events[0].data
    return started


def build_history(http: httpx.Client, account: Account, upstream: FakeAnthropic) -> list[str]:
    """Two sessions: one a tree (thinking, an attachment, a regeneration, an edit), one plain."""
    picture = _upload(http, account, "chart.png", png(4, 3), "image/png")
    _upload(http, account, "notes.txt", NOTES, "text/plain")
    first = _say(
        http,
        account,
        upstream,
        ThinkingReply(thinking=("Look", "ing."), chunks=("A chart.",), signature="sig-kept"),
        message="What is this?",
        model=HAIKU,
        attachments=[picture],
        reasoning={"budget_tokens": 2048},
    )
    sid = first["session_id"]
    second = _say(
        http, account, upstream, TextReply(chunks=("Bars.",)), message="Which kind?", session_id=sid
    )
    upstream.enqueue(TextReply(chunks=("Bars, again.",)))
    with http.stream(
        "POST", f"/chat/{second['assistant_message_id']}/regenerate", headers=account.headers
    ) as response:
        assert response.status_code == 200
        events, _ = parse_sse(response.read().decode())
    assert events[-1].event == "done"
    _say(
        http,
        account,
        upstream,
        TextReply(chunks=("Blue.",)),
        message="Which colour?",
        session_id=sid,
        parent_id=first["assistant_message_id"],
    )
    renamed = http.patch(
        f"/sessions/{sid}", json={"title": "Edited title"}, headers=account.headers
    )
    assert renamed.status_code == 200
    other = _say(http, account, upstream, TextReply(chunks=("Hi!",)), message="Hello")
    return [sid, other["session_id"]]


def export_zip(
    http: httpx.Client, account: Account
) -> tuple[dict[str, Any], zipfile.ZipFile, bytes]:
    """GET /export: the document, the zip, and its bytes."""
    response = http.get("/export", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith("attachment;")
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    document: dict[str, Any] = json.loads(archive.read("zyron-export.json"))
    return document, archive, response.content


def normalised(document: dict[str, Any], archive: zipfile.ZipFile) -> dict[str, Any]:
    """The export without ids and ownership: the tree by positions, files by their bytes."""
    names = {f["id"]: f["filename"] for f in document["files"]}
    files = sorted(
        (
            f["filename"],
            f["media_type"],
            f["size"],
            f["sha256"],
            f["created_at"],
            archive.read(f["path"]),
        )
        for f in document["files"]
    )
    shown = []
    for chat in sorted(document["sessions"], key=lambda s: s["created_at"]):
        position = {m["id"]: i for i, m in enumerate(chat["messages"])}
        messages = []
        for message in chat["messages"]:
            parts = [
                {**p, "file_id": names[p["file_id"]]} if p["type"] == "file" else p
                for p in message["parts"]
            ]
            messages.append(
                {
                    **{k: v for k, v in message.items() if k not in ("id", "parent_id")},
                    "parts": parts,
                    "parent": None
                    if message["parent_id"] is None
                    else position[message["parent_id"]],
                }
            )
        shown.append(
            {
                **{k: v for k, v in chat.items() if k not in ("id", "client_id", "messages")},
                "messages": messages,
            }
        )
    return {"sessions": shown, "files": files}


def test_export_then_import_is_lossless(
    http: httpx.Client, env: Env, alice: Account, bob: Account, upstream: FakeAnthropic
) -> None:
    """Bob imports Alice's export; his export then equals hers but for ids and usage."""
    sids = build_history(http, alice, upstream)
    document, archive, body = export_zip(http, alice)
    assert (document["format"], document["version"], document["scope"]) == (
        "zyron.export",
        1,
        "account",
    )
    assert document["user"]["email"] == alice.email
    assert len(document["usage"]) >= 1  # this server's billing history, exported
    tree_session = next(s for s in document["sessions"] if s["id"] == sids[0])
    assert len(tree_session["messages"]) == 7  # q1 a1, q2 with a2 and a2', q3 a3 after a1
    reasoning = [
        p for m in tree_session["messages"] for p in m["parts"] if p["type"] == "reasoning"
    ]
    # With this server's HMAC (its seal), under which the import trusts the signature.
    assert [len(p.get("seal", "")) for p in reasoning] == [64]
    assert [{k: v for k, v in p.items() if k != "seal"} for p in reasoning] == [
        {"type": "reasoning", "text": "Looking.", "provider": "anthropic", "signature": "sig-kept"}
    ]
    assert sorted(archive.namelist()) == sorted(
        ["zyron-export.json", *(f"files/{f['id']}" for f in document["files"])]
    )

    summary = imported(http, bob, body, filename="zyron-export.zip")
    assert summary == {
        "format": "zyron",
        "sessions_created": 2,
        "sessions_skipped": 0,
        "messages_created": 9,
        "files_created": 2,
        "files_reused": 0,
    }
    again, again_archive, _ = export_zip(http, bob)
    assert again["usage"] == []  # usage is this server's billing: never imported
    assert normalised(again, again_archive) == normalised(document, archive)
    mine = {s["id"] for s in document["sessions"]}
    assert not mine & {s["id"] for s in again["sessions"]}  # new ids for everything
    assert sorted(s["client_id"] for s in again["sessions"]) == sorted(
        f"import:zyron:{sid}" for sid in sids
    )
    # The active branch is the same conversation: the edit, after the first answer.
    alice_tree = next(s for s in sessions(http, alice) if s["id"] == sids[0])
    bob_tree = next(s for s in sessions(http, bob) if s["title"] == "Edited title")
    theirs = [(m["role"], m["content"]) for m in active(http, alice, alice_tree["id"])]
    assert [(m["role"], m["content"]) for m in active(http, bob, bob_tree["id"])] == theirs
    assert theirs[-2:] == [("user", "Which colour?"), ("assistant", "Blue.")]
    # Files are Bob's own: readable by him, linked to his message.
    picture = next(f for f in again["files"] if f["filename"] == "chart.png")
    download = http.get(f"/files/{picture['id']}", headers=bob.headers)
    assert download.status_code == 200
    assert download.content == png(4, 3)
    linked = env.server.query(
        "SELECT count(*) FROM message_files WHERE file_id = :id", id=env.server.id(picture["id"])
    )
    assert linked[0][0] == 1


def test_importing_twice_duplicates_nothing(
    http: httpx.Client, env: Env, alice: Account, bob: Account, upstream: FakeAnthropic
) -> None:
    """The same export again, into the same account or back into its own: nothing new."""
    build_history(http, alice, upstream)
    response = http.get("/export", headers=alice.headers)
    imported(http, bob, response.content)
    before = env.snapshot()
    assert imported(http, bob, response.content) == {
        "format": "zyron",
        "sessions_created": 0,
        "sessions_skipped": 2,
        "messages_created": 0,
        "files_created": 0,
        "files_reused": 1,  # the file no session uses: Bob has it already
    }
    assert env.snapshot() == before
    own = imported(http, alice, response.content)
    assert (own["sessions_created"], own["sessions_skipped"], own["files_created"]) == (0, 2, 0)
    assert env.snapshot() == before


@pytest.mark.parametrize("fmt", ["json", "markdown"])
def test_one_session_exports(
    http: httpx.Client, alice: Account, bob: Account, upstream: FakeAnthropic, fmt: str
) -> None:
    """JSON: the v1 shape, files listed without bytes; Markdown: the active branch."""
    sid = build_history(http, alice, upstream)[0]
    response = http.get(f"/sessions/{sid}/export", params={"format": fmt}, headers=alice.headers)
    assert response.status_code == 200, response.text
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert f"zyron-session-{sid}" in disposition
    if fmt == "json":
        document = response.json()
        assert document["scope"] == "session"
        assert [s["id"] for s in document["sessions"]] == [sid]
        assert len(document["sessions"][0]["messages"]) == 7
        assert [(f["filename"], f["path"]) for f in document["files"]] == [("chart.png", None)]
        # Imported alone, the session keeps its tree; its file, without bytes, is missing.
        summary = imported(http, bob, response.content)
        assert (summary["sessions_created"], summary["files_created"]) == (1, 0)
        chat = sessions(http, bob)[0]
        first = active(http, bob, chat["id"])[0]
        assert [p.get("missing") for p in first["parts"] if p["type"] == "file"] == [True]
        return
    assert response.headers["content-type"].startswith("text/markdown")
    text = response.text
    assert text.startswith("# Edited title\n")
    assert text.count("## User") == 2
    assert text.count("## Assistant") == 2
    assert "Which colour?" in text
    assert "Blue." in text
    assert "Which kind?" not in text  # another branch
    assert "- [chart.png](/files/" in text
    assert "<summary>Thinking</summary>" in text
    assert "Looking." in text
    assert "sig-kept" not in text


def test_session_export_refusals(http: httpx.Client, alice: Account, bob: Account) -> None:
    """Another user's session is a 404; an unknown format a 422; no token a 401."""
    created = http.post("/sessions", json={"title": "Mine"}, headers=alice.headers).json()
    path = f"/sessions/{created['id']}/export"
    foreign = http.get(path, headers=bob.headers)
    assert (foreign.status_code, foreign.json()["error"]) == (404, "not_found")
    wrong = http.get(path, params={"format": "pdf"}, headers=alice.headers)
    assert (wrong.status_code, wrong.json()["error"]) == (422, "validation_error")
    assert "format" in wrong.json()["detail"]
    assert http.get(path).status_code == 401
    assert http.get("/export").status_code == 401
    assert http.post("/import", files={"file": ("a.json", b"[]")}).status_code == 401
