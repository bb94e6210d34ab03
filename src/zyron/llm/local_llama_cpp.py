"""The local model through llama-cpp-python, which compiles llama.cpp when it is installed.

Chosen with LOCAL_RUNTIME=llama-cpp-python (docs/local-model.md). Imported only once the
runtime is known to be installed (zyron.llm.local imports it lazily).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llama_cpp
from llama_cpp.llama_types import (
    ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage,
    CreateChatCompletionStreamResponse,
)

from zyron.llm.base import PromptMessage, TextDelta
from zyron.llm.local import GenerationFailed, LoadFailed, PromptRefused

if TYPE_CHECKING:
    from zyron.llm.local import Run


class LlamaCppEngine:
    """A Llama that generates one reply at a time, with exact usage and a cancel flag."""

    def __init__(self, path: Path, context_window: int, threads: int, prefix: str) -> None:
        try:
            self._llama = TappedLlama(
                model_path=str(path),
                n_ctx=context_window,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except ValueError as exc:
            # llama-cpp-python's words: "Failed to load model from file: <path>", or, once the
            # model is read, "Failed to create llama_context" (most often: no memory for n_ctx).
            if "context" in str(exc):
                raise LoadFailed(
                    f"{prefix}: llama.cpp could not set up a {context_window}-token context "
                    "for it (LOCAL_CONTEXT_WINDOW; is memory short?).",
                    "no_context",
                ) from exc
            raise LoadFailed(
                f"{prefix}: llama.cpp rejected it (a damaged or unsupported GGUF file).",
                "rejected",
            ) from exc

    def generate(
        self, run: Run, system: str | None, messages: Sequence[PromptMessage], max_tokens: int
    ) -> str | None:
        """Stream the reply to `run`; return llama.cpp's finish reason."""
        llama = self._llama
        llama.tap = run
        finish_reason: str | None = None
        try:
            chunks = llama.stream_chat(system, messages, max_tokens=max_tokens)
            try:
                for chunk in chunks:
                    if run.cancelled.is_set():
                        break
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content")  # absent from the role, final chunks
                    if isinstance(text, str) and text:
                        run.send(TextDelta(text))
                    finish_reason = choice["finish_reason"] or finish_reason
            finally:
                chunks.close()
        except ValueError as exc:  # llama-cpp-python refuses the request: a prompt past n_ctx
            raise PromptRefused(str(exc)) from exc
        except RuntimeError as exc:  # llama.cpp failed mid-reply: "llama_decode returned 1"
            raise GenerationFailed(str(exc)) from exc
        finally:
            llama.tap = None
        return finish_reason

    def count_tokens(self, text: str) -> int:
        """Count with the model's vocabulary, which a generation in progress does not touch."""
        return len(self._llama.tokenize(text.encode(), add_bos=False))

    def close(self) -> None:
        """Free the model and its context."""
        self._llama.close()


class TappedLlama(llama_cpp.Llama):
    """A Llama whose token loop reports to the reply in progress and obeys its cancel flag.

    A streamed chat completion reports no usage, and its chunks are not one per token (bytes
    of one character are held back, and so is text that may begin a stop string). Every token
    passes through `generate`, though, with the whole prompt as the model sees it: counting
    there gives the exact figures, and returning there stops the reply at the next token.
    """

    tap: Run | None = None

    def stream_chat(
        self, system: str | None, messages: Sequence[PromptMessage], *, max_tokens: int
    ) -> Generator[CreateChatCompletionStreamResponse, None, None]:
        """Stream a chat completion formatted by the GGUF's own chat template."""
        chat: list[ChatCompletionRequestMessage] = []
        if system:
            chat.append(ChatCompletionRequestSystemMessage(role="system", content=system))
        for message in messages:
            if message["role"] == "assistant":
                chat.append(
                    ChatCompletionRequestAssistantMessage(
                        role="assistant", content=message["content"]
                    )
                )
            else:
                chat.append(
                    ChatCompletionRequestUserMessage(role="user", content=message["content"])
                )
        chunks = self.create_chat_completion(messages=chat, stream=True, max_tokens=max_tokens)
        assert not isinstance(chunks, dict)  # stream=True gives the chunks
        # `yield from` closes the library's generator when this one is closed.
        yield from chunks

    def generate(self, *args: Any, **kwargs: Any) -> Generator[int, Sequence[int] | None, None]:
        """Yield the sampled tokens, counting them, until the reply is cancelled."""
        tap = self.tap
        tokens = super().generate(*args, **kwargs)
        if tap is None:
            yield from tokens
            return
        # The first argument is the whole prompt, chat template and BOS included, before any
        # reuse of the KV cache shortens what is evaluated.
        prompt = args[0] if args else kwargs["tokens"]
        tap.prompt_tokens = len(prompt)
        try:
            # create_completion only iterates (never sends), so neither does this loop.
            for token in tokens:
                if tap.cancelled.is_set():
                    return
                # The end-of-generation token ends the reply without being part of it, exactly
                # as create_completion counts completion_tokens.
                if not llama_cpp.llama_vocab_is_eog(self._model.vocab, token):
                    tap.output_tokens += 1
                yield token
        finally:
            tokens.close()
