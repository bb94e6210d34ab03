"""OpenAICompatProvider through the official SDK over real HTTP against the fake upstream."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from tests.fakes.openai_upstream import (
    Drop,
    FakeOpenAI,
    Garbage,
    HttpError,
    MidStreamError,
    ReasoningReply,
    Reply,
    TextReply,
    Truncated,
)
from zyron.errors import UpstreamError
from zyron.llm.base import (
    Finished,
    PromptMessage,
    Provider,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    TokenUsage,
)
from zyron.llm.openai_compat import NO_KEY_PLACEHOLDER, OpenAICompatProvider

MODEL = "gpt-fake-1"
PROMPT: list[PromptMessage] = [{"role": "user", "content": "hi"}]
SECRET = "sk-proj-SECRET-never-shown-0123456789"
HTTP_CLIENTS = ("aiohttp", "httpx")

HttpClient = Literal["aiohttp", "httpx"]


@dataclass
class Outcome:
    """What one call to stream() produced."""

    events: list[ProviderEvent] = field(default_factory=list)
    error: UpstreamError | None = None
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        """Return the text deltas in order."""
        return [event.text for event in self.events if isinstance(event, TextDelta)]

    @property
    def finished(self) -> Finished:
        """Return the Finished event, which must be the last one."""
        assert self.error is None, self.error.detail
        last = self.events[-1]
        assert isinstance(last, Finished)
        return last

    @property
    def failure(self) -> UpstreamError:
        """Return the error the stream raised."""
        assert self.error is not None, "the stream did not fail"
        return self.error


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A running fake upstream, stopped after the test."""
    with FakeOpenAI() as upstream:
        yield upstream


def _provider(base_url: str, **overrides: Any) -> OpenAICompatProvider:
    options: dict[str, Any] = {
        "api_key": "sk-test",
        "base_url": base_url,
        "timeout_seconds": 5.0,
        "connect_timeout_seconds": 2.0,
        "http_client": "httpx",
    }
    options.update(overrides)
    return OpenAICompatProvider(**options)


def _stream(
    base_url: str,
    *,
    system: str | None = None,
    messages: Sequence[PromptMessage] = PROMPT,
    max_tokens: int = 64,
    **overrides: Any,
) -> Outcome:
    """Run one stream() to its end in a fresh event loop, the provider made and closed in it."""

    async def scenario() -> Outcome:
        provider = _provider(base_url, **overrides)
        outcome = Outcome()
        try:
            async for event in provider.stream(
                model=MODEL, system=system, messages=messages, max_tokens=max_tokens
            ):
                outcome.events.append(event)
        except UpstreamError as exc:
            outcome.error = exc
        finally:
            outcome.health = provider.health()
            await provider.aclose()
        return outcome

    return asyncio.run(scenario())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
def test_text_deltas_then_finished(fake: FakeOpenAI, http_client: HttpClient) -> None:
    """Each content chunk becomes a delta in order; usage and stop reason end the stream."""
    fake.enqueue(TextReply(chunks=("Bon", "jour", " à ", "toi"), prompt_tokens=7))

    outcome = _stream(fake.base_url, http_client=http_client)

    assert outcome.texts == ["Bon", "jour", " à ", "toi"]
    assert outcome.finished == Finished(
        stop_reason="end_turn", usage=TokenUsage(input_tokens=7, output_tokens=4), model=MODEL
    )
    assert [type(event) for event in outcome.events] == [TextDelta] * 4 + [Finished]


def test_request_body(fake: FakeOpenAI) -> None:
    """The system prompt goes first, turns follow, and streaming asks for usage."""
    messages: list[PromptMessage] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]

    _stream(fake.base_url, system="Be brief.", messages=messages, max_tokens=33)

    (request,) = fake.requests
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.body == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."}, *messages],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 33,
    }
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["x-stainless-retry-count"] == "0"


def test_no_system_prompt_sends_only_the_turns(fake: FakeOpenAI) -> None:
    """Without a system prompt the first message is the first turn."""
    _stream(fake.base_url, system=None)

    assert fake.requests[0].body["messages"] == PROMPT


def test_max_completion_tokens_parameter(fake: FakeOpenAI) -> None:
    """OpenAI's newer models get max_completion_tokens and no max_tokens."""
    _stream(fake.base_url, max_tokens=21, max_tokens_parameter="max_completion_tokens")

    body = fake.requests[0].body
    assert body["max_completion_tokens"] == 21
    assert "max_tokens" not in body


def test_no_api_key_sends_a_placeholder(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyless server gets a placeholder, never a key the SDK would find in the environment."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    outcome = _stream(fake.base_url, api_key=None)

    assert outcome.texts == ["Hello", ", ", "world", "!"]
    headers = fake.requests[0].headers
    assert headers["authorization"] == f"Bearer {NO_KEY_PLACEHOLDER}"
    assert SECRET not in str(headers)


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("eos_token", "eos_token"),
    ],
)
def test_stop_reasons(fake: FakeOpenAI, finish_reason: str, stop_reason: str) -> None:
    """OpenAI's finish reasons become Zyron's; unknown ones pass through."""
    fake.enqueue(TextReply(finish_reason=finish_reason))

    assert _stream(fake.base_url).finished.stop_reason == stop_reason


def test_model_comes_from_the_chunks(fake: FakeOpenAI) -> None:
    """The model the server says it used is reported, not the alias asked for."""
    fake.enqueue(TextReply(model="gpt-fake-1-2026-01-01"))

    assert _stream(fake.base_url).finished.model == "gpt-fake-1-2026-01-01"


def test_missing_usage_counts_chunks(fake: FakeOpenAI) -> None:
    """A server that sends no usage gets one output token per content chunk and no input."""
    fake.enqueue(TextReply(chunks=("a", "b", "c"), usage=False))

    finished = _stream(fake.base_url).finished

    assert (finished.usage.input_tokens, finished.usage.output_tokens) == (0, 3)


def test_cached_prompt_tokens_are_apart(fake: FakeOpenAI) -> None:
    """The prompt's cached tokens are counted as cache reads, the rest as input."""
    fake.enqueue(TextReply(chunks=("a", "b"), prompt_tokens=1000, cached_tokens=768))

    assert _stream(fake.base_url).finished.usage == TokenUsage(
        input_tokens=232, output_tokens=2, cache_read_input_tokens=768
    )


@pytest.mark.parametrize("reasoning_field", ["reasoning_content", "reasoning"])
def test_reasoning_deltas_then_text(
    fake: FakeOpenAI, reasoning_field: Literal["reasoning_content", "reasoning"]
) -> None:
    """Either name of the reasoning field gives reasoning deltas; usage says how many tokens."""
    fake.enqueue(
        ReasoningReply(reasoning=("Let me", " think."), chunks=("Yes",), field=reasoning_field)
    )

    outcome = _stream(fake.base_url)

    assert outcome.events[:3] == [
        ReasoningDelta("Let me"),
        ReasoningDelta(" think."),
        TextDelta("Yes"),
    ]
    assert outcome.finished.usage == TokenUsage(
        input_tokens=12, output_tokens=3, reasoning_tokens=2
    )


def test_nothing_after_done_is_read_as_a_chunk(fake: FakeOpenAI) -> None:
    """`[DONE]` ends the stream: what follows it is not taken for a chunk."""
    fake.enqueue(TextReply(chunks=("ok",), after_done="{not json"))

    outcome = _stream(fake.base_url)

    assert outcome.texts == ["ok"]
    assert outcome.finished.stop_reason == "end_turn"


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
def test_connection_is_kept_after_done(fake: FakeOpenAI, http_client: HttpClient) -> None:
    """The body's end after `[DONE]` is read, so the next reply reuses the connection."""
    fake.enqueue(TextReply(keep_alive=True), TextReply(keep_alive=True))

    async def scenario() -> None:
        provider = _provider(fake.base_url, http_client=http_client)
        for _ in range(2):
            events = [
                event
                async for event in provider.stream(
                    model=MODEL, system=None, messages=PROMPT, max_tokens=8
                )
            ]
            assert isinstance(events[-1], Finished)
        await provider.aclose()

    asyncio.run(scenario())

    first, second = fake.requests
    assert first.client_port == second.client_port


def test_consumer_stopping_early_is_not_a_failure(fake: FakeOpenAI) -> None:
    """Closing the stream after the first delta releases it without an error."""
    fake.enqueue(TextReply(chunks=("one", "two", "three"), chunk_delay=0.05))

    async def scenario() -> tuple[list[str], dict[str, Any]]:
        provider = _provider(fake.base_url)
        texts: list[str] = []
        stream = provider.stream(model=MODEL, system=None, messages=PROMPT, max_tokens=8)
        async for event in stream:
            assert isinstance(event, TextDelta)
            texts.append(event.text)
            break
        assert isinstance(stream, AsyncGenerator)
        await stream.aclose()
        health = provider.health()
        await provider.aclose()
        return texts, health

    texts, health = asyncio.run(scenario())

    assert texts == ["one"]
    assert health["state"] == "unknown"


@pytest.mark.parametrize(
    ("reply", "code", "status", "retryable", "retry_after"),
    [
        (
            HttpError(429, error_type="rate_limit_error", retry_after="7"),
            "upstream_rate_limited",
            429,
            True,
            "7",
        ),
        (
            HttpError(401, error_type="invalid_request_error", code="invalid_api_key"),
            "upstream_auth",
            502,
            False,
            None,
        ),
        (HttpError(403, error_type="permission_error"), "upstream_auth", 502, False, None),
        (HttpError(400, "max_tokens is too large"), "upstream_bad_request", 400, False, None),
        (HttpError(404, code="model_not_found"), "upstream_bad_request", 400, False, None),
        (HttpError(422), "upstream_bad_request", 400, False, None),
        (HttpError(500, error_type="server_error"), "upstream_unavailable", 502, True, None),
        (HttpError(502, error_type="server_error"), "upstream_unavailable", 502, True, None),
        (HttpError(503, "Loading model", retry_after="2"), "upstream_overloaded", 503, True, "2"),
        (
            HttpError(404, raw_body={"error": "model 'x' not found"}),
            "upstream_bad_request",
            400,
            False,
            None,
        ),
    ],
)
def test_http_errors(
    fake: FakeOpenAI,
    reply: HttpError,
    code: str,
    status: int,
    retryable: bool,
    retry_after: str | None,
) -> None:
    """Each HTTP status becomes the same upstream_* error the Anthropic provider raises."""
    fake.enqueue(reply)

    outcome = _stream(fake.base_url)
    error = outcome.failure

    assert outcome.events == []
    assert (error.code, error.status_code, error.retryable) == (code, status, retryable)
    assert error.retry_after == retry_after
    assert error.headers == ({"Retry-After": retry_after} if retry_after else {})
    assert outcome.health["state"] == "failing"
    assert outcome.health["last_error"] == code


def test_bad_request_detail_carries_the_servers_message(fake: FakeOpenAI) -> None:
    """A rejected request says why, in the server's words."""
    fake.enqueue(HttpError(400, "max_tokens is too large: 99999999"))

    detail = _stream(fake.base_url).failure.detail

    assert detail == "The model provider rejected the request: max_tokens is too large: 99999999"


def test_ollama_error_string_is_the_message(fake: FakeOpenAI) -> None:
    """Ollama's `{"error": "..."}` body still gives a readable detail."""
    fake.enqueue(HttpError(404, raw_body={"error": "model 'llama9' not found"}))

    assert _stream(fake.base_url).failure.detail.endswith("model 'llama9' not found")


def test_auth_error_names_the_setting_never_the_key(fake: FakeOpenAI) -> None:
    """A rejected key is reported by the setting and provider to fix; the key is not echoed."""
    fake.enqueue(HttpError(401, f"Incorrect API key provided: {SECRET}.", code="invalid_api_key"))

    error = _stream(fake.base_url, api_key=SECRET, name="openrouter").failure

    assert "OPENAI_API_KEY" in error.detail
    assert "openrouter" in error.detail
    assert SECRET not in error.detail
    assert SECRET not in str(error)
    assert fake.requests[0].headers["authorization"] == f"Bearer {SECRET}"


def test_auth_error_names_a_custom_setting(fake: FakeOpenAI) -> None:
    """A provider configured from another variable names that one."""
    fake.enqueue(HttpError(403, "forbidden"))

    error = _stream(fake.base_url, api_key_setting="ZYRON_VLLM_API_KEY").failure

    assert "ZYRON_VLLM_API_KEY" in error.detail


@pytest.mark.parametrize(
    ("reply", "code", "status", "retryable"),
    [
        (MidStreamError(), "upstream_unavailable", 502, True),
        (MidStreamError(error_type=None, code=429), "upstream_rate_limited", 429, True),
        (MidStreamError(code="rate_limit_exceeded"), "upstream_rate_limited", 429, True),
        (MidStreamError(error_type=None, code=503), "upstream_overloaded", 503, True),
        (
            MidStreamError(error_type="BadRequestError", code=400),
            "upstream_bad_request",
            400,
            False,
        ),
        (MidStreamError(error_type="invalid_request_error"), "upstream_bad_request", 400, False),
        (MidStreamError(error_type=None, code="502"), "upstream_unavailable", 502, True),
        (MidStreamError(error_type="unavailable_error"), "upstream_overloaded", 503, True),
        (MidStreamError(event="error"), "upstream_unavailable", 502, True),
        (MidStreamError(event="error", code=429), "upstream_rate_limited", 429, True),
    ],
)
def test_error_inside_the_stream(
    fake: FakeOpenAI, reply: MidStreamError, code: str, status: int, retryable: bool
) -> None:
    """`data: {"error": ...}` after some text maps by its code or type, after that text."""
    fake.enqueue(reply)

    outcome = _stream(fake.base_url)
    error = outcome.failure

    assert outcome.texts == ["Partial"]
    assert (error.code, error.status_code, error.retryable) == (code, status, retryable)
    assert error.retry_after is None


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
def test_dropped_connection(fake: FakeOpenAI, http_client: HttpClient) -> None:
    """A connection closed mid-body is a retryable 502, after the text that did arrive."""
    fake.enqueue(Drop(chunks=("Hel", "lo")))

    outcome = _stream(fake.base_url, http_client=http_client)

    assert outcome.texts == ["Hel", "lo"]
    error = outcome.failure
    assert (error.code, error.status_code, error.retryable) == ("upstream_unavailable", 502, True)


@pytest.mark.parametrize("done", [True, False])
def test_stream_without_finish_reason_is_cut_off(fake: FakeOpenAI, done: bool) -> None:
    """A body that ends cleanly but never says why it stopped is a cut-off reply."""
    fake.enqueue(Truncated(chunks=("Par", "tial"), done=done))

    outcome = _stream(fake.base_url)

    assert outcome.texts == ["Par", "tial"]
    error = outcome.failure
    assert (error.code, error.status_code, error.retryable) == ("upstream_unavailable", 502, True)
    assert "before the reply was complete" in error.detail


@pytest.mark.parametrize(
    "payload",
    [
        "{not json",
        "",
        "42",
        '["a"]',
        '"text"',
        "null",
        # choices that are not a list of choice objects
        '{"choices": "abc"}',
        '{"choices": {"index": 0, "delta": {"content": "x"}}}',
        '{"choices": 1}',
        '{"choices": [1]}',
        '{"choices": [{"index": 0, "delta": ["x"]}]}',
        # members of the wrong type
        '{"choices": [{"index": 0, "delta": {"content": 5}}]}',
        '{"choices": [{"index": 0, "delta": {}, "finish_reason": 1}]}',
        '{"model": 5, "choices": []}',
        # a usage chunk with counts that are not integers, or no object at all
        '{"choices": [], "usage": {"prompt_tokens": "12", "completion_tokens": 1}}',
        '{"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 1.5}}',
        '{"choices": [], "usage": {"prompt_tokens": true, "completion_tokens": 1}}',
        '{"choices": [], "usage": {"prompt_tokens": 12, "prompt_tokens_details": '
        '{"cached_tokens": "3"}}}',
        '{"choices": [], "usage": {"completion_tokens": 2, "completion_tokens_details": '
        '{"reasoning_tokens": [1]}}}',
        '{"choices": [], "usage": [12, 1]}',
    ],
)
def test_garbage_in_the_stream(fake: FakeOpenAI, payload: str) -> None:
    """A data line that is not a JSON object, or not a chunk's shape, is a malformed response."""
    fake.enqueue(Garbage(payload=payload))

    outcome = _stream(fake.base_url)

    assert outcome.texts == ["Partial"]
    error = outcome.failure
    assert (error.code, error.status_code, error.retryable) == ("upstream_unavailable", 502, True)
    assert error.detail == "The model provider sent a malformed response."


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
def test_timeout(fake: FakeOpenAI, http_client: HttpClient) -> None:
    """A server that stops sending for longer than the timeout is a retryable 504."""
    fake.enqueue(TextReply(chunks=("slow",), first_delay=2.0))

    error = _stream(fake.base_url, http_client=http_client, timeout_seconds=0.3).failure

    assert (error.code, error.status_code, error.retryable) == ("upstream_unavailable", 504, True)


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
def test_connection_refused(http_client: HttpClient) -> None:
    """No server listening is a retryable 502 with either HTTP client, not a timeout."""
    base_url = f"http://127.0.0.1:{_free_port()}/v1"

    outcome = _stream(base_url, http_client=http_client)

    error = outcome.failure
    assert (error.code, error.status_code, error.retryable) == ("upstream_unavailable", 502, True)
    assert outcome.health["last_error"] == "upstream_unavailable"


def test_health_makes_no_request(fake: FakeOpenAI) -> None:
    """health() reports the endpoint without credentials, and calls nothing."""
    base_url = fake.base_url.replace("http://", "http://user:hunter2@") + "?key=hunter2"

    async def scenario() -> dict[str, Any]:
        provider = _provider(base_url, api_key=SECRET)
        report = provider.health()
        await provider.aclose()
        return report

    report = asyncio.run(scenario())

    assert fake.requests == []
    assert report == {
        "kind": "openai",
        "base_url": fake.base_url,
        "state": "unknown",
        "last_success_at": None,
        "last_error_at": None,
        "last_error": None,
    }
    assert "hunter2" not in str(report)
    assert SECRET not in str(report)


def test_health_follows_the_latest_call(fake: FakeOpenAI) -> None:
    """A failure then a success leave the provider ok, with the failure still on record."""
    fake.enqueue(HttpError(500), TextReply())

    async def scenario() -> list[dict[str, Any]]:
        provider = _provider(fake.base_url)
        reports = []
        for _ in range(2):
            with contextlib.suppress(UpstreamError):
                async for _event in provider.stream(
                    model=MODEL, system=None, messages=PROMPT, max_tokens=8
                ):
                    pass
            reports.append(provider.health())
        await provider.aclose()
        return reports

    failed, succeeded = asyncio.run(scenario())

    assert (failed["state"], failed["last_error"]) == ("failing", "upstream_unavailable")
    assert failed["last_success_at"] is None
    assert succeeded["state"] == "ok"
    assert succeeded["last_success_at"] is not None
    assert succeeded["last_error"] == "upstream_unavailable"


def test_is_a_provider_without_a_tokenizer(fake: FakeOpenAI) -> None:
    """It satisfies the Provider protocol and leaves token counting to the caller."""

    async def scenario() -> tuple[str, str, int | None]:
        provider: Provider = _provider(fake.base_url, name="vllm")
        result = (provider.name, provider.kind, provider.count_tokens("some text"))
        await provider.aclose()
        return result

    assert asyncio.run(scenario()) == ("vllm", "openai", None)


@pytest.mark.parametrize(
    "reply", [TextReply(chunk_delay=0.01), Drop(), MidStreamError(), Truncated(), Garbage()]
)
def test_each_call_is_one_request(fake: FakeOpenAI, reply: Reply) -> None:
    """The SDK does not retry: retries are Zyron's, so they can stop once text was sent."""
    fake.enqueue(reply)

    _stream(fake.base_url)

    assert len(fake.requests) == 1
