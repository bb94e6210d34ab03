"""What a 30-turn conversation is billed, with and without automatic prompt caching.

`python -m bench.prompt_caching [--turns 30]` starts the fake Anthropic upstream of the tests
(tests/fakes: it emulates the prompt cache as Anthropic documents it and bills by its own
rule, a token per 4 characters) and two Zyron servers on SQLite in this process, one with
PROMPT_CACHING=true (the default) and one with it off. On each it holds one conversation of
`--turns` turns on claude-sonnet-5, each question about 600 tokens and each reply short, and
sums what the fake billed: uncached input, cache writes, cache reads, output, and the cost at
claude-sonnet-5's prices. It prints a table and writes bench/results/prompt_caching.json.
These are the fake's figures, not Anthropic's: the point is the ratio, which follows from the
pricing rules the fake applies exactly as documented.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.support import live_server, make_settings, signup, stream_chat
from zyron.llm.base import TokenUsage
from zyron.llm.prices import claude_prices, usd

MODEL = "claude-sonnet-5"
QUESTION = "Please look at this part of the document again and say what changed. " * 35
RESULTS = Path(__file__).parent / "results" / "prompt_caching.json"


def converse(fake: FakeAnthropic, caching: bool, turns: int, data_dir: Path) -> dict[str, Any]:
    """Hold one conversation on a server; return the fake's bill for it."""
    fake.reset()
    fake.accounting = True
    settings = make_settings(
        data_dir,
        anthropic_api_key="sk-ant-bench",
        anthropic_base_url=fake.base_url,
        prompt_caching=caching,
        default_model=MODEL,
    )
    with live_server(settings) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        account = signup(http)
        session = None
        for turn in range(turns):
            fake.enqueue(TextReply(chunks=(f"Answer {turn}: noted.",)))
            body: dict[str, Any] = {"message": f"Turn {turn}. {QUESTION}"}
            if session:
                body["session_id"] = session
            events = stream_chat(http, body, account.headers)
            if events[-1].event != "done":
                raise RuntimeError(f"turn {turn} failed: {events[-1].data}")
            session = events[0].data["session_id"]
    prices = claude_prices(MODEL)
    assert prices is not None
    totals = {"input": 0, "cache_write": 0, "cache_read": 0, "output": 0, "cost_nanousd": 0}
    for bill, output in fake.billed:
        usage = TokenUsage(
            input_tokens=bill.input_tokens,
            output_tokens=output,
            cache_creation_input_tokens=bill.cache_creation_input_tokens,
            cache_read_input_tokens=bill.cache_read_input_tokens,
        )
        totals["input"] += bill.input_tokens
        totals["cache_write"] += bill.cache_creation_input_tokens
        totals["cache_read"] += bill.cache_read_input_tokens
        totals["output"] += output
        totals["cost_nanousd"] += prices.cost(usage)
    return totals


def main() -> None:
    """Run both conversations and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=30)
    args = parser.parse_args()
    with FakeAnthropic() as fake, tempfile.TemporaryDirectory() as tmp:
        runs = {
            "caching": converse(fake, True, args.turns, Path(tmp) / "on"),
            "no caching": converse(fake, False, args.turns, Path(tmp) / "off"),
        }
    print(f"{args.turns} turns on {MODEL} (the fake upstream's accounting)")
    print(
        f"{'':12} {'input':>9} {'writes':>9} {'reads':>9} {'output':>7} {'prompt':>9} {'cost':>9}"
    )
    for name, t in runs.items():
        prompt = t["input"] + t["cache_write"] + t["cache_read"]
        cost = usd(t["cost_nanousd"]) or 0.0
        print(
            f"{name:12} {t['input']:>9,} {t['cache_write']:>9,} {t['cache_read']:>9,} "
            f"{t['output']:>7,} {prompt:>9,} ${cost:>8.4f}"
        )
    saved = 1 - runs["caching"]["cost_nanousd"] / runs["no caching"]["cost_nanousd"]
    print(f"caching costs {saved:.0%} less")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"turns": args.turns, "model": MODEL, **runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
