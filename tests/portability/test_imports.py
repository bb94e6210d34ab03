"""ChatGPT and Claude.ai exports imported: trees, current branch, odd content, idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.portability.conftest import Env, active, as_json, imported, sessions, tree, zipped
from tests.portability.samples import T0, chatgpt_export, claude_export
from tests.support import Account


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _at(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def test_chatgpt_tree_becomes_branches(http: httpx.Client, env: Env, alice: Account) -> None:
    """Regenerations and edits are branches; current_node ends the active branch."""
    summary = imported(http, alice, as_json(chatgpt_export()), filename="conversations.json")
    assert summary == {
        "format": "chatgpt",
        "sessions_created": 2,
        "sessions_skipped": 0,
        "messages_created": 9,
        "files_created": 0,
        "files_reused": 0,
    }
    cats, short = sessions(http, alice)
    assert (cats["title"], short["title"]) == ("Cats", "Imported from ChatGPT")
    assert cats["created_at"] == _at(T0)
    messages = tree(http, alice, cats["id"])
    by_text = {m["content"]: m for m in messages}
    assert len(messages) == 7
    picture = "[Image, 640x480: not included in ChatGPT's conversations.json]"
    question = by_text[f"{picture}\n\nWhat is in this picture?"]
    assert question["role"] == "user"
    assert question["parent_id"] is None
    assert question["created_at"] == _at(T0 + 10)  # kept
    first, second = by_text["A cat."], by_text["A small cat."]
    assert first["parent_id"] == second["parent_id"] == question["id"]
    assert (first["model"], first["stop_reason"]) == ("gpt-4o", "stop")
    # The tool run folds into one assistant turn: thoughts, code, its output, the answer.
    run = next(m for m in messages if m["parts"][0]["type"] == "reasoning")
    assert run["parts"] == [
        {"type": "reasoning", "text": "Plan\n\nUse Python."},
        {
            "type": "text",
            "text": "```python\nprint(1)\n```\n\n[python]\n\n```\n1\n```\n\nThere is one cat.",
        },
    ]
    assert run["parent_id"] == by_text["Count them with code."]["id"]
    assert by_text["Count them with code."]["parent_id"] == second["id"]
    edited = by_text["Describe the picture."]
    assert edited["parent_id"] is None
    assert by_text["A cat on a mat."]["parent_id"] == edited["id"]
    # current_node was the first answer: the active branch ends there, though newer ones exist.
    assert [m["content"] for m in active(http, alice, cats["id"])] == [
        question["content"],
        "A cat.",
    ]
    # A message without a time follows its parent; a NUL character is dropped.
    q, a = tree(http, alice, short["id"])
    assert (q["content"], a["content"]) == ("Hi there", "Browsed.")
    assert _time(a["created_at"]) - _time(q["created_at"]) == timedelta(microseconds=1)


def test_chatgpt_zip_and_idempotency(http: httpx.Client, env: Env, alice: Account) -> None:
    """The export .zip imports as its conversations.json; the same file again adds nothing."""
    archive = zipped(
        {"conversations.json": as_json(chatgpt_export()), "chat.html": b"<html></html>"}
    )
    assert imported(http, alice, archive, filename="export.zip")["sessions_created"] == 2
    before = env.snapshot()
    again = imported(http, alice, as_json(chatgpt_export()))
    assert (again["sessions_created"], again["sessions_skipped"]) == (0, 2)
    assert env.snapshot() == before


def test_claude_with_and_without_parent_links(http: httpx.Client, env: Env, alice: Account) -> None:
    """parent_message_uuid builds the tree; without it messages follow each other."""
    summary = imported(http, alice, as_json(claude_export()), filename="conversations.json")
    assert (summary["format"], summary["sessions_created"], summary["messages_created"]) == (
        "claude",
        2,
        6,
    )
    report, plain = sessions(http, alice)
    assert (report["title"], plain["title"]) == ("Report", "Imported from Claude")
    m1, m2, m3 = tree(http, alice, report["id"])
    assert m1["content"] == (
        "Summarise the attachment.\n\n[Attachment: report.txt]\nSales rose by 5%.\n\n"
        "[File: photo.jpg (not included in the export)]"
    )
    assert m1["parent_id"] is None
    assert m1["created_at"] == "2025-10-01T10:00:00Z"
    assert m2["parent_id"] == m3["parent_id"] == m1["id"]  # a retried answer: a branch
    assert m2["parts"] == [
        {"type": "reasoning", "text": "The user wants a summary."},
        {"type": "text", "text": "Sales grew."},
    ]
    assert (
        m3["content"] == '[Tool use: calculator]\n```json\n{\n  "x": 5\n}\n```\n\nSales grew by 5%.'
    )
    assert [m["id"] for m in active(http, alice, report["id"])] == [m1["id"], m3["id"]]
    n1, n2, n3 = tree(http, alice, plain["id"])
    assert (n1["parent_id"], n2["parent_id"], n3["parent_id"]) == (None, n1["id"], n2["id"])
    assert n3["content"] == "Plain text only"
    before = env.snapshot()
    assert imported(http, alice, as_json(claude_export()))["sessions_skipped"] == 2
    assert env.snapshot() == before
