"""What tokens cost: prices per model and kind, and a reply's cost in nano-dollars (docs/costs.md).

Prices are quoted in US dollars per million tokens, as providers publish them. One dollar per
million tokens is 1,000 nano-dollars per token, so a price with up to three decimals is a
whole number of nano-dollars a token: a reply's cost is then an exact integer, the same on
SQLite and Postgres, and sums of costs are exact too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from zyron.llm.base import TokenUsage

NANOS_PER_USD = 1_000_000_000
# Per token, in nano-dollars, for a price of $1 per million tokens.
_NANOS_PER_TOKEN_PER_USD_PER_MTOK = 1_000


def _nanos(price: Decimal | float | str, kind: str) -> int:
    value = Decimal(str(price)) * _NANOS_PER_TOKEN_PER_USD_PER_MTOK
    if value < 0 or value != value.to_integral_value():
        raise ValueError(
            f"{kind}: a price in dollars per million tokens, at least 0, with at most three "
            f"decimals (got {price})"
        )
    return int(value)


@dataclass(frozen=True, slots=True)
class Prices:
    """Nano-dollars per token, by kind."""

    input: int
    output: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int

    @classmethod
    def per_million(
        cls,
        *,
        input: Decimal | float | str,
        output: Decimal | float | str,
        cache_write_5m: Decimal | float | str | None = None,
        cache_write_1h: Decimal | float | str | None = None,
        cache_read: Decimal | float | str | None = None,
    ) -> Prices:
        """From dollars per million tokens; cache prices left out follow Anthropic's rule:
        writes 1.25x (5 minutes) and 2x (1 hour) the input price, reads 0.1x."""
        base = _nanos(input, "input")
        return cls(
            input=base,
            output=_nanos(output, "output"),
            # Derived prices round up: a cost is never understated.
            cache_write_5m=_nanos(cache_write_5m, "cache_write_5m")
            if cache_write_5m is not None
            else -(-base * 5 // 4),
            cache_write_1h=_nanos(cache_write_1h, "cache_write_1h")
            if cache_write_1h is not None
            else base * 2,
            cache_read=_nanos(cache_read, "cache_read")
            if cache_read is not None
            else -(-base // 10),
        )

    def cost(self, usage: TokenUsage) -> int:
        """The reply's cost in nano-dollars, exactly."""
        written_1h = usage.cache_creation_1h_input_tokens
        written_5m = usage.cache_creation_input_tokens - written_1h
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + written_5m * self.cache_write_5m
            + written_1h * self.cache_write_1h
            + usage.cache_read_input_tokens * self.cache_read
        )


FREE = Prices(input=0, output=0, cache_write_5m=0, cache_write_1h=0, cache_read=0)

# Anthropic's published prices, dollars per million tokens: input, output, and the cache's
# 5-minute writes, 1-hour writes and reads. Source: https://platform.claude.com/docs/en/about-
# claude/pricing (read 2026-12-01). MODELS_FILE's `prices` overrides them per model.
CLAUDE_PRICES = {
    "claude-opus-5": Prices.per_million(
        input="5", output="25", cache_write_5m="6.25", cache_write_1h="10", cache_read="0.50"
    ),
    "claude-sonnet-5": Prices.per_million(
        input="2", output="10", cache_write_5m="2.50", cache_write_1h="4", cache_read="0.20"
    ),
    "claude-opus-4-8": Prices.per_million(input="5", output="25"),
    "claude-opus-4-7": Prices.per_million(input="5", output="25"),
    "claude-opus-4-6": Prices.per_million(input="5", output="25"),
    "claude-opus-4-5": Prices.per_million(input="5", output="25"),
    "claude-sonnet-4-6": Prices.per_million(input="3", output="15"),
    "claude-sonnet-4-5": Prices.per_million(input="3", output="15"),
    "claude-haiku-4-5": Prices.per_million(
        input="1", output="5", cache_write_5m="1.25", cache_write_1h="2", cache_read="0.10"
    ),
}


def claude_prices(upstream_id: str) -> Prices | None:
    """A Claude model's published prices, by its id or a dated snapshot; None if unknown."""
    return CLAUDE_PRICES.get(snapshot_of(upstream_id))


def snapshot_of(upstream_id: str) -> str:
    """The model a dated snapshot is of (`claude-haiku-4-5-20251001` is `claude-haiku-4-5`);
    any other id is itself, so `claude-opus-5-5` is not taken for `claude-opus-5`."""
    return _DATED.sub("", upstream_id)


_DATED = re.compile(r"-\d{8}$")


def usd(nanos: int | None) -> float | None:
    """Nano-dollars as dollars, for showing (the integer stays the exact figure)."""
    return None if nanos is None else nanos / NANOS_PER_USD
