"""The drain on SIGTERM (zyron.serving), on real `zyron serve` processes: one, or two workers.

A reply is held mid-stream by the fake upstream, so it is certainly running while the test
signals the server, however slow the machine.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.pg import PostgresServer
from tests.replicas import (
    STOP_SECONDS,
    Deployment,
    EventReader,
    Replica,
    assert_offsets,
    deployed,
    wait_until,
    words,
)
from tests.support import Account, signup

QUESTION = "Tell me a long story, please."


@pytest.fixture
def deployment(
    postgres: PostgresServer, upstream: FakeAnthropic, tmp_path: Path
) -> Iterator[Deployment]:
    """A fresh database for this test's server; it is stopped at the end."""
    with deployed(postgres, upstream.base_url, tmp_path) as deployment:
        yield deployment


def listening(replica: Replica) -> bool:
    """Tell whether anything accepts connections on the replica's port."""
    try:
        with socket.create_connection(("127.0.0.1", replica.port), timeout=2):
            return True
    except OSError:
        return False


def health(replica: Replica) -> httpx.Response:
    """GET /health on a fresh connection."""
    return httpx.get(f"{replica.url}/health", timeout=10)


def draining(replica: Replica) -> httpx.Response | None:
    """GET /health; return the answer if it is a 503."""
    answer = health(replica)
    return answer if answer.status_code == 503 else None


def start_held_reply(
    replica: Replica, http: httpx.Client, account: Account
) -> tuple[httpx.Response, EventReader, str]:
    """Open a chat stream and read its first delta; the upstream then waits for the test."""
    request = http.build_request(
        "POST", "/chat", json={"message": QUESTION}, headers=account.headers
    )
    response = http.send(request, stream=True)
    assert response.status_code == 200, response.read()
    reader = EventReader(response)
    reply_id = str(reader.session().data["assistant_message_id"])
    reader.read_deltas(1)
    return response, reader, reply_id


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_a_running_reply(
    deployment: Deployment, upstream: FakeAnthropic, workers: int
) -> None:
    """SIGTERM: /health says 503 draining, the server still serves, the running reply ends
    whole; only then is the port closed."""
    chunks = words(20, "d")
    hold = threading.Event()
    upstream.enqueue(TextReply(chunks=chunks, hold=hold))
    replica = deployment.start(
        "draining",
        args=("--workers", str(workers)),
        # A minimum: an idle worker keeps listening (and answering 503) for 6 s at least,
        # ample for the checks below on a busy machine.
        settings={"DRAIN_TIMEOUT_SECONDS": "60", "DRAIN_MIN_SECONDS": "6"},
    )
    with replica.client() as http:
        account = signup(http)
        response, reader, reply_id = start_held_reply(replica, http, account)
        try:
            replica.terminate()
            # Every worker drains: whichever answers, /health says so, on a new connection.
            wait_until(lambda: draining(replica), "/health to answer 503 after SIGTERM")
            time.sleep(0.3)  # the supervisor signals its workers one after the other
            for _ in range(4 * workers):
                answer = health(replica)
                assert answer.status_code == 503, answer.text
                assert answer.json()["status"] == "draining", answer.text
            # Still serving what arrives (the balancer may not have noticed yet).
            models = httpx.get(f"{replica.url}/models", timeout=10)
            assert models.status_code == 200, models.text
            assert replica.process is not None
            assert replica.process.poll() is None, "stopped with a reply running"
            assert listening(replica)
            hold.set()
            end = reader.read_to_end()
        finally:
            hold.set()
            response.close()
    assert end.event == "done", end
    assert reader.text == "".join(chunks)
    assert_offsets(reader.events, 0)
    # With nothing left to serve, the drain ends: the process exits and the port is closed.
    assert replica.process is not None
    replica.process.wait(timeout=STOP_SECONDS)
    assert not listening(replica)
    reply = deployment.message(reply_id)
    assert (reply["status"], reply["content"]) == ("complete", "".join(chunks))
    log = replica.log_file.read_text()
    assert '"msg": "draining"' in log
    assert '"msg": "drained"' in log


@pytest.mark.parametrize("workers", [1, 2])
def test_second_signal_stops_at_once(
    deployment: Deployment, upstream: FakeAnthropic, workers: int
) -> None:
    """A second SIGTERM during a drain stops the server without waiting for its reply; with
    workers, signalled through the supervisor alone (as `docker stop` does)."""
    hold = threading.Event()
    upstream.enqueue(TextReply(chunks=words(10, "s"), hold=hold))
    replica = deployment.start(
        "impatient",
        args=("--workers", str(workers)),
        settings={"DRAIN_TIMEOUT_SECONDS": "60"},
    )
    with replica.client() as http:
        account = signup(http)
        response, _, reply_id = start_held_reply(replica, http, account)
        try:
            replica.terminate()
            wait_until(lambda: health(replica).status_code == 503, "/health to answer 503")
            assert replica.process is not None
            replica.process.send_signal(signal.SIGTERM)
            replica.process.wait(timeout=STOP_SECONDS)  # the reply is still held
            assert not listening(replica)
        finally:
            hold.set()
            response.close()
    # Stopped at once, the reply unfinished (cancelled as the loop closed, or left to its lease).
    assert deployment.message(reply_id)["status"] in ("streaming", "interrupted")


def test_drain_timeout_bounds_the_wait(deployment: Deployment, upstream: FakeAnthropic) -> None:
    """Past DRAIN_TIMEOUT_SECONDS the port closes though a reply runs; the shutdown's grace
    then still saves that reply whole when it ends in time."""
    chunks = words(10, "t")
    hold = threading.Event()
    upstream.enqueue(TextReply(chunks=chunks, hold=hold))
    replica = deployment.start("bounded", settings={"DRAIN_TIMEOUT_SECONDS": "1"})
    with replica.client() as http:
        account = signup(http)
        response, _, reply_id = start_held_reply(replica, http, account)
        try:
            replica.terminate()
            wait_until(lambda: not listening(replica), "the port to close after the drain bound")
            assert replica.process is not None
            assert replica.process.poll() is None, "the shutdown gave the reply no grace"
            assert deployment.message(reply_id)["status"] == "streaming"
        finally:
            hold.set()
            response.close()
    replica.process.wait(timeout=STOP_SECONDS)
    reply = deployment.message(reply_id)
    assert (reply["status"], reply["content"]) == ("complete", "".join(chunks))
    assert "drain timeout" in replica.log_file.read_text()


def test_sigint_stops_without_a_drain(deployment: Deployment) -> None:
    """Ctrl+C (SIGINT) at a terminal stops an idle server at once, as uvicorn does."""
    replica = deployment.start("interrupted", settings={"DRAIN_MIN_SECONDS": "60"})
    assert replica.process is not None
    replica.process.send_signal(signal.SIGINT)
    replica.process.wait(timeout=STOP_SECONDS)
    assert not listening(replica)
    assert '"msg": "draining"' not in replica.log_file.read_text()


def test_health_is_ok_when_serving(deployment: Deployment) -> None:
    """Before any signal, /health is 200 with status ok (what a balancer's check expects)."""
    replica = deployment.start("serving")
    answer = health(replica)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ok"
