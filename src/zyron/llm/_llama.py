"""llama-cpp-python's Llama, tapped for exact usage and for stopping between two tokens.

Imported only once the `local` extra is known to be installed (zyron.llm.local loads it lazily).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import llama_cpp
from llama_cpp.llama_types import (
    ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage,
    CreateChatCompletionStreamResponse,
)

from zyron.llm.base import PromptMessage

if TYPE_CHECKING:
    from zyron.llm.local import Run


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
