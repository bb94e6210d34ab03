"""OpenAI and OpenAI-compatible servers (vLLM, Ollama, llama.cpp, OpenRouter) through the
official OpenAI SDK's chat completions, streaming."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import aiohttp
import httpx2
import openai
import orjson
from openai import AsyncOpenAI, DefaultAioHttpClient, DefaultAsyncHttpxClient, omit
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)

from zyron.errors import UpstreamError
from zyron.llm import sdk
from zyron.llm.attachments import data_url, inline_text
from zyron.llm.base import (
    CacheTtl,
    Finished,
    PromptMessage,
    ProviderEvent,
    ProviderKind,
    ProviderStatus,
    Reasoning,
    ReasoningDelta,
    TextDelta,
    TokenUsage,
)
from zyron.llm.errors import (
    upstream_cut_off,
    upstream_disconnected,
    upstream_error_for_status,
    upstream_malformed,
    upstream_timeout,
)
from zyron.llm.sdk import (
    READ_ERRORS,
    SHAPE_ERRORS,
    UNMAPPED_READ_ERRORS,
    HttpBackend,
    text_field,
    token_count,
    transport_error,
)
from zyron.llm.sse import sse_events

# Servers that need no key (Ollama, vLLM, llama.cpp) still get one: the SDK refuses to start
# without a key, and an explicit placeholder keeps it from reading OPENAI_API_KEY by itself.
NO_KEY_PLACEHOLDER = "not-needed"

# OpenAI's finish_reason in the Anthropic-style stop reasons the rest of Zyron stores.
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "content_filter": "refusal",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
}

# OpenAI's reasoning_effort takes low, medium and high; the stronger efforts ask for its most.
_REASONING_EFFORT = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}

# The HTTP status an error sent inside a 200 stream stands for, by its `type` or `code` name,
# for servers that do not put a numeric status in `code` (OpenAI, llama.cpp, vLLM's names).
_ERROR_NAMES = {
    "invalid_request_error": 400,
    "BadRequestError": 400,
    "context_length_exceeded": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "NotFoundError": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "InternalServerError": 500,
    "overloaded_error": 503,
    "unavailable_error": 503,
    "ServiceUnavailableError": 503,
}


# How long the end of an HTTP/1.1 body is awaited after [DONE], so that its connection is kept
# for the next request: the SDK's own reader waits as long.
_DRAIN_SECONDS = 0.1


class OpenAICompatProvider:
    """Stream replies from a chat completions endpoint."""

    kind: ProviderKind = "openai"

    def __init__(
        self,
        *,
        name: str = "openai",
        api_key: str | None,
        base_url: str | None,
        timeout_seconds: float,
        connect_timeout_seconds: float,
        http_client: HttpBackend = "aiohttp",
        max_connections: int = 1000,
        max_tokens_parameter: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
        api_key_setting: str = "OPENAI_API_KEY",
    ) -> None:
        self.name = name
        self.status = ProviderStatus()
        self._max_tokens_parameter = max_tokens_parameter
        # Named in the upstream_auth detail so the operator knows what to fix; never the key.
        self._key_name = f"{api_key_setting} (provider '{name}')"
        client = sdk.http_client(
            DefaultAioHttpClient,
            DefaultAsyncHttpxClient,
            backend=http_client,
            max_connections=max_connections,
        )
        # base_url None lets the SDK read OPENAI_BASE_URL itself, else use api.openai.com.
        # Retries are ours (zyron.chat.generation), so they can stop once text has reached
        # the user.
        self._client = AsyncOpenAI(
            api_key=api_key or NO_KEY_PLACEHOLDER,
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
        cache_ttl: CacheTtl | None = None,  # Claude's; prefix caching here is the server's own
    ) -> AsyncIterator[ProviderEvent]:
        """Yield reasoning and text deltas as they arrive, then Finished with usage and stop.

        Servers that think (vLLM, DeepSeek, Ollama) stream it as `reasoning_content` (newer
        vLLM: `reasoning`) beside `content`; it is never sent back, as those servers ask.
        """
        prompt: list[ChatCompletionMessageParam] = []
        if system:
            prompt.append(ChatCompletionSystemMessageParam(role="system", content=system))
        prompt.extend(_message_param(m) for m in messages)
        use_completion_tokens = self._max_tokens_parameter == "max_completion_tokens"
        reading = _Reading(model)
        # The SDK makes, authenticates and sends the request and raises status errors; the
        # body is read as raw bytes (zyron.llm.sse) and each chunk decoded with orjson, instead
        # of the SDK's pydantic model per chunk (docs/benchmarks.md). As in the SDK's reader,
        # event names are ignored: a chunk with an `error` member is an error, whatever its name.
        try:
            async with self._client.chat.completions.with_streaming_response.create(
                model=model,
                messages=prompt,
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=omit if use_completion_tokens else max_tokens,
                max_completion_tokens=max_tokens if use_completion_tokens else omit,
                reasoning_effort=_effort(reasoning),
            ) as response:
                body = response.iter_bytes()
                async for _name, data in sse_events(body):
                    if data.startswith(b"[DONE]"):
                        if response.http_version == "HTTP/1.1":
                            await _drain(body)
                        break
                    try:
                        event = reading.chunk(data)
                    except SHAPE_ERRORS as exc:  # not JSON, or JSON that is not a chunk
                        raise self._failed(upstream_malformed()) from exc
                    if isinstance(event, dict | str):  # an `error` member: an object, or a string
                        raise self._failed(self._status_error(_stream_error_status(event), event))
                    if event is not None:
                        yield event
        except openai.APIError as exc:
            raise self._failed(self._upstream_error(exc)) from exc
        except READ_ERRORS as exc:
            # Reading the body raw, transport errors come as httpx2's, not wrapped by the SDK.
            raise self._failed(_read_error(exc)) from exc
        finish_reason, usage, model_used = reading.finish_reason, reading.usage, reading.model
        if finish_reason is None:
            # The stream ended cleanly but no choice said why it stopped: a cut-off reply.
            raise self._failed(upstream_cut_off())
        # A server that ignores stream_options sends no usage. OpenAI, vLLM, llama.cpp and Ollama
        # stream about one token per chunk, so the chunk count stands in for the reply's
        # tokens; the prompt is left uncounted (0) rather than guessed.
        if usage is None:
            usage = TokenUsage(output_tokens=reading.content_chunks)
        self.status.succeeded()
        yield Finished(
            stop_reason=_STOP_REASONS.get(finish_reason, finish_reason),
            usage=usage,
            model=model_used,
        )

    def count_tokens(self, text: str) -> int | None:
        """Return None: there is no local tokenizer for an arbitrary server's model."""
        return None

    def health(self) -> dict[str, Any]:
        """Report the endpoint and what recent calls saw, without a request."""
        return {"kind": self.kind, "base_url": self.public_base_url, **self.status.report()}

    @property
    def public_base_url(self) -> str:
        """Return the base URL without user info, query or fragment, which may hold secrets."""
        url = self._client.base_url
        bare = url.copy_with(username=None, password=None, query=None, fragment=None)
        return str(bare).rstrip("/")

    async def aclose(self) -> None:
        """Close the SDK's connection pool."""
        await self._client.close()

    def _failed(self, error: UpstreamError) -> UpstreamError:
        self.status.failed(error.code)
        return error

    def _upstream_error(self, exc: openai.APIError) -> UpstreamError:
        """Map an SDK error to Zyron's upstream_* error, without echoing secrets."""
        if isinstance(exc, openai.APITimeoutError) and not _is_disconnect(exc):
            return upstream_timeout()
        if isinstance(exc, openai.APIConnectionError):
            return upstream_disconnected()
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(
                exc.status_code, exc.body, exc.response.headers.get("retry-after")
            )
        return self._status_error(_stream_error_status(exc.body), exc.body)

    def _status_error(
        self, status: int, body: object, retry_after: str | None = None
    ) -> UpstreamError:
        """Map an error status and the body's `error` member, sent as such or in the stream."""
        return upstream_error_for_status(
            status,
            _error_message(body),
            retry_after=retry_after,
            key_name=self._key_name,
            # vLLM, Ollama and llama.cpp answer 503 while loading a model or when full;
            # 529 is what Anthropic-style gateways send for the same.
            overloaded=status in (503, 529),
        )


class _Reading:
    """What one streamed reply has said so far, chunk by chunk."""

    __slots__ = ("content_chunks", "finish_reason", "model", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.finish_reason: str | None = None
        self.usage: TokenUsage | None = None
        self.content_chunks = 0

    def chunk(self, data: bytes) -> ProviderEvent | dict[str, Any] | str | None:
        """Decode one chunk: the delta it yields, or its error member; raises for bad shapes."""
        chunk = orjson.loads(data)
        if not isinstance(chunk, dict):
            raise TypeError("a chunk that is not a JSON object")
        error = chunk.get("error")
        if error:
            return error if isinstance(error, dict) else str(error)
        chunk_model = chunk.get("model")
        if chunk_model:
            self.model = text_field(chunk_model)
        chunk_usage = chunk.get("usage")
        if chunk_usage is not None:
            self.usage = _usage(chunk_usage)
        # The usage chunk has no choices; vLLM sends it with `"choices": null`.
        choices = chunk.get("choices")
        if choices is None:
            return None
        if not isinstance(choices, list):
            raise TypeError("choices that are not a list")
        event: ProviderEvent | None = None
        for choice in choices:
            if choice.get("index", 0) != 0:  # only one completion is asked for
                continue
            delta = choice.get("delta")
            if delta:
                text = delta.get("content")
                if text:
                    self.content_chunks += 1
                    event = TextDelta(text_field(text))
                else:  # servers that think send it beside an empty content
                    thought = delta.get("reasoning_content") or delta.get("reasoning")
                    if isinstance(thought, str) and thought:
                        event = ReasoningDelta(thought)
            finish = choice.get("finish_reason")
            if finish is not None:
                self.finish_reason = text_field(finish)
        return event


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read what is left of a body after [DONE], for a short while, ignoring its failures."""
    with contextlib.suppress(TimeoutError, httpx2.HTTPError, *UNMAPPED_READ_ERRORS):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for _ in body:
                pass


def _read_error(exc: Exception) -> UpstreamError:
    """Map a failure of reading the body: a dropped connection, or silence past the timeout.

    The aiohttp transport reports a connection closed mid-body as a ConnectTimeout too.
    """
    if isinstance(exc, UNMAPPED_READ_ERRORS) or (
        isinstance(exc, httpx2.TimeoutException) and _is_disconnect(exc)
    ):
        return upstream_disconnected(
            "The model provider closed the connection before the reply was complete."
        )
    return transport_error(exc)


def _effort(reasoning: Reasoning | None) -> Any:
    if reasoning is None or reasoning.effort is None:
        return omit
    return _REASONING_EFFORT[reasoning.effort]


def _message_param(message: PromptMessage) -> ChatCompletionMessageParam:
    """Build one turn: images as data URLs, PDFs as file parts, text files inline."""
    if message["role"] == "assistant":
        return ChatCompletionAssistantMessageParam(role="assistant", content=message["content"])
    attachments = message.get("attachments")
    if not attachments:
        return ChatCompletionUserMessageParam(role="user", content=message["content"])
    parts: list[Any] = []
    for attachment in attachments:
        if attachment.missing or attachment.omitted or attachment.kind == "text":
            continue  # said in the text part, by inline_text
        if attachment.kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": data_url(attachment)}})
        else:
            parts.append(
                {
                    "type": "file",
                    "file": {"filename": attachment.filename, "file_data": data_url(attachment)},
                }
            )
    parts.append({"type": "text", "text": inline_text(message)})
    return ChatCompletionUserMessageParam(role="user", content=parts)


def _is_disconnect(exc: BaseException) -> bool:
    """Tell whether a reported timeout was a refused or dropped connection.

    The SDK's vendored aiohttp transport maps every aiohttp.ClientConnectionError, a refused
    connection included, to a ConnectTimeout (Anthropic's copy maps it to ConnectError); the
    causes still tell which it was.
    """
    causes: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(causes) < 10:
        causes.append(link)
        link = link.__cause__
    if any(isinstance(cause, TimeoutError) for cause in causes):
        return False
    return any(
        isinstance(cause, ConnectionError | aiohttp.ClientConnectionError) for cause in causes
    )


def _stream_error_status(body: object) -> int:
    """Tell the HTTP status an in-stream error stands for; 500 when it does not say."""
    if not isinstance(body, dict):
        return 500
    # OpenRouter, vLLM and llama.cpp put the HTTP status in `code`; OpenAI puts a name there.
    for key in ("code", "status"):
        value = body.get(key)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and 400 <= value < 600:
            return value
    for key in ("code", "type"):  # the code is the more specific name
        value = body.get(key)
        if isinstance(value, str) and value in _ERROR_NAMES:
            return _ERROR_NAMES[value]
    return 500


def _error_message(body: object) -> str:
    """Return the error's own message: the SDK hands over the body's `error` member."""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:300]
    if isinstance(body, str) and body:  # Ollama: {"error": "model 'x' not found"}
        return body[:300]
    return "no details"


def _usage(usage: dict[str, Any]) -> TokenUsage:
    """The usage chunk in Anthropic's meanings: the prompt's cached part apart from the rest.

    `prompt_tokens` includes the cached tokens; servers that cache report them in
    `prompt_tokens_details.cached_tokens` (OpenAI; vLLM with --enable-prompt-tokens-details;
    llama.cpp's server in recent builds), others send no details, which counts as none cached.
    """
    if not isinstance(usage, dict):
        raise TypeError("usage that is not a JSON object")
    prompt = _count(usage.get("prompt_tokens")) or 0
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else None
    cached = min(prompt, cached or 0)
    reply = usage.get("completion_tokens_details")
    return TokenUsage(
        input_tokens=prompt - cached,
        output_tokens=_count(usage.get("completion_tokens")) or 0,
        cache_read_input_tokens=cached,
        reasoning_tokens=_count(reply.get("reasoning_tokens")) if isinstance(reply, dict) else None,
    )


def _count(value: object) -> int | None:
    """A token count from a chunk, None when not sent; anything but a whole number is malformed."""
    return None if value is None else token_count(value)
