"""Idempotency-Key on POST /chat: retries replay or attach; a different body is refused."""

from __future__ import annotations

import threading
import uuid

import httpx

from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.support import LiveServer, parse_sse, signup, stream_chat


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"key-{uuid.uuid4()}"}


def test_retry_of_a_finished_request_replays_without_calling_the_model(
    server: LiveServer, client: httpx.Client, upstream: FakeAnthropic
) -> None:
    """Same key, same body: the saved reply comes back, the model is not called again."""
    account = signup(client)
    headers = {**account.headers, **_key()}
    upstream.enqueue(TextReply(chunks=("Once", " only")))
    body = {"message": "hello", "stream": False}
    first = client.post("/chat", json=body, headers=headers)
    assert first.status_code == 200, first.text
    counts = server.counts()

    again = client.post("/chat", json=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["message"]["id"] == first.json()["message"]["id"]
    assert again.json()["user_message_id"] == first.json()["user_message_id"]
    assert again.json()["message"]["content"] == "Once only"
    assert again.json()["usage"] == first.json()["usage"]

    # The same retry asking for a stream gets the saved reply as events.
    events = stream_chat(client, {**body, "stream": True}, headers)
    assert [e.event for e in events] == ["session", "delta", "done"]
    assert events[1].data["text"] == "Once only"
    assert events[0].data["assistant_message_id"] == first.json()["message"]["id"]

    assert len(upstream.requests) == 1
    assert server.counts() == counts


def test_retry_while_the_first_runs_attaches_to_the_live_reply(
    client: httpx.Client, upstream: FakeAnthropic
) -> None:
    """A retry during the reply follows the same reply from its start."""
    account = signup(client)
    headers = {**account.headers, **_key()}
    chunks = tuple(f"w{i} " for i in range(10))
    upstream.enqueue(TextReply(chunks=chunks, chunk_delay=0.05))
    body = {"message": "slow one"}
    with client.stream("POST", "/chat", json=body, headers=headers) as first:
        pieces = first.iter_text()
        first_block = next(pieces)
        retry = stream_chat(client, body, headers)
        rest = "".join(pieces)
    first_events, _ = parse_sse(first_block + rest)
    assert retry[0].data["assistant_message_id"] == first_events[0].data["assistant_message_id"]
    text = "".join(str(e.data["text"]) for e in retry if e.event == "delta")
    assert text == "".join(chunks)
    assert retry[-1].event == "done"
    assert len(upstream.requests) == 1


def test_same_key_with_a_different_body_is_422_and_changes_nothing(
    server: LiveServer, client: httpx.Client, upstream: FakeAnthropic
) -> None:
    """A key is bound to its request: another body under it is refused."""
    account = signup(client)
    headers = {**account.headers, **_key()}
    assert client.post("/chat", json={"message": "a", "stream": False}, headers=headers).is_success
    counts = server.counts()
    response = client.post("/chat", json={"message": "b", "stream": False}, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_reused"
    assert server.counts() == counts
    assert len(upstream.requests) == 1


def test_keys_are_scoped_to_the_user(client: httpx.Client, upstream: FakeAnthropic) -> None:
    """Another user's identical key is a different request."""
    key = _key()
    alice, bob = signup(client), signup(client)
    body = {"message": "same", "stream": False}
    first = client.post("/chat", json=body, headers={**alice.headers, **key}).json()
    second = client.post("/chat", json=body, headers={**bob.headers, **key})
    assert second.status_code == 200
    assert "idempotent-replayed" not in second.headers
    assert second.json()["message"]["id"] != first["message"]["id"]
    assert len(upstream.requests) == 2


def test_concurrent_requests_with_one_key_make_one_reply(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic
) -> None:
    """Two simultaneous requests with the same key: one exchange, one model call."""
    account = signup(client)
    headers = {**account.headers, **_key()}
    upstream.enqueue(TextReply(chunks=("x",) * 5, chunk_delay=0.05))
    body = {"message": "race", "stream": False}
    results: list[httpx.Response] = []

    def send() -> None:
        with server.client() as http:
            results.append(http.post("/chat", json=body, headers=headers))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
    assert results[0].json()["message"]["id"] == results[1].json()["message"]["id"]
    assert len(upstream.requests) == 1


def test_guests_key_is_ignored(server: LiveServer, client: httpx.Client) -> None:
    """Guests have nothing saved to replay: the header changes nothing for them."""
    counts = server.counts()
    for _ in range(2):
        response = client.post("/chat", json={"message": "hi", "stream": False}, headers=_key())
        assert response.status_code == 200
        assert "idempotent-replayed" not in response.headers
    assert server.counts() == counts


def test_overlong_key_is_422(client: httpx.Client, upstream: FakeAnthropic) -> None:
    """Keys are at most 255 characters."""
    account = signup(client)
    headers = {**account.headers, "Idempotency-Key": "k" * 256}
    response = client.post("/chat", json={"message": "hi"}, headers=headers)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]
    assert upstream.requests == []
