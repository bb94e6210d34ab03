"""The OpenAPI document, refined to say exactly what the server does.

FastAPI builds the document from the routes. This adds what it cannot know:
- the error shape on 422s and 413s, and which routes take guests;
- limits configured at start (page sizes), and the model ids the server offers;
- the events of each stream, as component schemas.

Streams: OpenAPI 3.1 has no way to type the items of an event stream. 3.2's `itemSchema`
does, but the generators front ends use (openapi-typescript 7, orval) read neither 3.2 nor
it yet. So the event schemas are components, which every generator turns into types, and each
stream's media type names its item schema in `x-itemSchema`, 3.2's keyword as an extension:
moving to 3.2 later is a rename.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI

from zyron.chat.stream_schemas import REPLY_STREAM_EVENT
from zyron.errors import ErrorBody
from zyron.settings import Settings
from zyron.ui.chunk_schemas import UI_MESSAGE_CHUNK

GUEST_ROUTES = frozenset({"/chat", "/ui/chat"})
REF = "#/components/schemas/{model}"
# Streams of UI message chunks; every other text/event-stream is the native reply stream.
UI_STREAMS = frozenset({"/ui/chat", "/ui/chat/{chat_id}/stream"})
# Streams that never answer JSON (POST /chat and regenerate do, with `stream: false`).
STREAM_ONLY = frozenset({"/chat/{message_id}/stream", "/sessions/{session_id}/stream", *UI_STREAMS})
NATIVE_STREAM_NOTE = (
    " Each event is one `ReplyStreamEvent` (components): `event:` names its kind, `data:` "
    "is its JSON, `id:` its position; `: ping` comments keep an idle stream open."
)
UI_STREAM_NOTE = (
    " Each event is `data: ` and one `UIMessageChunk` (components) as JSON; the stream ends "
    "with `data: [DONE]`; `: ping` comments keep an idle stream open."
)


def refine_openapi(
    app: FastAPI, settings: Settings, model_ids: Callable[[], list[str] | None]
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
        _errors(schema, schemas)
        _page_limits(schema, settings)
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


def _errors(schema: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Our error shape on 422s and 413s instead of FastAPI's; guests on the guest routes."""
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for route, operation in _operations(schema):
        responses = operation.setdefault("responses", {})
        if "422" in responses:
            responses["422"] = {
                "description": responses["422"]["description"]
                if responses["422"].get("description") not in (None, "Validation Error")
                else "`validation_error` or `invalid_json`: the detail names the field",
                "content": error_body,
            }
        if "requestBody" in operation and "413" not in responses:
            responses["413"] = {
                "description": "`payload_too_large`: the body exceeds MAX_BODY_BYTES",
                "content": error_body,
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
    }
    for route, cap in caps.items():
        for operation in schema["paths"].get(route, {}).values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "limit":
                    parameter["schema"]["maximum"] = cap


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
        for alternative in field.get("anyOf", [field]):
            if alternative.get("type") == "string":
                alternative["enum"] = list(models)
        field["description"] = (
            "One of the ids GET /models lists (these, at this server's start); another is "
            "`422 unknown_model`. Left out: the session's model, else the default."
        )


def _upload_body(schema: dict[str, Any]) -> None:
    """POST /files needs its `file` part. The handler takes it as optional only to answer a
    body that is not multipart with 415 instead of a 422; the document says what is needed."""
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
    for route, operation in _operations(schema):
        ok = operation.get("responses", {}).get("200", {})
        content = ok.get("content", {})
        if "text/event-stream" not in content:
            continue
        ui = route in UI_STREAMS
        content["text/event-stream"] = {
            "schema": {"type": "string"},
            "x-itemSchema": {
                "$ref": REF.format(model="UIMessageChunk" if ui else "ReplyStreamEvent")
            },
        }
        ok["description"] = ok.get("description", "") + (
            UI_STREAM_NOTE if ui else NATIVE_STREAM_NOTE
        )
        if route in STREAM_ONLY:
            content.pop("application/json", None)
