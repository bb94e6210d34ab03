"""Claude through the official Anthropic SDK, streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, cast

import anthropic
import orjson
from anthropic import AsyncAnthropic, DefaultAioHttpClient, DefaultAsyncHttpxClient
from anthropic.types import MessageParam

from zyron.errors import UpstreamError
from zyron.llm import sdk
from zyron.llm.attachments import base64_data, note
from zyron.llm.base import (
    CacheTtl,
    Finished,
    PromptMessage,
    ProviderEvent,
    ProviderStatus,
    Reasoning,
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    TokenUsage,
    public_url,
)
from zyron.llm.errors import (
    upstream_cut_off,
    upstream_disconnected,
    upstream_error_for_status,
    upstream_malformed,
    upstream_timeout,
)
from zyron.llm.prompt_cache import with_breakpoints
from zyron.llm.sdk import (
    READ_ERRORS,
    SHAPE_ERRORS,
    HttpBackend,
    text_field,
    token_count,
    transport_error,
)
from zyron.llm.sse import sse_events

# The error type in Anthropic's error body, for errors that arrive inside a 200 stream.
_BODY_TYPES = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
    "authentication_error": 401,
    "permission_error": 403,
    "invalid_request_error": 400,
    "not_found_error": 404,
    "request_too_large": 413,
    "api_error": 500,
}


class AnthropicProvider:
    """Stream replies from the Messages API."""

    kind: Literal["anthropic"] = "anthropic"

    def __init__(
        self,
        *,
        name: str = "anthropic",
        api_key: str,
        base_url: str | None,
        timeout_seconds: float,
        connect_timeout_seconds: float,
        http_client: HttpBackend = "httpx",
        max_connections: int = 1000,
    ) -> None:
        self.name = name
        self.status = ProviderStatus()
        self._base_url = base_url
        client = sdk.http_client(
            DefaultAioHttpClient,
            DefaultAsyncHttpxClient,
            backend=http_client,
            max_connections=max_connections,
        )
        # base_url None lets the SDK read ANTHROPIC_BASE_URL itself, as it documents. Retries
        # are ours (zyron.chat.generation), so they can stop once text has reached the user.
        self._client = AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=sdk.timeout(timeout_seconds, connect_timeout_seconds),
            http_client=client,
        )

    async def stream(
        self,
        *,
        model: str,
        system: str | None,
        messages: Sequence[PromptMessage],
        max_tokens: int,
        reasoning: Reasoning | None = None,
        cache_ttl: CacheTtl | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        """Yield thinking and text deltas as they arrive, then Finished with usage and stop.

        With `cache_ttl`, the prompt carries cache breakpoints (zyron.llm.prompt_cache).
        """
        params: list[MessageParam] = [
            _message_param(m, thinking=reasoning is not None, provider=self.name) for m in messages
        ]
        extra: dict[str, Any] = {"system": system} if system else {}
        if cache_ttl is not None:
            system_blocks, marked = with_breakpoints(
                system, cast(list[dict[str, Any]], params), cache_ttl
            )
            params = cast(list[MessageParam], marked)
            if system_blocks is not None:
                extra["system"] = system_blocks
        if reasoning is not None:
            extra.update(thinking_options(reasoning))
        # The SDK makes, authenticates and sends the request and raises status errors; the
        # body is read as raw bytes (zyron.llm.sse) instead of through its parsed events,
        # which cost ~50 µs each in pydantic validation (docs/benchmarks.md). Only what is
        # used is decoded: deltas, and usage and stop reason from message_start/message_delta.
        reading = _Reading(model, _UsageCounts(cache_ttl))
        try:
            async with self._client.messages.with_streaming_response.create(
                model=model,
                max_tokens=max_tokens,
                messages=params,
                stream=True,
                **extra,
            ) as response:
                async for name, data in sse_events(response.iter_bytes()):
                    try:
                        event = reading.event(name, data)
                    except SHAPE_ERRORS as exc:  # not JSON, or JSON not of the protocol
                        raise upstream_malformed() from exc
                    if event is not None:
                        yield event
        except anthropic.APIError as exc:
            raise upstream_error(exc) from exc
        except READ_ERRORS as exc:
            raise transport_error(exc) from exc
        if reading.stop_reason is None:
            # The stream ended cleanly but without message_delta/message_stop: a cut-off reply.
            raise upstream_cut_off()
        yield Finished(
            stop_reason=reading.stop_reason, usage=reading.usage.total(), model=reading.model
        )

    def count_tokens(self, text: str) -> int | None:
        """Return None: Anthropic's counter is an API call, so prompts are estimated."""
        return None

    def health(self) -> dict[str, Any]:
        """Report what recent replies saw; the API is not called (it could cost money)."""
        return {
            "kind": self.kind,
            "base_url": public_url(str(self._client.base_url)),
            **self.status.report(),
        }

    async def aclose(self) -> None:
        """Close the SDK's connection pool."""
        await self._client.close()


def stream_error(data: bytes) -> UpstreamError:
    """Map an `error` event inside a 200 stream (`{"type": "error", "error": {...}}`)."""
    try:
        body: object = orjson.loads(data)
    except ValueError:
        body = None
    body_type = _error_type(body)
    status = _BODY_TYPES.get(body_type, 500) if body_type else 500
    return upstream_error_for_status(
        status,
        _error_message(body),
        retry_after=None,
        key_name="ANTHROPIC_API_KEY",
        overloaded=body_type == "overloaded_error",
    )


def upstream_error(exc: anthropic.APIError) -> UpstreamError:
    """Map an SDK error to Zyron's upstream_* error, without echoing secrets."""
    if isinstance(exc, anthropic.APITimeoutError):
        return upstream_timeout()
    if isinstance(exc, anthropic.APIConnectionError):
        return upstream_disconnected()
    status = exc.status_code if isinstance(exc, anthropic.APIStatusError) else 500
    body_type = _error_type(exc.body)
    if status == 200 and body_type:  # an `error` event inside the stream
        status = _BODY_TYPES.get(body_type, 500)
    retry_after = None
    if isinstance(exc, anthropic.APIStatusError):
        retry_after = exc.response.headers.get("retry-after")
    return upstream_error_for_status(
        status,
        _error_message(exc.body),
        retry_after=retry_after,
        key_name="ANTHROPIC_API_KEY",
        overloaded=status == 529 or body_type == "overloaded_error",
    )


class _Reading:
    """What one streamed reply has said so far, event by event."""

    __slots__ = ("model", "stop_reason", "usage")

    def __init__(self, model: str, usage: _UsageCounts) -> None:
        self.model = model
        self.usage = usage
        self.stop_reason: str | None = None

    def event(self, name: bytes, data: bytes) -> ProviderEvent | None:
        """Decode one event: what it yields to the reply, if anything; raises for bad shapes."""
        if name == b"content_block_delta":
            delta = orjson.loads(data)["delta"]
            kind = delta.get("type")
            if kind == "text_delta":
                return TextDelta(text_field(delta["text"])) if delta["text"] else None
            if kind == "thinking_delta":
                return ReasoningDelta(text_field(delta["thinking"])) if delta["thinking"] else None
            if kind == "signature_delta":
                return ReasoningEnd(signature=text_field(delta["signature"]))
        elif name == b"content_block_start":
            block = orjson.loads(data)["content_block"]
            if block.get("type") == "redacted_thinking":
                return ReasoningEnd(redacted=text_field(block["data"]))
        elif name == b"message_start":
            message = orjson.loads(data)["message"]
            self.model = text_field(message.get("model") or self.model)
            self.usage.start(message.get("usage") or {})
        elif name == b"message_delta":
            event = orjson.loads(data)
            stop_reason = (event.get("delta") or {}).get("stop_reason")
            self.stop_reason = None if stop_reason is None else text_field(stop_reason)
            self.usage.update(event.get("usage") or {})
        elif name == b"error":
            raise stream_error(data)
        return None


class _UsageCounts:
    """A reply's usage as the stream reports it: all of it in message_start, then running
    totals in message_delta, which replace what came before (the SDK does the same)."""

    def __init__(self, ttl: CacheTtl | None) -> None:
        self.counts = dict.fromkeys(_USAGE_FIELDS, 0)
        self.ttl = ttl
        self.written_1h: int | None = None  # None: the 5m/1h breakdown was not sent
        self.thinking: int | None = None

    def start(self, usage: dict[str, Any]) -> None:
        self.update(usage)
        breakdown = usage.get("cache_creation")
        if isinstance(breakdown, dict):
            # Absent or null: an endpoint that sends only part of the breakdown.
            written_1h = breakdown.get("ephemeral_1h_input_tokens")
            self.written_1h = None if written_1h is None else token_count(written_1h)

    def update(self, usage: dict[str, Any]) -> None:
        for name in _USAGE_FIELDS:
            value = usage.get(name)
            if value is not None:
                self.counts[name] = token_count(value)
        details = usage.get("output_tokens_details")
        if isinstance(details, dict):
            thinking = details.get("thinking_tokens")
            self.thinking = None if thinking is None else token_count(thinking)

    def total(self) -> TokenUsage:
        written = self.counts["cache_creation_input_tokens"]
        # Without the breakdown (an Anthropic-compatible endpoint may leave it out), writes
        # are billed at the TTL asked for: every mark carries the same one.
        written_1h = self.written_1h or 0
        if self.written_1h is None and self.ttl == "1h":
            written_1h = written
        return TokenUsage(
            **self.counts,
            cache_creation_1h_input_tokens=min(written_1h, written),
            reasoning_tokens=self.thinking,
        )


_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def thinking_options(reasoning: Reasoning) -> dict[str, Any]:
    """Return the Messages API's parameters for the thinking a request asks for.

    A budget is manual extended thinking (`enabled`, budget_tokens ≥ 1024 and below
    max_tokens); an effort is adaptive thinking with `output_config.effort`. Newer models
    may leave adaptive thinking out of the response unless `display` asks for its summary.
    """
    if reasoning.budget_tokens is not None:
        return {"thinking": {"type": "enabled", "budget_tokens": reasoning.budget_tokens}}
    options: dict[str, Any] = {"thinking": {"type": "adaptive", "display": "summarized"}}
    if reasoning.effort is not None:
        options["output_config"] = {"effort": reasoning.effort}
    return options


def _message_param(message: PromptMessage, *, thinking: bool, provider: str) -> MessageParam:
    """Build one turn's content blocks: files before a user's text, thinking before a reply's."""
    if message["role"] == "assistant":
        parts = message.get("parts")
        if thinking and parts and _signed_here(parts, provider):
            # Sent back exactly as received, in their order: the API checks the signatures
            # and the blocks' positions. Without thinking on, earlier thinking is left out,
            # which the API allows.
            return cast(MessageParam, {"role": "assistant", "content": _reply_blocks(parts)})
        return {"role": "assistant", "content": message["content"]}
    attachments = message.get("attachments")
    if not attachments:
        return {"role": "user", "content": message["content"]}
    blocks: list[dict[str, Any]] = []
    for attachment in attachments:
        said = note(attachment)
        if said is not None:
            blocks.append({"type": "text", "text": said})
        elif attachment.kind == "image":
            source = {
                "type": "base64",
                "media_type": attachment.media_type,
                "data": base64_data(attachment),
            }
            blocks.append({"type": "image", "source": source})
        elif attachment.kind == "pdf":
            source = {
                "type": "base64",
                "media_type": "application/pdf",
                "data": base64_data(attachment),
            }
            blocks.append({"type": "document", "source": source, "title": attachment.filename})
        else:
            source = {
                "type": "text",
                "media_type": "text/plain",
                "data": attachment.data.decode("utf-8", errors="replace"),
            }
            blocks.append({"type": "document", "source": source, "title": attachment.filename})
    blocks.append({"type": "text", "text": message["content"]})
    return cast(MessageParam, {"role": "user", "content": blocks})


def _signed_here(parts: Sequence[dict[str, Any]], provider: str) -> bool:
    """Tell whether a reply's reasoning can go back: made by this provider, every block
    signed or redacted (another endpoint, even Anthropic-compatible, refuses its signatures)."""
    thoughts = [part for part in parts if part.get("type") == "reasoning"]
    return bool(thoughts) and all(
        part.get("provider") == provider and (part.get("signature") or part.get("redacted"))
        for part in thoughts
    )


def _reply_blocks(parts: Sequence[dict[str, Any]]) -> list[Any]:
    blocks: list[Any] = []
    for part in parts:
        if part.get("type") == "reasoning":
            if part.get("redacted"):
                blocks.append({"type": "redacted_thinking", "data": part["redacted"]})
            else:
                blocks.append(
                    {"type": "thinking", "thinking": part["text"], "signature": part["signature"]}
                )
        elif part.get("type") == "text" and part["text"]:
            blocks.append({"type": "text", "text": part["text"]})
    return blocks


def _error_type(body: object) -> str | None:
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("type"), str):
            return str(inner["type"])
    return None


def _error_message(body: object) -> str:
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])[:300]
    return "no details"
