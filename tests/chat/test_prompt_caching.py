"""Automatic prompt caching: a long conversation is billed as Anthropic's cache bills it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply, ThinkingReply
from tests.files.samples import png
from tests.support import LiveServer, signup, stream_chat
from zyron.llm.base import TokenUsage
from zyron.llm.prices import claude_prices, usd

# About 620 tokens by the fake's rule and 900 by Zyron's estimate (3 characters a token):
# a first turn is below claude-sonnet-5's 1,024-token minimum, a second is above it.
MESSAGE = "The quick brown fox jumps over the lazy dog. " * 55
HAIKU = "claude-haiku-4-5"


def marks(body: dict[str, Any]) -> int:
    """How many blocks of a request carry cache_control."""
    blocks = list(body["system"]) if isinstance(body.get("system"), list) else []
    for message in body["messages"]:
        if isinstance(message["content"], list):
            blocks += message["content"]
    return sum("cache_control" in block for block in blocks)


def usage_of(server: LiveServer, reply_id: str) -> tuple[int | None, ...]:
    [row] = server.query(
        "SELECT input_tokens, output_tokens, cache_creation_input_tokens, "
        "cache_read_input_tokens, cost_nanousd FROM messages WHERE id = :id",
        id=server.id(reply_id),
    )
    return tuple(row)


def test_a_twenty_turn_conversation_reads_its_history_from_the_cache(
    server: LiveServer, client: httpx.Client, upstream: FakeAnthropic
) -> None:
    upstream.accounting = True
    account = signup(client)
    session_id = None
    dones = []
    for turn in range(20):
        upstream.enqueue(TextReply(chunks=(f"Answer {turn}.",)))
        body: dict[str, Any] = {"message": f"{turn}: {MESSAGE}"}
        if session_id:
            body["session_id"] = session_id
        events = stream_chat(client, body, account.headers)
        assert events[-1].event == "done", events[-1].data
        session_id = events[0].data["session_id"]
        dones.append((str(events[0].data["assistant_message_id"]), events[-1].data))
    requests = [r.body for r in upstream.requests]
    billed = [bill for bill, _ in upstream.billed]
    assert len(requests) == len(billed) == 20

    # Too short to cache at first: no marks. From the second turn on the last two user turns
    # carry one each (no system prompt here).
    assert marks(requests[0]) == 0
    assert all(marks(body) == 2 for body in requests[2:])
    assert billed[0].cache_read_input_tokens == billed[0].cache_creation_input_tokens == 0
    # From the third turn on, most of the prompt is read from the cache, and more each turn.
    shares = [bill.cache_read_input_tokens / bill.prompt_tokens for bill in billed]
    assert all(share > 0.5 for share in shares[2:]), shares
    assert shares[-1] > 0.9
    # Each turn writes what it added: the next reads it.
    for before, after in itertools.pairwise(billed[1:]):
        assert after.cache_read_input_tokens == before.prompt_tokens

    # What Zyron recorded is what the fake billed, to the token and the nano-dollar, at
    # claude-sonnet-5's prices: done.usage and cost_usd, the reply's row.
    sonnet = claude_prices("claude-sonnet-5")
    assert sonnet is not None
    costs = []
    for (reply_id, done), (bill, output) in zip(dones, upstream.billed, strict=True):
        cost = sonnet.cost(
            TokenUsage(
                input_tokens=bill.input_tokens,
                output_tokens=output,
                cache_creation_input_tokens=bill.cache_creation_input_tokens,
                cache_read_input_tokens=bill.cache_read_input_tokens,
            )
        )
        costs.append(cost)
        assert done["cost_usd"] == usd(cost)
        expected = {
            "input_tokens": bill.input_tokens,
            "output_tokens": output,
            "cache_creation_input_tokens": bill.cache_creation_input_tokens,
            "cache_read_input_tokens": bill.cache_read_input_tokens,
            "reasoning_tokens": None,
        }
        assert done["usage"] == expected
        assert usage_of(server, reply_id) == (
            bill.input_tokens,
            output,
            bill.cache_creation_input_tokens,
            bill.cache_read_input_tokens,
            cost,
        )
    # The stored messages say so too, and GET /usage adds it up by kind.
    messages = client.get(
        f"/sessions/{session_id}/messages", headers=account.headers, params={"limit": 100}
    ).json()
    assert [m["usage"] for m in messages if m["role"] == "assistant"] == [
        d["usage"] for _, d in dones
    ]
    [day] = client.get("/usage", headers=account.headers).json()["days"]
    assert day["input_tokens"] == sum(bill.input_tokens for bill in billed)
    assert day["cache_read_input_tokens"] == sum(bill.cache_read_input_tokens for bill in billed)
    assert day["cache_creation_input_tokens"] == sum(
        bill.cache_creation_input_tokens for bill in billed
    )
    assert day["output_tokens"] == sum(output for _, output in upstream.billed)
    assert day["cost_nanousd"] == sum(costs)
    assert day["cost_usd"] == pytest.approx(sum(costs) / 1e9)
    # Without the cache the same prompts would have cost more: every token at the input price.
    uncached = sum(
        sonnet.cost(TokenUsage(input_tokens=bill.prompt_tokens, output_tokens=output))
        for bill, output in upstream.billed
    )
    assert sum(costs) < uncached / 2
    # The quota counts the whole prompt, however it was billed.
    quota = client.get("/usage", headers=account.headers).json()["quota"]
    assert quota["used_today"] == sum(bill.prompt_tokens + out for bill, out in upstream.billed)


def test_a_system_prompt_is_marked_and_read_by_a_new_conversation(
    server: LiveServer, client: httpx.Client, upstream: FakeAnthropic
) -> None:
    upstream.accounting = True
    account = signup(client)
    system = "You are a careful assistant. " * 200  # long enough to be cached by itself
    for _ in range(2):
        upstream.enqueue(TextReply(chunks=("Hi",)))
        events = stream_chat(client, {"message": "Hello", "system": system}, account.headers)
        assert events[-1].event == "done"
    first, second = (body for body in (r.body for r in upstream.requests))
    assert first["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    [(written, _), (read, _)] = upstream.billed
    assert written.cache_creation_input_tokens > 0
    # Another session, the same system prompt: read from the cache.
    assert read.cache_read_input_tokens >= written.cache_creation_input_tokens
    assert second["system"] == first["system"]


def test_a_short_prompt_carries_no_marks(
    server: LiveServer, client: httpx.Client, upstream: FakeAnthropic
) -> None:
    account = signup(client)
    upstream.enqueue(TextReply())
    assert stream_chat(client, {"message": "Hi", "system": "Be brief."}, account.headers)
    body = upstream.requests[-1].body
    assert marks(body) == 0
    assert body["system"] == "Be brief."


def test_thinking_and_images_stay_unmarked_and_the_history_is_still_read(
    server: LiveServer, client: httpx.Client, upstream: FakeAnthropic
) -> None:
    upstream.accounting = True
    account = signup(client)
    reasoning = {"budget_tokens": 2048}
    image = client.post(
        "/files", files={"file": ("dot.png", png(), "image/png")}, headers=account.headers
    ).json()["id"]
    session_id = None
    # claude-haiku-4-5 caches from 4,096 tokens: long turns.
    for turn in range(3):
        upstream.enqueue(ThinkingReply(thinking=("Let me", " think."), chunks=(f"A{turn}",)))
        body: dict[str, Any] = {
            "message": MESSAGE * 4,
            "model": HAIKU,
            "reasoning": reasoning,
            **({"session_id": session_id} if session_id else {"attachments": [image]}),
        }
        events = stream_chat(client, body, account.headers)
        assert events[-1].event == "done", events[-1].data
        session_id = events[0].data["session_id"]
    last = upstream.requests[-1].body
    for message in last["messages"]:
        for block in message["content"] if isinstance(message["content"], list) else []:
            if block["type"] in ("thinking", "redacted_thinking", "image"):
                assert "cache_control" not in block  # the mark is on the turn's text
    assert last["messages"][0]["content"][0]["type"] == "image"  # sent with its turn still
    assert marks(last) == 2
    [_, _, (bill, _)] = upstream.billed
    assert bill.cache_read_input_tokens > bill.prompt_tokens / 2


def test_a_one_hour_ttl_is_marked_and_priced_as_such(
    backend: Backend, upstream: FakeAnthropic, tmp_path: Path
) -> None:
    """PROMPT_CACHE_TTL=1h: the marks say so, the fake bills 1-hour writes, the cost uses the
    1-hour write price ($4 a million on claude-sonnet-5, not $2.50)."""
    upstream.accounting = True
    served = backend.claude_server(tmp_path, upstream, prompt_cache_ttl="1h")
    with served as server, server.client() as http:
        account = signup(http)
        upstream.enqueue(TextReply(chunks=("Hi",)))
        done = stream_chat(http, {"message": MESSAGE * 3}, account.headers)[-1].data
        stored = usage_of(server, str(done["message_id"]))
    body = upstream.requests[-1].body
    assert body["messages"][-1]["content"][-1]["cache_control"] == {
        "type": "ephemeral",
        "ttl": "1h",
    }
    [(bill, output)] = upstream.billed
    assert bill.cache_creation_1h_input_tokens == bill.cache_creation_input_tokens > 0
    sonnet = claude_prices("claude-sonnet-5")
    assert sonnet is not None
    expected = (
        bill.input_tokens * sonnet.input
        + bill.cache_creation_input_tokens * sonnet.cache_write_1h
        + output * sonnet.output
    )
    assert done["cost_usd"] == usd(expected)
    assert stored[-1] == expected


def test_no_marks_while_the_history_is_being_trimmed(
    backend: Backend, upstream: FakeAnthropic, tmp_path: Path
) -> None:
    """Once the oldest turns are left out to fit the window, the prompt's start moves every
    turn: a cache write would be paid for and never read, so nothing is marked."""
    served = backend.claude_server(
        tmp_path, upstream, anthropic_context_window=5000, anthropic_max_output=1000
    )
    with served as server, server.client() as http:
        account = signup(http)
        session = None
        omitted = []
        for turn in range(6):
            upstream.enqueue(TextReply(chunks=(f"A{turn}",)))
            body: dict[str, Any] = {"message": MESSAGE, "max_tokens": 1000}
            if session:
                body["session_id"] = session
            events = stream_chat(http, body, account.headers)
            session = events[0].data["session_id"]
            omitted.append(events[-1].data["turns_omitted"])
    assert omitted[0] == 0
    assert omitted[-1] > 0, omitted
    for body, left_out in zip((r.body for r in upstream.requests), omitted, strict=True):
        assert (marks(body) == 0) == (left_out > 0 or body is upstream.requests[0].body)
