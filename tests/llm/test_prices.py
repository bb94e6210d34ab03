"""Prices per model and kind, and a reply's exact cost (zyron.llm.prices)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from zyron.llm.base import TokenUsage
from zyron.llm.prices import FREE, Prices, claude_prices, usd


def test_prices_per_million_are_nanodollars_per_token() -> None:
    prices = Prices.per_million(input="2", output="10", cache_read="0.20")
    assert (prices.input, prices.output, prices.cache_read) == (2_000, 10_000, 200)
    # Cache writes left out follow Anthropic's rule: 1.25x and 2x the input price.
    assert (prices.cache_write_5m, prices.cache_write_1h) == (2_500, 4_000)
    assert Prices.per_million(input="3", output="15").cache_read == 300  # 0.1x
    # Derived prices round up, never down: $0.001 a million reads at 1 nano-dollar, not 0.
    assert Prices.per_million(input="0.001", output="1").cache_read == 1
    assert Prices.per_million(input=Decimal("0.125"), output=1).input == 125


@pytest.mark.parametrize("bad", ["0.0001", "-1"])
def test_a_price_finer_than_a_nanodollar_a_token_or_negative_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="at most three decimals"):
        Prices.per_million(input=bad, output="1")


def test_a_replys_cost_is_exact_by_kind() -> None:
    sonnet = claude_prices("claude-sonnet-5")
    assert sonnet is not None
    usage = TokenUsage(
        input_tokens=1_000,
        output_tokens=500,
        cache_creation_input_tokens=3_000,
        cache_creation_1h_input_tokens=1_000,
        cache_read_input_tokens=20_000,
    )
    # $2 in, $10 out, $2.50 per 5-minute write, $4 per 1-hour write, $0.20 per read, per MTok.
    expected = 1_000 * 2_000 + 500 * 10_000 + 2_000 * 2_500 + 1_000 * 4_000 + 20_000 * 200
    assert sonnet.cost(usage) == expected == 20_000_000  # two cents
    assert usd(sonnet.cost(usage)) == pytest.approx(0.02)
    assert FREE.cost(usage) == 0
    assert usd(None) is None


def test_claude_prices_by_model() -> None:
    assert claude_prices("claude-haiku-4-5-20251001") == claude_prices("claude-haiku-4-5")
    opus = claude_prices("claude-opus-5")
    assert opus is not None
    assert (opus.input, opus.output, opus.cache_read) == (5_000, 25_000, 500)
    assert claude_prices("claude-unknown-9") is None  # unpriced, not free
    assert claude_prices("claude-opus-5-5") is None  # a newer model, not claude-opus-5
