"""ChatGPT's conversations.json: each conversation's `mapping` tree becomes a session's tree.

The format is OpenAI's data export (Settings → Data controls → Export data), described in
docs/export-import.md with what is kept of each kind of node.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from zyron.portability.imported import (
    OUT_OF_RANGE,
    TICK,
    ImportBatch,
    ImportedConversation,
    ImportedMessage,
    in_tree_order,
    make_newest,
    newer_than_parents,
    refuse,
    sane_time,
    validation_problem,
)

UNTITLED = "Imported from ChatGPT"
# Content a reader never saw: the user's custom instructions, the model's memory notes, and
# the "Thought for 10 seconds" line (the thoughts themselves are kept as reasoning).
HIDDEN_CONTENT = {"user_editable_context", "model_editable_context", "reasoning_recap"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Author(_Model):
    role: str
    name: str | None = None


class _Content(_Model):
    content_type: str
    parts: list[Any] | None = None


class _Message(_Model):
    id: str | None = None
    author: _Author
    create_time: float | None = None
    content: _Content
    status: str | None = None
    metadata: dict[str, Any] | None = None
    recipient: str | None = None
    weight: float | None = None


class _Node(_Model):
    parent: str | None = None
    children: list[str] = []
    message: _Message | None = None


class _Conversation(_Model):
    id: str | None = None
    conversation_id: str | None = None
    title: str | None = None
    create_time: float | None = None
    update_time: float | None = None
    mapping: dict[str, _Node]
    current_node: str | None = None


_CONVERSATIONS = TypeAdapter(list[_Conversation])


def read(document: list[Any], name: str) -> ImportBatch:
    """Turn ChatGPT's conversations into importable ones, or refuse naming the field."""
    try:
        conversations = _CONVERSATIONS.validate_python(document)
    except ValidationError as exc:
        raise validation_problem(exc, name) from exc
    return ImportBatch(
        "chatgpt",
        [_conversation(c, f"{name}[{i}]") for i, c in enumerate(conversations)],
    )


def _time(value: float | None, where: str) -> datetime | None:
    """A time in seconds since the epoch, or None; refused outside the years 1970..9000."""
    if value is None:
        return None
    try:
        return sane_time(datetime.fromtimestamp(value, UTC))
    except (OverflowError, OSError, ValueError) as exc:
        raise refuse(where, f"{value!r}: {OUT_OF_RANGE}") from exc


@dataclass
class _Step:
    node_id: str
    kept_parent: str | None  # the ref of the nearest ancestor kept as a message
    linear: bool  # every node since that ancestor had one child: a tool chain folds into it


def _conversation(conversation: _Conversation, where: str) -> ImportedConversation:
    conversation_id = conversation.conversation_id or conversation.id
    if not conversation_id:
        raise refuse(where, "a conversation needs an id (or conversation_id)")
    started = _time(conversation.create_time, f"{where}.create_time") or datetime.fromtimestamp(
        0, UTC
    )
    mapping = conversation.mapping
    roots = [
        nid for nid, node in mapping.items() if node.parent is None or node.parent not in mapping
    ]
    messages: dict[str, ImportedMessage] = {}
    ref_of: dict[str, str | None] = {}  # each node -> the message it is, or was folded into
    stack = [_Step(nid, None, False) for nid in reversed(roots)]
    while stack:
        step = stack.pop()
        if step.node_id in ref_of:
            raise refuse(f"{where}.mapping.{step.node_id}", "the node is reached twice")
        node = mapping[step.node_id]
        here = f"{where}.mapping.{step.node_id}"
        turn = _turn(node.message, here) if node.message is not None else None
        kept = step.kept_parent
        if turn is not None:
            role, parts, created_at = turn
            parent = messages.get(kept) if kept is not None else None
            if parent is not None and step.linear and parent.role == role == "assistant":
                parent.parts = _merged(parent.parts, parts)
                parent.status = _status(node.message)
            else:
                message = node.message
                assert message is not None
                time_of = created_at or (parent.created_at + TICK if parent else started)
                metadata = message.metadata or {}
                messages[step.node_id] = ImportedMessage(
                    ref=step.node_id,
                    parent_ref=kept,
                    role=role,
                    parts=parts,
                    created_at=time_of,
                    where=here,
                    status=_status(message),
                    model=_label(metadata.get("model_slug"), 200) if role == "assistant" else None,
                    stop_reason=_stop_reason(metadata),
                )
                kept = step.node_id
        ref_of[step.node_id] = kept
        children = [child for child in node.children if child in mapping]
        for child in reversed(children):
            stack.append(
                _Step(child, kept, len(children) == 1 and (step.linear or kept == step.node_id))
            )
    unreached = set(mapping) - set(ref_of)
    if unreached:
        raise refuse(f"{where}.mapping", "its nodes' parents form a cycle")
    ordered = in_tree_order(list(messages.values()), where)
    newer_than_parents(ordered)
    leaf = conversation.current_node
    make_newest(ordered, ref_of.get(leaf) if leaf is not None else None)
    updated = _time(conversation.update_time, f"{where}.update_time") or started
    if ordered:
        updated = max(updated, max(m.created_at for m in ordered))
    return ImportedConversation(
        key=f"import:chatgpt:{conversation_id}"[:200],
        title=(conversation.title or "").strip()[:200] or UNTITLED,
        created_at=started,
        updated_at=updated,
        messages=ordered,
        where=where,
    )


def _turn(
    message: _Message | None, where: str
) -> tuple[Any, list[dict[str, Any]], datetime | None] | None:
    """The role, parts and time of a node kept as a message; None for one skipped."""
    if message is None:
        return None
    role = message.author.role
    metadata = message.metadata or {}
    if role not in ("user", "assistant", "system", "tool"):
        raise refuse(f"{where}.message.author.role", f"unknown role {role!r}")
    if (
        role == "system"
        or message.weight == 0
        or metadata.get("is_visually_hidden_from_conversation")
    ):
        return None
    if message.content.content_type in HIDDEN_CONTENT:
        return None
    parts = _parts(message, role)
    if not parts:
        return None
    # A tool's output (code run, a page read) is part of the assistant's turn.
    created_at = _time(message.create_time, f"{where}.message.create_time")
    return ("user" if role == "user" else "assistant"), parts, created_at


def _parts(message: _Message, role: str) -> list[dict[str, Any]]:
    """Reasoning for thoughts, text for everything else readable, a note for what is not."""
    content = message.content
    extra = content.model_extra or {}
    kind = content.content_type
    reasoning: list[dict[str, Any]] = []
    texts: list[str] = []
    if kind == "thoughts":
        for thought in extra.get("thoughts") or []:
            if isinstance(thought, dict):
                thinking = "\n\n".join(
                    str(thought[k]) for k in ("summary", "content") if thought.get(k)
                )
                if thinking:
                    reasoning.append({"type": "reasoning", "text": thinking})
    elif kind == "code":
        code = _text_or_none(extra.get("text"))
        if code:
            language = _text_or_none(extra.get("language")) or ""
            fence = "" if language == "unknown" else language
            texts.append(f"```{fence}\n{code}\n```")
    elif kind == "execution_output":
        output = _text_or_none(extra.get("text"))
        if output:
            texts.append(f"```\n{output}\n```")
    elif kind in ("text", "multimodal_text") or content.parts is not None:
        for part in content.parts or []:
            if isinstance(part, str):
                if part:
                    texts.append(part)
            elif isinstance(part, dict):
                texts.append(_object_part(part))
    else:
        other = _text_or_none(extra.get("text")) or _text_or_none(extra.get("result"))
        texts.append(other or f"[{kind} content: not imported]")
    if role == "tool" and texts:
        name = message.author.name or "tool"
        texts.insert(0, f"[{name}]")
    parts = list(reasoning)
    if texts:
        parts.append({"type": "text", "text": "\n\n".join(texts)})
    return parts


def _object_part(part: dict[str, Any]) -> str:
    """A readable stand-in for an image or other non-text part: its bytes are not exported."""
    kind = str(part.get("content_type") or "attachment")
    if kind == "audio_transcription" and isinstance(part.get("text"), str):
        return str(part["text"])
    if kind == "image_asset_pointer":
        size = (
            f", {part['width']}x{part['height']}"
            if part.get("width") and part.get("height")
            else ""
        )
        return f"[Image{size}: not included in ChatGPT's conversations.json]"
    if isinstance(part.get("text"), str) and part["text"]:
        return str(part["text"])
    return f"[{kind}: not included in ChatGPT's conversations.json]"


def _merged(first: list[dict[str, Any]], then: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One assistant turn from two: reasoning first, text joined by a blank line."""
    reasoning = [p for p in first + then if p["type"] == "reasoning"]
    texts = [p["text"] for p in first + then if p["type"] == "text"]
    merged = list(reasoning)
    if texts:
        merged.append({"type": "text", "text": "\n\n".join(texts)})
    return merged


def _status(message: _Message | None) -> str:
    """finished_successfully is complete; a reply left in progress or cut short, interrupted."""
    status = message.status if message is not None else None
    return "complete" if status in (None, "finished_successfully") else "interrupted"


def _stop_reason(metadata: dict[str, Any]) -> str | None:
    details = metadata.get("finish_details")
    if isinstance(details, dict):
        return _label(details.get("type"), 64)
    return None


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _label(value: object, length: int) -> str | None:
    """A short string field (a model slug, a stop reason), cut to its column."""
    text = _text_or_none(value)
    return None if text is None else text[:length]
