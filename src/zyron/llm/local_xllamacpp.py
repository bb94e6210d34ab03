"""The local model through xllamacpp: llama.cpp's own server, in process, from prebuilt wheels.

The default runtime (docs/local-model.md says why). Replies go through the server's chat
completions handler, called directly from the worker thread: no HTTP, no port. Its HTTP side
listens only on a Unix socket in a private directory, with a random API key, for the one thing
the handlers do not offer: tokenizing, which llama.cpp does there without waiting for a reply
in progress.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import xllamacpp

from zyron.llm.base import PromptMessage, TextDelta
from zyron.llm.local import GenerationFailed, LoadFailed, PromptRefused

if TYPE_CHECKING:
    from zyron.llm.local import Run

log = logging.getLogger("zyron.llm.local")

# llama-cpp-python's chat completion defaults, so both runtimes sample alike (llama.cpp's
# server would otherwise use temperature 0.8 and a repeat penalty of its own).
SAMPLING = {"temperature": 0.2, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}
# How long closing waits for llama.cpp's threads; past it they end with the process.
CLOSE_TIMEOUT_SECONDS = 10.0
TOKENIZE_TIMEOUT_SECONDS = 10.0


class XllamacppEngine:
    """One llama.cpp server with one slot: a reply at a time, exact usage, cancel per token."""

    def __init__(self, path: Path, context_window: int, threads: int, prefix: str) -> None:
        # mkdtemp makes the directory 0700: no other user reaches the socket.
        self._directory = Path(tempfile.mkdtemp(prefix="zyron-llama-"))
        socket = self._directory / "llama.sock"
        key = secrets.token_urlsafe(32)
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = context_window
        params.n_parallel = 1  # LocalProvider queues; one slot gets the whole context
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.verbosity = -1  # llama.cpp's log would go to stderr, unstructured
        params.cache_ram_mib = 0  # no host-memory prompt cache (8 GiB by default)
        params.ui = False
        params.hostnames = [str(socket)]
        params.api_keys = [key]
        try:
            self._server: Any = xllamacpp.Server(params)
        except RuntimeError as exc:
            shutil.rmtree(self._directory, ignore_errors=True)
            # Its one message, whatever the cause: "Failed to init server, please check the
            # input params."
            raise LoadFailed(
                f"{prefix}: llama.cpp rejected it (a damaged or unsupported GGUF file, or too "
                f"little memory for a {context_window}-token context: LOCAL_CONTEXT_WINDOW).",
                "rejected",
            ) from exc
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket)),
            base_url="http://llama.cpp",
            headers={"Authorization": f"Bearer {key}"},
            timeout=TOKENIZE_TIMEOUT_SECONDS,
        )
        # One token now: the first reply does not pay for llama.cpp's first-use set-up, and
        # a server that has generated once shuts down cleanly (one never used can hang).
        self._server.handle_chat_completions(
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        )

    def generate(
        self, run: Run, system: str | None, messages: Sequence[PromptMessage], max_tokens: int
    ) -> str | None:
        """Stream the reply to `run`; return llama.cpp's finish reason."""
        chat = [{"role": "system", "content": system}] if system else []
        chat += [{"role": m["role"], "content": m["content"]} for m in messages]
        request = {
            "messages": chat,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            **SAMPLING,
        }
        reader = _ChunkReader(run)
        self._server.handle_chat_completions(request, reader.take)
        if reader.failure is not None:
            raise reader.failure
        return reader.finish_reason

    def count_tokens(self, text: str) -> int | None:
        """Count with llama.cpp's tokenizer; None if its socket does not answer."""
        try:
            response = self._http.post("/tokenize", json={"content": text})
            response.raise_for_status()
            return len(response.json()["tokens"])
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.warning("local model tokenizer failed", extra={"reason": type(exc).__name__})
            return None

    def close(self) -> None:
        """Stop llama.cpp's threads (waiting a bounded time) and remove the socket."""
        self._http.close()
        held = [self._server]
        del self._server
        # Dropping the last reference runs the server's destructor, which joins its threads.
        closer = threading.Thread(target=held.clear, name="zyron-local-close", daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT_SECONDS)
        if closer.is_alive():
            log.warning("local model did not stop in time; it ends with the process")
        shutil.rmtree(self._directory, ignore_errors=True)


class _ChunkReader:
    """Takes the server's chunks as they come: text to the reply, usage, errors, cancelling."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.finish_reason: str | None = None
        self.failure: Exception | None = None

    def take(self, chunk: dict[str, Any]) -> bool:
        """Handle one chunk; return True to stop the reply (llama.cpp stops at the next token)."""
        run = self.run
        if run.cancelled.is_set():
            return True
        try:
            if "error" in chunk:
                self.failure = _failure(chunk["error"])
                return True
            for choice in chunk["choices"]:
                text = choice["delta"].get("content")  # None in the role chunk
                if isinstance(text, str) and text:
                    run.send(TextDelta(text))
                self.finish_reason = choice.get("finish_reason") or self.finish_reason
            usage = chunk.get("usage")
            if usage:  # the last chunk, asked for with include_usage
                run.prompt_tokens = usage["prompt_tokens"]
                run.output_tokens = usage["completion_tokens"]
        except Exception as exc:  # raised here, it would be lost inside llama.cpp
            self.failure = exc
            return True
        return False


def _failure(error: dict[str, Any]) -> Exception:
    """The exception for an error chunk: 4xx is the request's fault, the rest llama.cpp's."""
    message = str(error.get("message") or "unknown error")
    code = error.get("code")
    if isinstance(code, int) and 400 <= code < 500:
        return PromptRefused(message)
    return GenerationFailed(message)
