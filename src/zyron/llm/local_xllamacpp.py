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
import time
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

# llama-cpp-python's chat completion defaults, so both runtimes sample alike. llama.cpp's own
# differ only in temperature (0.8); the rest are spelled out so a change of its defaults does
# not change our replies.
SAMPLING = {"temperature": 0.2, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}
# Tokenizing runs on the event loop (Provider.count_tokens is synchronous): a socket that stalls
# may hold it this long, once; after a failure the counter estimates for a while instead.
TOKENIZE_TIMEOUT_SECONDS = 1.0
TOKENIZER_RETRY_SECONDS = 30.0
# Unix socket paths are limited to 108 bytes on Linux and 104 on macOS.
MAX_SOCKET_PATH = 100


class XllamacppEngine:
    """One llama.cpp server with one slot: a reply at a time, exact usage, cancel per token."""

    def __init__(self, path: Path, context_window: int, threads: int, prefix: str) -> None:
        # mkdtemp makes the directory 0700: no other user reaches the socket.
        self._directory = Path(tempfile.mkdtemp(prefix="zyron-llama-"))
        socket = self._directory / "llama.sock"
        if len(str(socket)) > MAX_SOCKET_PATH:
            shutil.rmtree(self._directory, ignore_errors=True)
            raise LoadFailed(
                f"{prefix}: the temporary directory's path is too long for a Unix socket "
                "(set TMPDIR to a shorter one, such as /tmp).",
                "socket_path",
            )
        key = secrets.token_urlsafe(32)
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = context_window
        params.n_parallel = 1  # LocalProvider queues; one slot gets the whole context
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.n_threads_http = 2  # it only tokenizes, for one caller (the event loop)
        params.verbosity = -1  # llama.cpp's log would go to stderr, unstructured
        params.cache_ram_mib = 0  # no host-memory prompt cache (8 GiB by default)
        # Thinking stays in the text, as llama-cpp-python gives it (no reasoning_content).
        params.reasoning_format = xllamacpp.common_reasoning_format.COMMON_REASONING_FORMAT_NONE
        params.ui = False
        params.hostnames = [str(socket)]
        params.api_keys = [key]
        try:
            # Holds the GIL while it loads (xllamacpp's constructor does not release it): the
            # server preloads before it takes requests (LocalProvider.load at start-up).
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
        self._tokenizer_failed_at: float | None = None
        try:
            # One token now: the first reply does not pay for llama.cpp's first-use set-up,
            # and a server that has generated once shuts down cleanly (one never used can hang).
            warm = self._server.handle_chat_completions(
                {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
            )
            if not isinstance(warm, dict) or "choices" not in warm:
                raise RuntimeError(str(warm)[:200])
        except (RuntimeError, ValueError) as exc:
            self.close()
            raise LoadFailed(
                f"{prefix}: llama.cpp loaded it but could not generate with it ({exc}).",
                "no_generation",
            ) from exc

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
        try:
            self._server.handle_chat_completions(request, reader.take)
        except ValueError as exc:  # llama.cpp refused the request before any chunk
            raise PromptRefused(str(exc)) from exc
        except RuntimeError as exc:
            raise GenerationFailed(str(exc)) from exc
        if reader.failure is not None:
            raise reader.failure
        return reader.finish_reason

    def count_tokens(self, text: str) -> int | None:
        """Count with llama.cpp's tokenizer; None if its socket does not answer (for a while)."""
        failed_at = self._tokenizer_failed_at
        if failed_at is not None and time.monotonic() - failed_at < TOKENIZER_RETRY_SECONDS:
            return None
        try:
            response = self._http.post("/tokenize", json={"content": text})
            response.raise_for_status()
            count = len(response.json()["tokens"])
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            if failed_at is None:  # once per outage, not once per message
                log.warning("local model tokenizer failed", extra={"reason": type(exc).__name__})
            self._tokenizer_failed_at = time.monotonic()
            return None
        self._tokenizer_failed_at = None
        return count

    def close(self) -> None:
        """Stop llama.cpp's threads and remove the socket.

        Blocks until they stop, GIL held (xllamacpp's destructor does not release it): after
        the warm-up token, that is a few milliseconds.
        """
        self._http.close()
        self._server = None  # the last reference: the destructor joins llama.cpp's threads
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
