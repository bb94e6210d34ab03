"""POST /chat through each provider: an OpenAI-compatible server, and the local model."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.backends import Backend
from tests.fakes.openai_upstream import FakeOpenAI, HttpError, TextReply
from tests.support import LiveServer, live_server, parse_sse, signup, stream_chat


@pytest.fixture(scope="module")
def openai_server(
    backend: Backend, fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server whose only provider is the OpenAI-compatible fake (no Anthropic key)."""
    settings = backend.settings(
        tmp_path_factory.mktemp("openai"),
        openai_base_url=fake_openai.base_url,
        openai_api_key="sk-openai-test-never-logged",
        openai_models=["llama-test", "qwen-test"],
        openai_context_window=8192,
        openai_max_output=256,
    )
    with live_server(settings) as running:
        yield running


@pytest.fixture
def http(openai_server: LiveServer, fake_openai: FakeOpenAI) -> Iterator[httpx.Client]:
    """A client of the OpenAI-backed server; the fake starts clean."""
    fake_openai.reset()
    with openai_server.client() as client:
        yield client


def test_openai_compatible_chat_is_streamed_and_saved(
    http: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    """The official openai SDK streams the server's chunks; the exchange is saved."""
    account = signup(http)
    fake_openai.enqueue(TextReply(chunks=("Bon", "jour"), prompt_tokens=17))
    events = stream_chat(
        http, {"message": "Say hello", "system": "Answer in French."}, account.headers
    )
    assert [e.event for e in events] == ["session", "delta", "delta", "done"]
    done = events[-1].data
    assert done["usage"] == {
        "input_tokens": 17,
        "output_tokens": 2,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "reasoning_tokens": None,
    }
    assert done["stop_reason"] == "end_turn"
    assert done["model"] == "llama-test"
    # No price was given for it: the cost is unknown, never 0.
    assert done["cost_usd"] is None
    [day] = http.get("/usage", headers=account.headers).json()["days"]
    assert (day["cost_usd"], day["cost_nanousd"], day["input_tokens"]) == (None, None, 17)

    request = fake_openai.requests[-1]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-openai-test-never-logged"
    assert request.body["model"] == "llama-test"
    assert request.body["stream"] is True
    assert request.body["max_tokens"] == 256
    assert request.body["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Say hello"},
    ]
    sid = events[0].data["session_id"]
    messages = http.get(f"/sessions/{sid}/messages", headers=account.headers).json()
    assert [(m["role"], m["content"], m["status"]) for m in messages] == [
        ("user", "Say hello", "complete"),
        ("assistant", "Bonjour", "complete"),
    ]


def test_openai_compatible_models_and_health(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    """/models lists the configured ids; /health reports the provider without calling it."""
    models = http.get("/models").json()
    assert models["default"] == "llama-test"
    assert [(m["id"], m["kind"], m["max_output"]) for m in models["models"]] == [
        ("llama-test", "openai", 256),
        ("qwen-test", "openai", 256),
    ]
    health = http.get("/health").json()
    assert health["providers"]["openai"]["kind"] == "openai"
    assert "sk-openai" not in str(health)
    assert fake_openai.requests == []


def test_openai_compatible_errors_reach_the_client(
    http: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    """A 429 from the server ends the stream with upstream_rate_limited; JSON gets the 429."""
    fake_openai.enqueue(HttpError(status=429, message="slow down", retry_after="7"))
    events = stream_chat(http, {"message": "hi", "model": "qwen-test"})
    assert events[-1].event == "error"
    assert events[-1].data["error"] == "upstream_rate_limited"
    fake_openai.enqueue(HttpError(status=429, message="slow down", retry_after="7"))
    response = http.post("/chat", json={"message": "hi", "stream": False})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"] == "upstream_rate_limited"


@pytest.fixture(scope="module")
def local_server(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server with no API key and the local model on: what `make run` gives a fresh checkout."""
    pytest.importorskip(
        "xllamacpp",
        reason="xllamacpp cannot be imported (make install, not LOCAL_MODEL=0)",
        exc_type=ImportError,
    )
    settings = backend.settings(
        tmp_path_factory.mktemp("local"),
        local_model=None,  # unset, as on a fresh checkout
        local_context_window=2048,
        auto_titles=True,
        title_wait_seconds=30,
    )
    with live_server(settings) as running:
        yield running


@pytest.mark.local_model
def test_local_model_answers_with_no_api_key(local_server: LiveServer) -> None:
    """No key: the local model is the default; a guest and a user get real streamed replies."""
    with local_server.client() as http:
        models = http.get("/models").json()
        assert models["default"] == "smollm2-135m-instruct"
        assert http.get("/health").json()["providers"]["local"]["state"] == "ready"

        guest = stream_chat(http, {"message": "What is the capital of France?", "max_tokens": 12})
        assert guest[-1].event == "done", guest[-1].data
        assert sum(e.event == "delta" for e in guest) > 1
        assert guest[-1].data["usage"]["output_tokens"] > 0

        account = signup(http)
        with http.stream(
            "POST",
            "/chat",
            json={"message": "Name three colours.", "max_tokens": 16},
            headers=account.headers,
        ) as response:
            events, _ = parse_sse(response.read().decode())
        kinds = [e.event for e in events]
        assert kinds[0] == "session"
        assert "done" in kinds
        assert kinds[-1] == "title"  # made by the same local model, after `done`
        sid = events[0].data["session_id"]
        title = http.get(f"/sessions/{sid}", headers=account.headers).json()["title"]
        assert title == events[-1].data["title"]
        assert title != "New chat"
        reply = http.get(f"/sessions/{sid}/messages", headers=account.headers).json()[-1]
        assert reply["status"] == "complete"
        assert reply["model"] == "smollm2-135m-instruct"
        assert reply["content"]


@pytest.mark.local_model
def test_local_model_reads_text_files_and_refuses_images(local_server: LiveServer) -> None:
    """A text file goes inline and counts in the prompt; an image or PDF is a clear 422."""
    from tests.files.samples import pdf, png

    with local_server.client() as http:
        account = signup(http)
        notes = http.post(
            "/files",
            files={"file": ("notes.md", b"# Shopping\n- apples\n- pears\n", "text/markdown")},
            headers=account.headers,
        ).json()
        bare = stream_chat(http, {"message": "List it.", "max_tokens": 8}, account.headers)
        with_file = stream_chat(
            http,
            {"message": "List it.", "max_tokens": 8, "attachments": [notes["id"]]},
            account.headers,
        )
        done = {e.event: e.data for e in with_file}["done"]
        before = {e.event: e.data for e in bare}["done"]
        # The file's text was in the prompt the model read.
        assert done["usage"]["input_tokens"] - before["usage"]["input_tokens"] >= 8
        for data, name in ((png(), "p.png"), (pdf(), "d.pdf")):
            file = http.post(
                "/files",
                files={"file": (name, data, "application/octet-stream")},
                headers=account.headers,
            ).json()
            refused = http.post(
                "/chat",
                json={"message": "See?", "attachments": [file["id"]]},
                headers=account.headers,
            )
            assert refused.status_code == 422
            assert refused.json()["error"] == "unsupported_attachment"
            assert "smollm2-135m-instruct" in refused.json()["detail"]


def test_cached_prompt_tokens_a_server_reports_are_recorded_apart(
    http: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    """prompt_tokens includes the cached part; it is recorded as a cache read, the rest as input."""
    account = signup(http)
    fake_openai.enqueue(TextReply(chunks=("Hi",), prompt_tokens=1000, cached_tokens=768))
    done = stream_chat(http, {"message": "Hello"}, account.headers)[-1].data
    assert done["usage"]["input_tokens"] == 232
    assert done["usage"]["cache_read_input_tokens"] == 768
    assert done["usage"]["cache_creation_input_tokens"] == 0
    quota = http.get("/usage", headers=account.headers).json()["quota"]
    assert quota["used_today"] == 1000 + 1  # the whole prompt, and the reply
