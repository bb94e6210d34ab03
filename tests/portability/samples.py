"""ChatGPT and Claude.ai exports built from their documented formats, with branches and odd parts.

ChatGPT (conversations.json of Settings → Data controls → Export data): a list of
conversations whose `mapping` holds nodes {id, parent, children, message}; Claude.ai
(Settings → Privacy → Export data): a list of conversations with `chat_messages`.
"""

from __future__ import annotations

from typing import Any

T0 = 1_760_000_000.0  # seconds since the epoch: 2025-10-09T08:53:20Z


def _node(
    node_id: str,
    parent: str | None,
    children: list[str],
    role: str | None,
    content: dict[str, Any] | None = None,
    *,
    at: float | None = None,
    **message: Any,
) -> dict[str, Any]:
    body = None
    if role is not None:
        body = {
            "id": node_id,
            "author": {"role": role, "name": message.pop("name", None), "metadata": {}},
            "create_time": at,
            "update_time": None,
            "content": content or {"content_type": "text", "parts": [""]},
            "status": "finished_successfully",
            "end_turn": True,
            "weight": 1.0,
            "metadata": message.pop("metadata", {}),
            "recipient": message.pop("recipient", "all"),
            **message,
        }
    return {"id": node_id, "parent": parent, "children": children, "message": body}


def text(*parts: Any) -> dict[str, Any]:
    """ChatGPT text content."""
    return {"content_type": "text", "parts": list(parts)}


def chatgpt_conversation(
    conversation_id: str = "c0ffee00-0000-4000-8000-000000000001",
) -> dict[str, Any]:
    """A tree with a null-message root, a hidden system node, an edited prompt, a regenerated
    answer, a picture, thoughts, a tool run folded into its answer, and current_node on an
    older branch."""
    mapping = [
        _node("root", None, ["sys"], None),
        _node("sys", "root", ["u1", "u1b"], "system", text(""), at=None, weight=0.0),
        _node(
            "u1",
            "sys",
            ["a1", "a1b"],
            "user",
            {
                "content_type": "multimodal_text",
                "parts": [
                    {
                        "content_type": "image_asset_pointer",
                        "asset_pointer": "file-service://file-abc",
                        "size_bytes": 1234,
                        "width": 640,
                        "height": 480,
                    },
                    "What is in this picture?",
                ],
            },
            at=T0 + 10,
        ),
        _node(
            "a1",
            "u1",
            [],
            "assistant",
            text("A cat."),
            at=T0 + 20,
            metadata={"model_slug": "gpt-4o", "finish_details": {"type": "stop"}},
        ),
        # Regenerated: a sibling answer, newer, but current_node stays on the first branch.
        _node(
            "a1b",
            "u1",
            ["u2"],
            "assistant",
            text("A small cat."),
            at=T0 + 30,
            metadata={"model_slug": "gpt-4o"},
        ),
        _node("u2", "a1b", ["t1"], "user", text("Count them with code."), at=T0 + 40),
        _node(
            "t1",
            "u2",
            ["c1"],
            "assistant",
            {
                "content_type": "thoughts",
                "thoughts": [{"summary": "Plan", "content": "Use Python."}],
            },
            at=T0 + 41,
        ),
        _node(
            "c1",
            "t1",
            ["o1"],
            "assistant",
            {"content_type": "code", "language": "python", "text": "print(1)"},
            at=T0 + 42,
            recipient="python",
        ),
        _node(
            "o1",
            "c1",
            ["a2"],
            "tool",
            {"content_type": "execution_output", "text": "1"},
            at=T0 + 43,
            name="python",
        ),
        _node("a2", "o1", [], "assistant", text("There is one cat."), at=T0 + 44),
        # The prompt edited: a second user child of the same parent, its own answer.
        _node("u1b", "sys", ["a1c"], "user", text("Describe the picture."), at=T0 + 50),
        _node("a1c", "u1b", [], "assistant", text("A cat on a mat."), at=T0 + 60),
    ]
    return {
        "id": conversation_id,
        "conversation_id": conversation_id,
        "title": "Cats",
        "create_time": T0,
        "update_time": T0 + 60,
        "mapping": {node["id"]: node for node in mapping},
        "current_node": "a1",  # the user went back to the first answer
        "is_archived": False,
        "default_model_slug": "gpt-4o",
    }


def chatgpt_export() -> list[dict[str, Any]]:
    """Two conversations: the tree above and a short one with an untitled, odd part."""
    short = {
        "id": "c0ffee00-0000-4000-8000-000000000002",
        "title": None,
        "create_time": T0 + 100,
        "update_time": T0 + 101,
        "mapping": {
            "r": _node("r", None, ["q"], None),
            "q": _node("q", "r", ["a"], "user", text("Hi\u0000 there"), at=T0 + 100),
            "a": _node(
                "a",
                "q",
                [],
                "assistant",
                {"content_type": "tether_browsing_display", "result": "Browsed."},
                at=None,
            ),
        },
        "current_node": "a",
    }
    return [chatgpt_conversation(), short]


def claude_export() -> list[dict[str, Any]]:
    """A tree linked by parent_message_uuid (a retried answer), and a linear one without links."""
    root = "00000000-0000-4000-8000-000000000000"

    def message(
        uuid: str, sender: str, at: str, *content: dict[str, Any], **extra: Any
    ) -> dict[str, Any]:
        texts = "".join(block.get("text", "") for block in content)
        return {
            "uuid": uuid,
            "text": texts,
            "content": list(content),
            "sender": sender,
            "created_at": at,
            "updated_at": at,
            "attachments": extra.pop("attachments", []),
            "files": extra.pop("files", []),
            **extra,
        }

    linked = {
        "uuid": "0c1a0de0-0000-4000-8000-000000000001",
        "name": "Report",
        "summary": "",
        "created_at": "2025-10-01T10:00:00.000000Z",
        "updated_at": "2025-10-01T10:05:00.000000Z",
        "account": {"uuid": "acc-1"},
        "chat_messages": [
            message(
                "m1",
                "human",
                "2025-10-01T10:00:00.000000Z",
                {"type": "text", "text": "Summarise the attachment."},
                parent_message_uuid=root,
                attachments=[
                    {
                        "file_name": "report.txt",
                        "file_size": 20,
                        "file_type": "txt",
                        "extracted_content": "Sales rose by 5%.",
                    }
                ],
                files=[{"file_name": "photo.jpg"}],
            ),
            message(
                "m2",
                "assistant",
                "2025-10-01T10:01:00.000000Z",
                {"type": "thinking", "thinking": "The user wants a summary."},
                {"type": "text", "text": "Sales grew."},
                parent_message_uuid="m1",
            ),
            # Retried: a second answer to m1, newer.
            message(
                "m3",
                "assistant",
                "2025-10-01T10:02:00.000000Z",
                {"type": "tool_use", "name": "calculator", "input": {"x": 5}},
                {"type": "text", "text": "Sales grew by 5%."},
                parent_message_uuid="m1",
            ),
        ],
    }
    linear = {
        "uuid": "0c1a0de0-0000-4000-8000-000000000002",
        "name": "",
        "created_at": "2025-10-02T09:00:00Z",
        "updated_at": "2025-10-02T09:00:30Z",
        "account": {"uuid": "acc-1"},
        "chat_messages": [
            message("n1", "human", "2025-10-02T09:00:00Z", {"type": "text", "text": "Hello"}),
            message("n2", "assistant", "2025-10-02T09:00:10Z", {"type": "text", "text": "Hi."}),
            {
                "uuid": "n3",
                "text": "Plain text only",
                "sender": "human",
                "created_at": "2025-10-02T09:00:20Z",
                "updated_at": "2025-10-02T09:00:20Z",
                "attachments": [],
                "files": [],
            },
        ],
    }
    return [linked, linear]
