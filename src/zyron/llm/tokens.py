"""Prompt sizes in tokens: the provider's own tokenizer where it has one, else an estimate."""

from __future__ import annotations

import math

from zyron.llm.base import Provider

# Chat formats wrap every message in a few tokens of markup (role names, separators): about
# 5.5 in SmolLM2's template, measured with llama.cpp's prompt_tokens.
MESSAGE_OVERHEAD_TOKENS = 6
# And add text of their own once per prompt: the reply's opening, and in some templates a
# default system prompt when none is given (SmolLM2: about 20 tokens). Measured: "hi" alone
# is 31 prompt tokens to SmolLM2, 46 for three short turns.
PROMPT_OVERHEAD_TOKENS = 32
# A sample's weight in the running ratio. Up fast: a prompt denser than estimated (code,
# another script) must not stay under-counted, or the next one overflows the window. Down
# slowly, and never below the configured start: one model's counter serves every user, and
# a run of plain prose must not leave it short for the next user's code.
RISE_WEIGHT, FALL_WEIGHT = 0.5, 0.05
# Samples below this size are mostly markup and say little about the text's ratio.
MIN_CALIBRATION_CHARS = 200
# Keeps one absurd usage report from making the estimate useless.
MIN_TOKENS_PER_CHAR, MAX_TOKENS_PER_CHAR = 1 / 8, 1.5
# Estimates err high: a prompt a little short of the window wastes a little history, one
# over it fails the request.
SAFETY_MARGIN = 1.1


class TokenCounter:
    """Count a model's tokens: exactly with a local tokenizer, or by a calibrated ratio."""

    prompt_overhead = PROMPT_OVERHEAD_TOKENS

    def __init__(self, provider: Provider, chars_per_token: float) -> None:
        self._provider = provider
        self.floor = 1 / chars_per_token
        self.tokens_per_char = self.floor
        self.samples = 0

    def count(self, text: str) -> int:
        """Return the tokens `text` takes as one message, markup included."""
        exact = self._provider.count_tokens(text)
        if exact is not None:
            return exact + MESSAGE_OVERHEAD_TOKENS
        return math.ceil(len(text) * self.tokens_per_char * SAFETY_MARGIN) + (
            MESSAGE_OVERHEAD_TOKENS
        )

    def observe(self, chars: int, input_tokens: int, messages: int) -> None:
        """Calibrate the ratio from a reply's usage: `chars` of text sent cost `input_tokens`."""
        text_tokens = input_tokens - PROMPT_OVERHEAD_TOKENS - messages * MESSAGE_OVERHEAD_TOKENS
        if chars < MIN_CALIBRATION_CHARS or text_tokens <= 0:
            return
        ratio = min(MAX_TOKENS_PER_CHAR, max(MIN_TOKENS_PER_CHAR, text_tokens / chars))
        weight = RISE_WEIGHT if ratio > self.tokens_per_char else FALL_WEIGHT
        self.tokens_per_char += weight * (ratio - self.tokens_per_char)
        self.tokens_per_char = max(self.floor, self.tokens_per_char)
        self.samples += 1
