"""Claude.ai's conversations.json (Settings → Privacy → Export data): one session each.

Messages link by `parent_message_uuid` where the export has it (a tree, edits and retries
included); without it they follow each other in the order given. docs/export-import.md.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from zyron.portability.imported import (
    ImportBatch,
    ImportedConversation,
    ImportedMessage,
    ImportTime,
    in_tree_order,
    make_newest,
    newer_than_parents,
    refuse,
    validation_problem,
)

UNTITLED = "Imported from Claude"
# What Claude.ai gives as the parent of a conversation's first message.
ROOT_PARENT = "00000000-0000-4000-8000-000000000000"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Attachment(_Model):
    file_name: str | None = None
    file_type: str | None = None
    file_size: int | None = None
    extracted_content: str | None = None


class _File(_Model):
    file_name: str | None = None


class _Message(_Model):
    uuid: str
    sender: str
    text: str | None = None
    content: list[dict[str, Any]] | None = None
    created_at: ImportTime
    attachments: list[_Attachment] = []
    files: list[_File] = []
    parent_message_uuid: str | None = None


class _Conversation(_Model):
    uuid: str
    name: str | None = None
    created_at: ImportTime
    updated_at: ImportTime | None = None
    chat_messages: list[_Message]
    current_leaf_message_uuid: str | None = None


_CONVERSATIONS = TypeAdapter(list[_Conversation])


def read(document: list[Any], name: str) -> ImportBatch:
    """Turn Claude.ai's conversations into importable ones, or refuse naming the field."""
    try:
        conversations = _CONVERSATIONS.validate_python(document)
    except ValidationError as exc:
        raise validation_problem(exc, name) from exc
    return ImportBatch(
        "claude", [_conversation(c, f"{name}[{i}]") for i, c in enumerate(conversations)]
    )


def _conversation(conversation: _Conversation, where: str) -> ImportedConversation:
    ids = {message.uuid for message in conversation.chat_messages}
    linked = any(m.parent_message_uuid is not None for m in conversation.chat_messages)
    messages: list[ImportedMessage] = []
    previous: str | None = None
    for index, message in enumerate(conversation.chat_messages):
        here = f"{where}.chat_messages[{index}]"
        if message.sender not in ("human", "assistant"):
            raise refuse(
                f"{here}.sender", f"expected 'human' or 'assistant', not {message.sender!r}"
            )
        if linked:
            parent = message.parent_message_uuid
            # The first message's parent is a fixed placeholder (or absent, or not exported).
            parent = parent if parent in ids else None
        else:
            parent = previous
        messages.append(
            ImportedMessage(
                ref=message.uuid,
                parent_ref=parent,
                role="user" if message.sender == "human" else "assistant",
                parts=_parts(message),
                created_at=message.created_at,
                where=here,
            )
        )
        previous = message.uuid
    ordered = in_tree_order(messages, where)
    newer_than_parents(ordered)
    make_newest(ordered, conversation.current_leaf_message_uuid)
    created = conversation.created_at
    updated = conversation.updated_at or created
    if ordered:
        updated = max(updated, max(m.created_at for m in ordered))
    return ImportedConversation(
        key=f"import:claude:{conversation.uuid}"[:200],
        title=(conversation.name or "").strip()[:200] or UNTITLED,
        created_at=created,
        updated_at=updated,
        messages=ordered,
        where=where,
    )


def _parts(message: _Message) -> list[dict[str, Any]]:
    """Thinking as reasoning; text, tool use and attachments as text; notes for the rest."""
    reasoning: list[dict[str, Any]] = []
    texts: list[str] = []
    blocks = message.content or []
    for block in blocks:
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            if block["text"]:
                texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            # No signature: Claude.ai's export has none, so it is never sent back to a model.
            reasoning.append({"type": "reasoning", "text": block["thinking"]})
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input"), ensure_ascii=False, indent=2)
            texts.append(f"[Tool use: {block.get('name') or 'tool'}]\n```json\n{arguments}\n```")
        elif kind == "tool_result":
            texts.append(f"[Tool result: {block.get('name') or 'tool'}]\n{_result_text(block)}")
        else:
            texts.append(f"[{kind or 'unknown'} content: not imported]")
    if not blocks and message.text:
        texts.append(message.text)
    for attachment in message.attachments:
        name = attachment.file_name or "attachment"
        body = attachment.extracted_content or ""
        texts.append(f"[Attachment: {name}]\n{body}".rstrip())
    for file in message.files:
        texts.append(f"[File: {file.file_name or 'file'} (not included in the export)]")
    parts = list(reasoning)
    if texts:
        parts.append({"type": "text", "text": "\n\n".join(texts)})
    return parts


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(item.get("text")) for item in content if isinstance(item, dict) and item.get("text")
        )
    return ""
