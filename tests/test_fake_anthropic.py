"""Checks that the official anthropic SDK parses everything the fake upstream sends."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message, MessageParam, ThinkingConfigEnabledParam

from tests.fakes.anthropic_upstream import (
    Drop,
    FakeAnthropic,
    HttpError,
    MidStreamError,
    RecordedRequest,
    TextReply,
    ThinkingReply,
)

MODEL = "claude-fake-1"
MESSAGES: list[MessageParam] = [{"role": "user", "content": "hi"}]
THINKING: ThinkingConfigEnabledParam = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    """A running fake upstream, stopped after the test."""
    with FakeAnthropic() as upstream:
        yield upstream


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    """An SDK client pointed at the fake, without retries so each call is one request."""
    with anthropic.Anthropic(
        api_key="test", base_url=fake.base_url, max_retries=0, timeout=10.0
    ) as sdk:
        yield sdk


def _stream_texts(client: anthropic.Anthropic, received: list[str]) -> Message:
    """Stream one message, appending text deltas to `received` as they arrive."""
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        for text in stream.text_stream:
            received.append(text)
        return stream.get_final_message()


def _create(client: anthropic.Anthropic) -> Message:
    """Make one non-streaming call."""
    return client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)


def test_stream_text_and_final_message(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    """Text deltas, usage, stop reason and message metadata all reach the SDK."""
    fake.enqueue(
        TextReply(chunks=("Bon", "jour", " à ", "toi"), stop_reason="max_tokens", input_tokens=7)
    )
    received: list[str] = []

    message = _stream_texts(client, received)

    assert received == ["Bon", "jour", " à ", "toi"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "Bonjour à toi"
    assert message.usage.input_tokens == 7
    assert message.usage.output_tokens == 4
    assert message.stop_reason == "max_tokens"
    assert message.stop_sequence is None
    assert message.model == MODEL
    assert message.role == "assistant"
    assert message.id.startswith("msg_fake")


def test_stream_raw_event_order(client: anthropic.Anthropic) -> None:
    """The SDK sees the real event sequence; `ping` is consumed by the SDK itself."""
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        kinds = [event.type for event in stream if event.type != "text"]

    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_stream_response_headers(client: anthropic.Anthropic) -> None:
    """Streams are served as chunked SSE with a request id, like the real API."""
    with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=64, messages=MESSAGES, stream=True
    ) as response:
        headers = response.headers
        raw = response.read().decode()

    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["transfer-encoding"] == "chunked"
    assert headers["request-id"].startswith("req_fake")
    assert raw.startswith("event: message_start\ndata: {")
    assert 'event: ping\ndata: {"type":"ping"}\n\n' in raw
    assert raw.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_records_body_and_headers(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    """Each request's path, lower-cased headers and JSON body are recorded."""
    _stream_texts(client, [])
    client.messages.create(
        model=MODEL, max_tokens=5, messages=MESSAGES, extra_headers={"X-Zyron-Trace": "abc"}
    )

    assert len(fake.requests) == 2
    streamed, plain = fake.requests
    assert isinstance(streamed, RecordedRequest)
    assert streamed.path == "/v1/messages"
    assert streamed.body == {
        "model": MODEL,
        "max_tokens": 64,
        "messages": MESSAGES,
        "stream": True,
    }
    # This SDK version sends the API key as a bearer token rather than `x-api-key`.
    assert streamed.headers["authorization"] == "Bearer test"
    assert "x-api-key" not in streamed.headers
    assert streamed.headers["anthropic-version"]
    assert streamed.headers["content-type"] == "application/json"
    assert "stream" not in plain.body
    assert plain.headers["x-zyron-trace"] == "abc"


def test_rate_limit_error_with_retry_after(
    client: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    """A 429 becomes RateLimitError and keeps the retry-after header."""
    fake.enqueue(HttpError(429, "rate_limit_error", message="slow down", retry_after="3"))

    with pytest.raises(anthropic.RateLimitError) as caught:
        _stream_texts(client, [])

    err = caught.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "3"
    assert err.response.headers["content-type"] == "application/json"
    assert err.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    assert err.type == "rate_limit_error"
    assert err.api_message == "slow down"
    assert err.request_id is not None
    assert err.request_id.startswith("req_fake")
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (529, "overloaded_error", anthropic.OverloadedError),
        (500, "api_error", anthropic.InternalServerError),
        (503, "api_error", anthropic.ServiceUnavailableError),
        (401, "authentication_error", anthropic.AuthenticationError),
        (400, "invalid_request_error", anthropic.BadRequestError),
    ],
)
def test_http_errors_map_to_sdk_classes(
    client: anthropic.Anthropic,
    fake: FakeAnthropic,
    status: int,
    error_type: str,
    expected: type[anthropic.APIStatusError],
) -> None:
    """Each HTTP error status raises exactly the SDK class for it, before any text."""
    fake.enqueue(HttpError(status, error_type, message="nope"))
    received: list[str] = []

    with pytest.raises(anthropic.APIStatusError) as caught:
        _stream_texts(client, received)

    assert type(caught.value) is expected
    assert caught.value.status_code == status
    assert caught.value.body == {"type": "error", "error": {"type": error_type, "message": "nope"}}
    assert "retry-after" not in caught.value.response.headers
    assert received == []


def test_overloaded_is_an_internal_server_error() -> None:
    """Code catching InternalServerError also catches 529s in this SDK version."""
    assert issubclass(anthropic.OverloadedError, anthropic.InternalServerError)


def test_mid_stream_error_after_partial_text(
    client: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    """An SSE error event raises a bare APIStatusError (status 200) after the partial text."""
    fake.enqueue(MidStreamError(chunks=("Par", "tial"), error_type="overloaded_error"))
    received: list[str] = []

    with pytest.raises(anthropic.APIStatusError) as caught:
        _stream_texts(client, received)

    err = caught.value
    assert received == ["Par", "tial"]
    assert type(err) is anthropic.APIStatusError
    assert err.status_code == 200
    assert err.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert err.type == "overloaded_error"


def test_mid_stream_error_without_streaming_is_http_error(
    client: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    """A non-streaming call can only see the failure as the matching HTTP error."""
    fake.enqueue(MidStreamError(error_type="overloaded_error"))

    with pytest.raises(anthropic.OverloadedError):
        _create(client)


def test_drop_raises_raw_transport_error(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    """A dropped stream surfaces as httpx2's RemoteProtocolError, unwrapped by the SDK."""
    fake.enqueue(Drop(chunks=("Half", " a")))
    received: list[str] = []

    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
        _stream_texts(client, received)

    assert received == ["Half", " a"]


def test_drop_before_response_is_connection_error(
    client: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    """A non-streaming call whose connection drops raises APIConnectionError."""
    fake.enqueue(Drop())

    with pytest.raises(anthropic.APIConnectionError) as caught:
        _create(client)

    assert type(caught.value) is anthropic.APIConnectionError
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)


def test_non_stream_json_reply(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    """`stream: false` gets a whole JSON message."""
    fake.enqueue(TextReply(chunks=("one", " two"), input_tokens=3, stop_reason="stop_sequence"))

    message = _create(client)

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.id.startswith("msg_fake")
    assert len(message.content) == 1
    assert message.content[0].type == "text"
    assert message.content[0].text == "one two"
    assert message.usage.input_tokens == 3
    assert message.usage.output_tokens == 2
    assert message.stop_reason == "stop_sequence"


def test_fifo_order_then_default(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    """Queued replies are used oldest first; an empty queue yields the default TextReply."""
    fake.enqueue(TextReply(chunks=("first",)), HttpError(529, "overloaded_error"))
    fake.enqueue(TextReply(chunks=("third",)))

    assert _create(client).content[0].type == "text"
    assert fake.requests[-1].body["model"] == MODEL
    with pytest.raises(anthropic.OverloadedError):
        _create(client)
    third: list[str] = []
    _stream_texts(client, third)
    default: list[str] = []
    _stream_texts(client, default)

    assert third == ["third"]
    assert default == list(TextReply().chunks)
    assert len(fake.requests) == 4


def test_reset_clears_queue_and_requests(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    """reset() forgets recorded requests and pending replies."""
    _create(client)
    fake.enqueue(HttpError(500, "api_error"))

    fake.reset()

    assert fake.requests == []
    assert _create(client).content[0].type == "text"


def test_unknown_path_is_404(fake: FakeAnthropic) -> None:
    """Only POST /v1/messages is served; other requests get an Anthropic-shaped 404."""
    response = httpx2.get(f"{fake.base_url}/v1/models", timeout=5.0)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "not_found_error"
    assert [r.path for r in fake.requests] == ["/v1/models"]


def test_read_timeout_mid_stream(fake: FakeAnthropic) -> None:
    """A slow first token trips the client's read timeout as a raw httpx2.ReadTimeout."""
    fake.enqueue(TextReply(first_delay=5.0))
    with (
        anthropic.Anthropic(
            api_key="test", base_url=fake.base_url, max_retries=0, timeout=0.2
        ) as impatient,
        pytest.raises(httpx2.ReadTimeout),
    ):
        _stream_texts(impatient, [])


def test_stop_severs_inflight_stream() -> None:
    """stop() returns promptly even while a slow stream is being served."""
    fake = FakeAnthropic().start()
    try:
        fake.enqueue(TextReply(chunk_delay=30.0))
        with (
            anthropic.Anthropic(
                api_key="test", base_url=fake.base_url, max_retries=0, timeout=10.0
            ) as sdk,
            sdk.messages.stream(model=MODEL, max_tokens=8, messages=MESSAGES) as stream,
        ):
            events = iter(stream)
            assert next(events).type == "message_start"
            started = time.monotonic()
            fake.stop()
            assert time.monotonic() - started < 5.0
            with pytest.raises(httpx2.RemoteProtocolError):
                list(events)
    finally:
        fake.stop()


def test_base_url_requires_start() -> None:
    """base_url is only meaningful while the server is running."""
    fake = FakeAnthropic()
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.base_url
    with fake:
        assert fake.base_url.startswith("http://127.0.0.1:")


async def _raw_thinking_events(base_url: str, **options: Any) -> list[dict[str, Any]]:
    """Stream one thinking reply with AsyncAnthropic and return its raw events as dicts."""
    request: dict[str, Any] = {"max_tokens": 2048, "thinking": THINKING, **options}
    async with anthropic.AsyncAnthropic(
        api_key="test", base_url=base_url, max_retries=0, timeout=10.0
    ) as sdk:
        stream = await sdk.messages.create(model=MODEL, messages=MESSAGES, stream=True, **request)
        return [event.model_dump(exclude_none=True) async for event in stream]


def test_thinking_stream_matches_the_real_event_sequence(fake: FakeAnthropic) -> None:
    """Thinking deltas, one signature delta before the stop, then a text block at index 1."""
    fake.enqueue(
        ThinkingReply(thinking=("Let me", " think."), chunks=("Ans", "wer"), signature="sig-1")
    )

    events = asyncio.run(_raw_thinking_events(fake.base_url))

    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    }
    assert [(e["index"], e["delta"]) for e in events[2:5]] == [
        (0, {"type": "thinking_delta", "thinking": "Let me"}),
        (0, {"type": "thinking_delta", "thinking": " think."}),
        (0, {"type": "signature_delta", "signature": "sig-1"}),
    ]
    assert events[6]["index"] == 1
    assert events[6]["content_block"] == {"type": "text", "text": ""}
    assert [e["delta"]["text"] for e in events[7:9]] == ["Ans", "wer"]
    assert events[10]["delta"]["stop_reason"] == "end_turn"
    assert events[10]["usage"]["output_tokens"] == 4
    assert fake.requests[0].body["thinking"] == THINKING


def test_thinking_stream_accumulates_in_the_sdk(
    client: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    """The SDK's stream helper builds a signed thinking block, a redacted one and the text."""
    fake.enqueue(ThinkingReply(redacted=True, redacted_data="opaque", signature="sig-2"))

    with client.messages.stream(
        model=MODEL,
        max_tokens=2048,
        messages=MESSAGES,
        thinking={"type": "enabled", "budget_tokens": 1024},
    ) as stream:
        kinds = [event.type for event in stream]
        message = stream.get_final_message()

    assert {"thinking", "signature", "text"} <= set(kinds)
    assert [block.type for block in message.content] == [
        "thinking",
        "redacted_thinking",
        "text",
    ]
    thinking, redacted, text = message.content
    assert thinking.type == "thinking"
    assert redacted.type == "redacted_thinking"
    assert (thinking.thinking, thinking.signature) == ("Let me think.", "sig-2")
    assert redacted.data == "opaque"
    assert text.type == "text"
    assert text.text == "Answer"


def test_redacted_block_has_no_deltas(fake: FakeAnthropic) -> None:
    """A redacted_thinking block starts whole at index 1 and stops at once; text moves to 2."""
    fake.enqueue(ThinkingReply(thinking=("Hm",), redacted=True, redacted_data="EmwKAhgB"))

    events = asyncio.run(_raw_thinking_events(fake.base_url))

    redacted = [e for e in events if e.get("index") == 1]
    assert redacted == [
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "redacted_thinking", "data": "EmwKAhgB"},
        },
        {"type": "content_block_stop", "index": 1},
    ]
    text_start = [e for e in events if e["type"] == "content_block_start"][-1]
    assert (text_start["index"], text_start["content_block"]["type"]) == (2, "text")


def test_thinking_non_stream_returns_every_block(
    client: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    """A non-streaming call gets the thinking (signed), redacted and text blocks."""
    fake.enqueue(ThinkingReply(thinking=("a", "b"), chunks=("c",), redacted=True, signature="s"))

    message = client.messages.create(
        model=MODEL,
        max_tokens=2048,
        messages=MESSAGES,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )

    assert [block.model_dump() for block in message.content] == [
        {"type": "thinking", "thinking": "ab", "signature": "s"},
        {"type": "redacted_thinking", "data": ThinkingReply().redacted_data},
        {"type": "text", "text": "c", "citations": None},
    ]
    assert message.usage.output_tokens == 3


def test_hold_pauses_mid_thinking(fake: FakeAnthropic) -> None:
    """With hold set, the stream stops after the first thinking delta until the test lets go."""
    hold = threading.Event()
    fake.enqueue(ThinkingReply(hold=hold))

    async def scenario() -> tuple[list[str], list[str]]:
        async with anthropic.AsyncAnthropic(
            api_key="test", base_url=fake.base_url, max_retries=0, timeout=10.0
        ) as sdk:
            stream = await sdk.messages.create(
                model=MODEL,
                max_tokens=2048,
                messages=MESSAGES,
                thinking=THINKING,
                stream=True,
            )
            events = aiter(stream)
            before: list[str] = []
            while not before or before[-1] != "thinking_delta":
                event = await anext(events)
                before.append(
                    event.delta.type if event.type == "content_block_delta" else event.type
                )
            pending = asyncio.ensure_future(anext(events))
            await asyncio.sleep(0.3)
            assert not pending.done()  # still held mid-thinking
            hold.set()
            first_after = await pending
            rest = [first_after.type, *[str(event.type) async for event in events]]
            return before, rest

    before, rest = asyncio.run(scenario())

    assert before == ["message_start", "content_block_start", "thinking_delta"]
    assert rest[0] == "content_block_delta"
    assert rest[-1] == "message_stop"


def test_hold_after_first_text_delta(fake: FakeAnthropic) -> None:
    """hold_in_thinking=False holds after the first text delta instead, thinking all sent."""
    hold = threading.Event()
    fake.enqueue(ThinkingReply(chunks=("A", "B"), hold=hold, hold_in_thinking=False))
    threading.Timer(0.3, hold.set).start()
    started = time.monotonic()

    events = asyncio.run(_raw_thinking_events(fake.base_url))

    assert time.monotonic() - started >= 0.25
    assert [
        e["delta"]["text"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta"
    ] == ["A", "B"]


# SDK 2.13's messages.create has no `temperature` parameter at all, so the tests send it the
# way a caller of this SDK would have to: through extra_body.


def _refusal(client: anthropic.Anthropic, **request: Any) -> anthropic.BadRequestError:
    """Make one streaming call expected to be refused and return the SDK's error."""
    options: dict[str, Any] = {"max_tokens": 2048, "messages": MESSAGES, **request}
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, stream=True, **options)
    return caught.value


@pytest.mark.parametrize(
    ("request_options", "message"),
    [
        (
            {"thinking": {"type": "enabled", "budget_tokens": 1023}},
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 2048},
            "`max_tokens` must be greater than `thinking.budget_tokens`.",
        ),
        (
            {"thinking": THINKING, "extra_body": {"temperature": 0.5}},
            "`temperature` may only be set to 1 when thinking is enabled or in adaptive mode.",
        ),
        (
            {"thinking": {"type": "adaptive"}, "extra_body": {"temperature": 0}},
            "`temperature` may only be set to 1 when thinking is enabled or in adaptive mode.",
        ),
        (
            {
                "thinking": THINKING,
                "messages": [
                    *MESSAGES,
                    {"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]},
                    {"role": "user", "content": "go on"},
                ],
            },
            "messages.1.content.0.thinking.signature: Field required",
        ),
        (
            {
                "thinking": THINKING,
                "messages": [
                    *MESSAGES,
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "text", "text": "y"},
                            {"type": "thinking", "thinking": "x", "signature": ""},
                        ],
                    },
                    {"role": "user", "content": "go on"},
                ],
            },
            "messages.1.content.1: Invalid `signature` in `thinking` block",
        ),
    ],
)
def test_thinking_requests_are_validated(
    client: anthropic.Anthropic,
    fake: FakeAnthropic,
    request_options: dict[str, Any],
    message: str,
) -> None:
    """Misused thinking gets the real API's 400 and leaves the reply queue alone."""
    fake.enqueue(ThinkingReply(chunks=("kept",)))

    err = _refusal(client, **request_options)

    assert err.status_code == 400
    assert err.type == "invalid_request_error"
    assert err.api_message is not None
    assert err.api_message.startswith(message)
    assert len(fake.requests) == 1
    assert (
        client.messages.create(
            model=MODEL,
            max_tokens=2048,
            messages=MESSAGES,
            thinking=THINKING,
        )
        .content[-1]
        .model_dump()["text"]
        == "kept"
    )


@pytest.mark.parametrize(
    "request_options",
    [
        {"thinking": THINKING, "extra_body": {"temperature": 1}},
        {"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}},
        {"thinking": {"type": "disabled"}, "extra_body": {"temperature": 0.2}},
        {"extra_body": {"temperature": 0.2}},
    ],
)
def test_valid_thinking_requests_pass(
    client: anthropic.Anthropic, fake: FakeAnthropic, request_options: dict[str, Any]
) -> None:
    """Temperature 1, adaptive thinking with effort, and thinking off are all accepted."""
    fake.enqueue(ThinkingReply())

    message = client.messages.create(
        model=MODEL, max_tokens=2048, messages=MESSAGES, **request_options
    )

    assert message.content[0].type == "thinking"
    sent = {key: value for key, value in request_options.items() if key != "extra_body"}
    assert fake.requests[0].body == {
        "model": MODEL,
        "max_tokens": 2048,
        "messages": MESSAGES,
        **sent,
        **request_options.get("extra_body", {}),
    }


def test_signed_history_and_attachments_are_recorded(
    client: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    """A signed thinking block passed back, an image and a document reach the fake verbatim."""
    messages: list[MessageParam] = [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                },
                {
                    "type": "document",
                    "source": {
                        "type": "base64",
                        "media_type": "application/pdf",
                        "data": "JVBERi0x",
                    },
                },
                {"type": "text", "text": "what is this?"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig-fake"},
                {"type": "redacted_thinking", "data": "x"},
                {"type": "text", "text": "A cat."},
            ],
        },
        {"role": "user", "content": "sure?"},
    ]

    client.messages.create(model=MODEL, max_tokens=2048, messages=messages, thinking=THINKING)

    assert fake.requests[0].body["messages"] == messages
