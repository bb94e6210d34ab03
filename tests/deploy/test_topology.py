"""docs/deploy.md's topology end to end: HAProxy (deploy/haproxy.cfg), three replicas, Postgres
and Redis, all real processes; the fake Anthropic upstream of the test process behind them.

Which replica served a request is read from HAProxy's own counters (`show stat` on its admin
socket), never assumed from the balancing algorithm.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.deploy.conftest import GUEST_CHATS_PER_HOUR, Topology
from tests.deploy.haproxy import Haproxy
from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.replicas import (
    ChatRun,
    EventReader,
    Replica,
    assert_offsets,
    run_chat,
    wait_until,
    words,
)
from tests.support import Account, parse_sse, signup

pytestmark = pytest.mark.deploy

QUESTION = "Tell me a long story, please."
STREAMS = 50  # replies running at every moment of the rolling restart
ACCOUNTS = 10
ROLLING_CHUNKS = 10
ROLLING_CHUNK_DELAY = 0.3  # about 3 s a reply: many replies start and end on each replica
# Bounds for a machine busy with 50 streams (a start imports, migrates, loads models).
BUSY_SECONDS = 120.0


def proxy_client(topology: Topology, address: str | None = None) -> httpx.Client:
    """An HTTP client of the proxy, from a loopback `address` of its own when given."""
    transport = httpx.HTTPTransport(local_address=address) if address else None
    return httpx.Client(
        base_url=topology.proxy.url,
        transport=transport,
        timeout=httpx.Timeout(15.0),
    )


def one_more(before: dict[str, int], after: dict[str, int]) -> str:
    """Return the one replica HAProxy sent exactly one request to between two readings."""
    grew = {name: after[name] - before[name] for name in after if after[name] != before[name]}
    assert list(grew.values()) == [1], f"expected one request on one replica: {grew}"
    return next(iter(grew))


@pytest.fixture
def released() -> Iterator[list[threading.Event]]:
    """Gates for the fake upstream, all opened at the end whatever happened."""
    gates: list[threading.Event] = []
    try:
        yield gates
    finally:
        for gate in gates:
            gate.set()


def test_config_is_valid(topology: Topology) -> None:
    """`haproxy -c` accepts the shipped file, as run here and with its compose defaults."""
    checked = topology.proxy.check()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout + checked.stderr


def test_stream_arrives_token_by_token(
    topology: Topology, upstream: FakeAnthropic, released: list[threading.Event]
) -> None:
    """Through the proxy each chunk arrives alone: the upstream sends chunk n + 1 only once the
    client has chunk n, so a stream buffered anywhere on the way would stall here."""
    chunks = words(12, "t")
    released.extend(threading.Event() for _ in chunks[1:])
    upstream.enqueue(TextReply(chunks=chunks, gates=released))
    with proxy_client(topology) as http:
        account = signup(http)
        body = {"message": QUESTION, "title": "Tokens"}
        with http.stream("POST", "/chat", json=body, headers=account.headers) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = EventReader(response)
            reader.session()
            for index, chunk in enumerate(chunks):
                event = reader.next()
                assert event is not None, f"the stream ended after {index} chunks"
                assert (event.event, event.data.get("text")) == ("delta", chunk), event
                if index < len(released):
                    released[index].set()
            end = reader.read_to_end()
    assert end.event == "done", end
    assert end.data["stop_reason"] == "end_turn"
    assert_offsets(reader.events, 0)


def test_resume_lands_on_another_replica(
    topology: Topology, upstream: FakeAnthropic, released: list[threading.Event]
) -> None:
    """A stream cut after 5 chunks resumes through the proxy with Last-Event-ID on a replica
    that is not producing it: exactly the rest, relayed through Redis."""
    chunks = words(30, "r")
    full = "".join(chunks)
    released.extend(threading.Event() for _ in chunks[1:])
    upstream.enqueue(TextReply(chunks=chunks, gates=released))
    proxy = topology.proxy
    with proxy_client(topology) as http:
        account = signup(http)
        before = proxy.served()
        body = {"message": QUESTION, "title": "Resume"}
        with http.stream("POST", "/chat", json=body, headers=account.headers) as response:
            assert response.status_code == 200, response.read()
            first = EventReader(response)
            reply_id = first.session().data["assistant_message_id"]
            for index in range(5):
                first.read_deltas(index + 1)
                if index < 4:
                    released[index].set()  # the upstream then waits before chunk 6
        producer = one_more(before, proxy.served())
        seen, last_id = first.text, first.deltas[-1].id
        assert last_id == str(len(seen))
        # Send nothing new to the producer, so that the resume must land elsewhere.
        proxy.set_state(producer, "drain")
        try:
            before = proxy.served()
            headers = {**account.headers, "Last-Event-ID": str(last_id)}
            with http.stream("GET", f"/chat/{reply_id}/stream", headers=headers) as response:
                assert response.status_code == 200, response.read()
                follower = one_more(before, proxy.served())
                for gate in released[4:]:
                    gate.set()
                rest = EventReader(response)
                end = rest.read_to_end()
        finally:
            proxy.set_state(producer, "ready")
    assert follower != producer
    assert seen + rest.text == full  # every character once, none twice, none missing
    assert [event.event for event in rest.events if event.event != "delta"] == ["done"]
    assert end.data["message_id"] == reply_id
    assert_offsets(rest.events, len(seen))
    assert [event.data["text"] for event in rest.deltas] == list(chunks[5:])
    reply = topology.deployment.message(reply_id)
    assert (reply["status"], reply["content"]) == ("complete", full)


def random_loopback() -> str:
    """Return a loopback address no other run used (counts in a given Redis outlive a run)."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def test_guest_rate_limit_holds_across_replicas(topology: Topology) -> None:
    """Guest chats spread over the three replicas share one count, kept per client address as
    HAProxy's X-Forwarded-For gives it: a forged header does not make a new client."""
    proxy = topology.proxy
    address, other = random_loopback(), random_loopback()
    before = proxy.served()
    with proxy_client(topology, address) as http:
        for index in range(GUEST_CHATS_PER_HOUR):
            forged = {"X-Forwarded-For": f"203.0.113.{index + 1}"}
            answer = http.post("/chat", json={"message": f"guest {index}"}, headers=forged)
            assert answer.status_code == 200, answer.text
            events, _ = parse_sse(answer.text)
            assert events[-1].event == "done", events[-1]
        spread = {name: count - before[name] for name, count in proxy.served().items()}
        refused = http.post("/chat", json={"message": "one too many"})
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "rate_limited", refused.text
    assert all(spread.values()), f"the chats did not reach every replica: {spread}"
    # Another client behind the same proxy has a count of its own.
    with proxy_client(topology, other) as http:
        answer = http.post("/chat", json={"message": "another client"})
    assert answer.status_code == 200, answer.text


def keep_streaming(url: str, account: Account, tag: str, stop: threading.Event) -> list[ChatRun]:
    """Stream chats one after another until `stop`; return every chat made."""
    runs: list[ChatRun] = []
    while not stop.is_set():
        run = ChatRun(message=f"{tag}-{len(runs)}")
        runs.append(run)
        run_chat(url, account.headers, run)
    return runs


def restart(proxy: Haproxy, replica: Replica, streams_alive: Callable[[], None]) -> None:
    """SIGTERM one replica under load, wait for it to drain and stop, start it again, and wait
    until HAProxy has it up and sends it new streams."""
    assert replica.process is not None
    logged = replica.log_file.stat().st_size
    replica.terminate()
    # Its /health answers 503 draining: HAProxy marks it down while it still serves.
    wait_until(
        lambda: proxy.status(replica.name).startswith("DOWN"), f"{replica.name} down", BUSY_SECONDS
    )
    assert replica.process.poll() is None, f"{replica.name} stopped before HAProxy saw it go"
    replica.process.wait(timeout=BUSY_SECONDS)
    with replica.log_file.open("rb") as log:
        log.seek(logged)
        drain_log = log.read().decode(errors="replace")
    assert '"msg": "drained"' in drain_log, drain_log[-3000:]
    streams_alive()
    replica.start(timeout=BUSY_SECONDS)
    wait_until(
        lambda: proxy.status(replica.name) == "UP", f"{replica.name} up in HAProxy", BUSY_SECONDS
    )
    taken = proxy.served()[replica.name]
    wait_until(
        lambda: proxy.served()[replica.name] > taken,
        f"{replica.name} to take a stream",
        BUSY_SECONDS,
    )


@pytest.mark.timeout(900)
def test_rolling_restart_loses_nothing(topology: Topology, upstream: FakeAnthropic) -> None:
    """SIGTERM each replica in turn while 50 streams run: every reply ends done and is saved
    complete, none interrupted; each replica takes traffic again before the next stops."""
    chunks = words(ROLLING_CHUNKS, "w")
    full = "".join(chunks)
    # More replies than the restart can use: each chat takes the next one.
    upstream.enqueue(
        *(TextReply(chunks=chunks, chunk_delay=ROLLING_CHUNK_DELAY) for _ in range(5000))
    )
    proxy, deployment = topology.proxy, topology.deployment
    with proxy_client(topology) as http:
        accounts = [signup(http) for _ in range(ACCOUNTS)]
    stop = threading.Event()
    with ThreadPoolExecutor(STREAMS) as pool:
        futures = [
            pool.submit(keep_streaming, proxy.url, accounts[i % ACCOUNTS], f"s{i}", stop)
            for i in range(STREAMS)
        ]

        def streams_alive() -> None:
            for future in futures:
                if future.done():
                    future.result()  # a worker that died says why
                    raise AssertionError("a streaming worker stopped early")

        try:
            wait_until(
                lambda: all(row["scur"] != "0" for row in proxy.servers().values()),
                "streams on every replica",
            )
            for replica in topology.replicas:
                restart(proxy, replica, streams_alive)
        finally:
            stop.set()
        runs = [run for future in futures for run in future.result(timeout=120)]

    failed = [
        (run.message, run.status, run.failure, run.events[-1:])
        for run in runs
        if run.status != 200 or not run.events or run.events[-1].event != "done"
    ]
    assert not failed, f"{len(failed)} of {len(runs)} streams failed: {failed[:5]}"
    for run in runs:
        assert run.events[-1].data["stop_reason"] == "end_turn", run.events[-1]
        assert run.text == full, run.message
    print(f"\n{len(runs)} streams during the rolling restart; served: {proxy.served()}")

    sessions = [uuid.UUID(run.session["session_id"]) for run in runs]
    rows = deployment.rows(
        "SELECT role, status, content FROM messages WHERE session_id = ANY($1)", sessions
    )
    assert len(rows) == 2 * len(runs), "a question or a reply is missing"
    statuses = {(row["role"], row["status"]) for row in rows}
    assert statuses == {("user", "complete"), ("assistant", "complete")}, statuses
    assert all(row["content"] == full for row in rows if row["role"] == "assistant")
