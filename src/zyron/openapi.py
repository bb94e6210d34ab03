"""The OpenAPI document, refined to say exactly what the server does.

FastAPI builds the document from the routes. This adds what it cannot know:
- the error shape on 422s and 413s, and which routes take guests;
- limits configured at start (page sizes), and the model ids the server offers;
- the events of each stream, as component schemas.

Streams: OpenAPI 3.1 has no way to type the items of an event stream. 3.2's `itemSchema`
does: each item is one SSE event, `{event, data, id}`, its `data` a string whose JSON
`contentSchema` describes. Each stream's media type carries that `itemSchema` (what 3.2 tools
and schemathesis read; schemathesis validates every streamed event with it). The generators
front ends use (openapi-typescript 7, orval) read neither 3.2 nor it yet, so the parsed events
are components too, which every generator turns into types: `ReplyStreamEvent` and
`UIMessageChunk` (docs/openapi.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI

from zyron.auth.errors import AccountDisabled
from zyron.chat.attachments import base64_length
from zyron.chat.reasoning import MIN_TOKENS_WITH_THINKING
from zyron.chat.stream_schemas import REPLY_STREAM_EVENT
from zyron.errors import ErrorBody
from zyron.middleware import BodyCap
from zyron.settings import Settings
from zyron.ui.chunk_schemas import UI_MESSAGE_CHUNK

# Routes a caller may use without a token: chats as a guest, the UI routes, which answer a
# guest with nothing ([] and 204) instead of a 401, and share links, which the token in the
# path opens.
GUEST_ROUTES = frozenset(
    {
        "/chat",
        "/ui/chat",
        "/ui/chat/{chat_id}/messages",
        "/ui/chat/{chat_id}/stream",
        "/shared/{token}",
        "/shared/{token}/files/{file_id}",
    }
)
# Native events by `event:` name, each with the schema of its `data:` JSON.
NATIVE_DATA = {
    "session": "SessionEventData",
    "reasoning": "ReasoningEventData",
    "delta": "DeltaEventData",
    "done": "DoneEventData",
    "error": "ErrorEventData",
    "title": "TitleEventData",
}
REF = "#/components/schemas/{model}"
ERROR_CONTENT = {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}
# Streams of UI message chunks; every other text/event-stream is the native reply stream.
UI_STREAMS = frozenset({"/ui/chat", "/ui/chat/{chat_id}/stream"})
# Streams that never answer JSON (POST /chat and regenerate do, with `stream: false`).
STREAM_ONLY = frozenset({"/chat/{message_id}/stream", "/sessions/{session_id}/stream", *UI_STREAMS})
NATIVE_STREAM_NOTE = (
    " Each event is one `ReplyStreamItem` (`ReplyStreamEvent` once parsed): `event:` names "
    "its kind, `data:` is its JSON, `id:` its position; `: ping` comments keep an idle "
    "stream open."
)
UI_STREAM_NOTE = (
    " Each event is `data: ` and one `UIMessageChunk` as JSON (`UIMessageStreamItem`); the "
    "stream ends with `data: [DONE]`; `: ping` comments keep an idle stream open."
)


def refine_openapi(
    app: FastAPI,
    settings: Settings,
    model_ids: Callable[[], list[str] | None],
    *,
    caps: tuple[BodyCap, dict[str, BodyCap]],
) -> None:
    """Replace app.openapi with the refined document, built once the server has started.

    `model_ids` gives the ids the server offers, or None before it has started (then the
    document is built without them and not kept, so the started server's names them).
    """
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        models = model_ids()
        schema = original()
        app.openapi_schema = None  # FastAPI keeps its own; ours replaces it
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        _errors(schema, schemas, caps)
        _page_limits(schema, settings)
        _ui_refusals(schema)
        _chat_limits(schemas, settings)
        if models:
            _model_enums(schemas, models)
        _streams(schema, schemas)
        _upload_body(schema)
        if models is not None:
            app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _operations(schema: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    for route, path in schema.get("paths", {}).items():
        for operation in path.values():
            yield route, operation


def _errors(
    schema: dict[str, Any], schemas: dict[str, Any], caps: tuple[BodyCap, dict[str, BodyCap]]
) -> None:
    """Our error shape on 422s and 413s instead of FastAPI's; guests on the guest routes."""
    default_cap, path_caps = caps
    for route, operation in _operations(schema):
        responses = operation.setdefault("responses", {})
        if "422" in responses:
            responses["422"] = {
                "description": responses["422"]["description"]
                if responses["422"].get("description") not in (None, "Validation Error")
                else "`validation_error` or `invalid_json`: the detail names the field",
                "content": ERROR_CONTENT,
            }
        if "requestBody" in operation:
            cap = path_caps.get(route, default_cap)
            over = f"`payload_too_large`: the body is over {cap.max_bytes} bytes ({cap.limit})"
            own = responses.get("413", {}).get("description")
            responses["413"] = {
                "description": f"{over}; {own}" if own else over,
                "content": ERROR_CONTENT,
            }
        if "401" in responses and "403" not in responses:
            # Any route that takes a token refuses a disabled account's (docs/admin.md).
            responses["403"] = {
                "description": f"`{AccountDisabled.code}`: {AccountDisabled.default_detail}",
                "content": ERROR_CONTENT,
            }
        if route in GUEST_ROUTES:
            # {} means "no credentials" in OpenAPI: guests may call without a token.
            operation["security"] = [*operation.get("security", []), {}]
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())


def _page_limits(schema: dict[str, Any], settings: Settings) -> None:
    """The page caps configured at start, as each `limit` parameter's maximum."""
    caps = {
        "/sessions": settings.max_sessions_page,
        "/sessions/{session_id}/messages": settings.max_messages_page,
        "/files": settings.max_files_page,
        "/search": settings.max_search_page,
    }
    for route, cap in caps.items():
        for operation in schema["paths"].get(route, {}).values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "limit":
                    parameter["schema"]["maximum"] = cap
                    # The routes' texts name the default cap; say the configured one.
                    for holder in (parameter, parameter["schema"]):
                        if "description" in holder:
                            holder["description"] = re.sub(
                                r"\(\d+\)", f"({cap})", holder["description"]
                            )


def _ui_refusals(schema: dict[str, Any]) -> None:
    """What POST /ui/chat refuses with 422 beyond its schema (UIChatRequest.messages)."""
    responses = schema["paths"]["/ui/chat"]["post"]["responses"]
    responses["422"]["description"] = (
        "`validation_error`: the body does not fit UIChatRequest, or its messages do not "
        "end with the user's text (see `messages`), or an edit's `messageId` names a reply; "
        "`invalid_json`. The detail names the field."
    )


def _chat_limits(schemas: dict[str, Any], settings: Settings) -> None:
    """The caps on a chat request configured at start: sizes, counts and reply budgets."""
    text_cap = settings.max_message_chars
    for name in ("ChatRequest", "RegenerateRequest", "UIChatRequest"):
        body = schemas.get(name)
        if body is None:
            continue
        fields = body["properties"]
        for field in ("message", "system"):
            if field in fields:
                _set_on(fields[field], "string", maxLength=text_cap)
        if "history" in fields:
            _set_on(fields["history"], "array", maxItems=settings.max_history_messages)
        if "attachments" in fields:
            _set_on(fields["attachments"], "array", maxItems=settings.max_attachments)
            for alternative in fields["attachments"]["anyOf"]:
                if alternative.get("items", {}).get("format") == "uuid":
                    alternative["uniqueItems"] = True  # the same file twice is a 422
        # MAX_TOKENS, and MAX_REASONING_TOKENS more for a request that thinks: the field's own
        # maximum is the larger, and the condition says which applies.
        body.setdefault("allOf", []).append(_reply_budget(settings))
        _set_on(
            fields["max_tokens"],
            "integer",
            maximum=settings.max_tokens + settings.max_reasoning_tokens,
        )
    chat = schemas.get("ChatRequest")
    if chat is not None:
        # Not blank: at least one character other than white space.
        _set_on(chat["properties"]["message"], "string", pattern=r"\S")
    ui_text = schemas.get("UIPart", {}).get("properties", {}).get("text")
    if ui_text is not None:
        _set_on(ui_text, "string", maxLength=text_cap)
    turn = schemas.get("HistoryTurn", {}).get("properties", {}).get("content")
    if turn is not None:
        _set_on(turn, "string", maxLength=text_cap)
    inline = schemas.get("InlineAttachment", {}).get("properties", {}).get("data")
    if inline is not None:
        # Base64 of MAX_INLINE_ATTACHMENT_BYTES: the most one file can be, the request's
        # files together being held to it too (said in the field's description).
        _set_on(inline, "string", maxLength=base64_length(settings.max_inline_attachment_bytes))
    budget = schemas.get("ReasoningOptions", {}).get("properties", {}).get("budget_tokens")
    if budget is not None:
        _set_on(budget, "integer", maximum=settings.max_reasoning_tokens)


def _reply_budget(settings: Settings) -> dict[str, Any]:
    """max_tokens: at most MAX_TOKENS, or MAX_TOKENS + MAX_REASONING_TOKENS with `reasoning`."""

    def capped(minimum: int, maximum: int) -> dict[str, Any]:
        integer = {"type": "integer", "minimum": minimum, "maximum": maximum}
        # `type` in each branch too: fuzzers that flatten the condition keep the object.
        return {
            "type": "object",
            "properties": {"max_tokens": {"anyOf": [integer, {"type": "null"}]}},
        }

    thinking = settings.max_tokens + settings.max_reasoning_tokens
    return {
        "if": {
            "type": "object",
            "properties": {"reasoning": {"type": "object"}},
            "required": ["reasoning"],
        },
        "then": capped(MIN_TOKENS_WITH_THINKING, thinking),
        "else": capped(1, settings.max_tokens),
    }


def _set_on(field: dict[str, Any], json_type: str, **keywords: Any) -> None:
    """Add keywords to the field's alternative of that JSON type (the field, if it has none)."""
    for alternative in field.get("anyOf", [field]):
        if alternative.get("type") == json_type:
            alternative.update(keywords)


def _model_enums(schemas: dict[str, Any], models: list[str]) -> None:
    """Every `model` a request may name: the ids of GET /models."""
    for name in (
        "ChatRequest",
        "RegenerateRequest",
        "SessionCreate",
        "SessionUpdate",
        "UIChatRequest",
    ):
        field = schemas.get(name, {}).get("properties", {}).get("model")
        if field is None:
            continue
        _set_on(field, "string", enum=list(models))
        field["description"] = (
            "One of the ids GET /models lists (these, at this server's start); another is "
            "`422 unknown_model`. Left out: the session's model, else the default."
        )


def _upload_body(schema: dict[str, Any]) -> None:
    """POST /files needs its `file` part. The handler takes it as optional only to answer a
    body that is not multipart with 415 instead of a 422; the document says what is needed.
    A body that says multipart but cannot be read as such is a 400 from the parser, there
    and at POST /import."""
    for path in ("/files", "/import"):
        schema["paths"][path]["post"]["responses"]["400"] = {
            "description": "`bad_request`: the body is not readable multipart/form-data",
            "content": ERROR_CONTENT,
        }
    operation = schema["paths"]["/files"]["post"]
    body = operation["requestBody"]
    body["required"] = True
    body["content"]["multipart/form-data"]["schema"] = {
        "type": "object",
        "properties": {
            "file": {
                "type": "string",
                "format": "binary",
                "description": "The file: its type is decided from its bytes.",
            }
        },
        "required": ["file"],
    }
    schema["components"]["schemas"].pop("Body_upload_file_files_post", None)


def _streams(schema: dict[str, Any], schemas: dict[str, Any]) -> None:
    """The event schemas as components; each stream's media type names its item schema."""
    for name, kind in (
        ("ReplyStreamEvent", REPLY_STREAM_EVENT),
        ("UIMessageChunk", UI_MESSAGE_CHUNK),
    ):
        document = kind.json_schema(ref_template=REF)
        for defined, definition in document.pop("$defs", {}).items():
            schemas.setdefault(defined, definition)
        schemas[name] = document
    schemas["ReplyStreamItem"] = _native_item()
    schemas["UIMessageStreamItem"] = _ui_item()
    for route, operation in _operations(schema):
        ok = operation.get("responses", {}).get("200", {})
        content = ok.get("content", {})
        if "text/event-stream" not in content:
            continue
        ui = route in UI_STREAMS
        item = {"$ref": REF.format(model="UIMessageStreamItem" if ui else "ReplyStreamItem")}
        # Beside `itemSchema`, 3.2 reads `schema` as the whole stream: the list of its events.
        # Generators that know only `schema` type the stream from it.
        content["text/event-stream"] = {
            "schema": {"type": "array", "items": item},
            "itemSchema": item,
        }
        ok["description"] = ok.get("description", "") + (
            UI_STREAM_NOTE if ui else NATIVE_STREAM_NOTE
        )
        if route in STREAM_ONLY:
            content.pop("application/json", None)


def _json_text(model: str) -> dict[str, Any]:
    """An SSE `data:` field: a string of JSON that `model` describes."""
    return {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": REF.format(model=model)},
    }


def _native_item() -> dict[str, Any]:
    """One native event as it is on the wire (OpenAPI 3.2's SSE item), by its `event:`."""
    return {
        "description": "One event of the native reply stream, as sent: `id:`, `event:` and "
        "`data:` lines; `data` is JSON. ReplyStreamEvent is the same event parsed.",
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": "^[0-9]+$"},
                    "event": {"const": event},
                    "data": _json_text(model),
                },
                "required": ["id", "event", "data"],
            }
            for event, model in NATIVE_DATA.items()
        ],
    }


def _ui_item() -> dict[str, Any]:
    """One UI message stream event as it is on the wire: a chunk's JSON, or the last [DONE]."""
    return {
        "description": "One event of the UI message stream, as sent: a `data:` line holding a "
        "UIMessageChunk as JSON, or `[DONE]` at the end.",
        "type": "object",
        "properties": {"data": {"anyOf": [{"const": "[DONE]"}, _json_text("UIMessageChunk")]}},
        "required": ["data"],
    }
