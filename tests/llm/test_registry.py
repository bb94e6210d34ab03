"""The model registry: providers and models from the environment and the models file."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tests.support import make_settings
from zyron.errors import NoProvider, UnknownModel
from zyron.llm.local import find_model_file, installed_runtime
from zyron.llm.prices import FREE, Prices, claude_prices
from zyron.llm.registry import Registry, build_registry, claude_reasoning
from zyron.llm.tokens import MESSAGE_OVERHEAD_TOKENS, PROMPT_OVERHEAD_TOKENS, TokenCounter
from zyron.settings import DEFAULT_CLAUDE_MODELS, ConfigError

# What a one-message prompt costs beyond its text.
OVERHEAD = PROMPT_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS


def _registry(tmp_path: Path, **overrides: Any) -> Registry:
    async def build() -> Registry:
        registry = build_registry(make_settings(tmp_path, **overrides))
        await registry.aclose()
        return registry

    return asyncio.run(build())


def test_nothing_configured_offers_nothing(tmp_path: Path) -> None:
    """No key, no server, no local model: no models, and a clear no_provider error."""
    registry = _registry(tmp_path)
    assert registry.models == {}
    assert registry.default is None
    with pytest.raises(NoProvider):
        registry.resolve(None)
    with pytest.raises(NoProvider):
        registry.check("anything")


def test_anthropic_key_offers_current_claude_models(tmp_path: Path) -> None:
    """With a key, the current Claude models, the first being the default."""
    registry = _registry(tmp_path, anthropic_api_key="sk-ant-x")
    assert list(registry.models) == DEFAULT_CLAUDE_MODELS
    assert registry.default == DEFAULT_CLAUDE_MODELS[0]
    spec, provider = registry.resolve(None)
    assert provider.kind == "anthropic"
    assert spec.context_window == 200_000


def test_anthropic_model_list_and_limits_are_configurable(tmp_path: Path) -> None:
    """ANTHROPIC_MODELS replaces the list; DEFAULT_MODEL outside it is still offered."""
    registry = _registry(
        tmp_path,
        anthropic_api_key="sk-ant-x",
        anthropic_models=["claude-a", "claude-b"],
        anthropic_context_window=1000,
        anthropic_max_output=100,
        default_model="claude-older",
    )
    assert list(registry.models) == ["claude-a", "claude-b", "claude-older"]
    assert registry.default == "claude-older"
    assert registry.models["claude-a"].context_window == 1000
    assert registry.models["claude-a"].max_output == 100


def test_unknown_model_names_the_choices(tmp_path: Path) -> None:
    """An id the server does not offer is a 422 whose detail lists what it does offer."""
    registry = _registry(tmp_path, anthropic_api_key="sk-ant-x", anthropic_models=["a", "b"])
    with pytest.raises(UnknownModel) as raised:
        registry.resolve("gpt-9")
    assert raised.value.status_code == 422
    assert "'gpt-9'" in raised.value.detail
    assert "a, b" in raised.value.detail


def test_default_model_nobody_serves_stops_the_start(tmp_path: Path) -> None:
    """DEFAULT_MODEL with no provider that could serve it is a configuration error."""
    with pytest.raises(ConfigError, match="DEFAULT_MODEL=claude-sonnet-5"):
        _registry(tmp_path, default_model="claude-sonnet-5")


def test_openai_compatible_server_from_the_environment(tmp_path: Path) -> None:
    """OPENAI_BASE_URL and OPENAI_MODELS offer that server's models with their limits."""
    registry = _registry(
        tmp_path,
        openai_base_url="http://127.0.0.1:9/v1",
        openai_models=["llama3.1", "qwen3"],
        openai_context_window=8192,
        openai_max_output=1024,
    )
    assert list(registry.models) == ["llama3.1", "qwen3"]
    assert registry.default == "llama3.1"
    spec, provider = registry.resolve("qwen3")
    assert provider.kind == "openai"
    assert (spec.context_window, spec.max_output) == (8192, 1024)


def test_openai_server_without_models_is_refused(tmp_path: Path) -> None:
    """A server with no model ids listed cannot be used: say so at start."""
    with pytest.raises(ConfigError, match="OPENAI_MODELS"):
        _registry(tmp_path, openai_base_url="http://127.0.0.1:9/v1")


def test_claude_is_the_default_when_both_are_configured(tmp_path: Path) -> None:
    """With Anthropic and an OpenAI-compatible server, the default is Claude."""
    registry = _registry(
        tmp_path,
        anthropic_api_key="sk-ant-x",
        openai_base_url="http://127.0.0.1:9/v1",
        openai_models=["llama3.1"],
    )
    assert registry.default == DEFAULT_CLAUDE_MODELS[0]
    assert registry.resolve("llama3.1")[1].kind == "openai"


MODELS_TOML = """
default_model = "fast"
title_model = "fast"

[[providers]]
name = "ollama"
kind = "openai"
base_url = "http://127.0.0.1:11434/v1"

[[providers]]
name = "router"
kind = "openai"
base_url = "https://openrouter.example/api/v1"
api_key_env = "ZYRON_TEST_ROUTER_KEY"
max_tokens_parameter = "max_completion_tokens"

[[models]]
id = "fast"
provider = "ollama"
upstream_id = "llama3.2:3b"
context_window = 8192
max_output = 1024

[[models]]
id = "big"
provider = "router"
upstream_id = "meta-llama/llama-3.1-405b-instruct"
context_window = 131072
max_output = 4096

[[models]]
id = "claude-extra"
provider = "anthropic"
context_window = 200000
max_output = 8000
"""


def test_models_file_adds_providers_and_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several providers and models with their own limits; keys come from the environment."""
    monkeypatch.setenv("ZYRON_TEST_ROUTER_KEY", "sk-or-x")
    path = tmp_path / "models.toml"
    path.write_text(MODELS_TOML)
    registry = _registry(tmp_path, anthropic_api_key="sk-ant-x", models_file=path)
    assert registry.default == "fast"
    assert registry.title_model == "fast"
    assert set(registry.providers) == {"anthropic", "ollama", "router"}
    spec, provider = registry.resolve("fast")
    assert (spec.upstream_id, spec.context_window, provider.name) == ("llama3.2:3b", 8192, "ollama")
    assert registry.resolve("big")[0].max_output == 4096
    assert registry.resolve("claude-extra")[1].kind == "anthropic"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[models]\n", "not valid TOML"),
        (
            '[[models]]\nid = "x"\nprovider = "nobody"\ncontext_window = 1000\nmax_output = 10\n',
            "names provider 'nobody'",
        ),
        ('[[models]]\nid = "x"\nprovider = "p"\n', "models.0.context_window"),
        ('colour = "blue"\n', "colour"),
        (
            '[[providers]]\nname = "p"\nkind = "openai"\napi_key_env = "ZYRON_TEST_UNSET_KEY"\n',
            "ZYRON_TEST_UNSET_KEY, which is not set",
        ),
        (
            '[[providers]]\nname = "p"\nkind = "openai"\nbase_url = "http://x/v1"\n'
            '[[models]]\nid = "x"\nprovider = "p"\ncontext_window = 1000\nmax_output = 1000\n',
            "max_output must be below context_window",
        ),
        (
            '[[providers]]\nname = "p"\nkind = "openai"\nbase_url = "http://x/v1"\n'
            '[[models]]\nid = "x"\nprovider = "p"\ncontext_window = 1000\nmax_output = 10\n'
            '[[models]]\nid = "x"\nprovider = "p"\ncontext_window = 1000\nmax_output = 10\n',
            "configured twice",
        ),
        ('title_model = "nope"\n', "TITLE_MODEL=nope"),
    ],
)
def test_models_file_mistakes_name_the_file_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    """A mistake in the models file stops the start with a sentence that says where."""
    monkeypatch.delenv("ZYRON_TEST_UNSET_KEY", raising=False)
    path = tmp_path / "models.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        _registry(tmp_path, models_file=path, anthropic_api_key="sk-ant-x")


def test_prompt_caching_is_on_for_claude_and_switchable_per_model(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        '[[models]]\nid = "claude-plain"\nprovider = "anthropic"\nupstream_id = "claude-sonnet-5"\n'
        "context_window = 200000\nmax_output = 8000\nprompt_caching = false\n"
        '[[models]]\nid = "claude-low"\nprovider = "anthropic"\nupstream_id = "claude-sonnet-5"\n'
        "context_window = 200000\nmax_output = 8000\ncache_min_tokens = 2048\n"
    )
    registry = _registry(tmp_path, anthropic_api_key="sk-ant-x", models_file=path)
    assert registry.resolve("claude-sonnet-5")[0].cache_min_tokens == 1024
    assert registry.resolve("claude-haiku-4-5")[0].cache_min_tokens == 4096
    assert registry.resolve("claude-plain")[0].cache_min_tokens is None
    assert registry.resolve("claude-low")[0].cache_min_tokens == 2048
    off = _registry(tmp_path, anthropic_api_key="sk-ant-x", prompt_caching=False)
    assert off.resolve("claude-sonnet-5")[0].cache_min_tokens is None
    # Asked for again per model, it is on even with PROMPT_CACHING=false.
    path.write_text(path.read_text().replace("prompt_caching = false", "prompt_caching = true"))
    again = _registry(
        tmp_path, anthropic_api_key="sk-ant-x", prompt_caching=False, models_file=path
    )
    assert again.resolve("claude-plain")[0].cache_min_tokens == 1024
    # Not a thing another provider's models have.
    path.write_text(
        '[[providers]]\nname = "p"\nkind = "openai"\nbase_url = "http://x/v1"\n'
        '[[models]]\nid = "x"\nprovider = "p"\ncontext_window = 1000\nmax_output = 10\n'
        "prompt_caching = true\n"
    )
    with pytest.raises(ConfigError, match="prompt_caching and cache_min_tokens are for Anthropic"):
        _registry(tmp_path, models_file=path)


def test_prices_come_from_the_models_file_else_the_provider_kind(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        '[[providers]]\nname = "p"\nkind = "openai"\nbase_url = "http://x/v1"\n'
        '[[models]]\nid = "priced"\nprovider = "p"\ncontext_window = 1000\nmax_output = 10\n'
        "prices = { input = 0.5, output = 1.5, cache_read = 0.25 }\n"
        '[[models]]\nid = "unpriced"\nprovider = "p"\ncontext_window = 1000\nmax_output = 10\n'
        '[[models]]\nid = "claude-cheap"\nprovider = "anthropic"\nupstream_id = "claude-sonnet-5"\n'
        "context_window = 200000\nmax_output = 8000\nprices = { input = 1, output = 4 }\n"
    )
    registry = _registry(tmp_path, anthropic_api_key="sk-ant-x", models_file=path)
    priced = registry.resolve("priced")[0].prices
    # Another server's cache has no published rule: a cached token costs what it says, else
    # the input price.
    assert priced == Prices(
        input=500, output=1_500, cache_write_5m=500, cache_write_1h=500, cache_read=250
    )
    assert registry.resolve("unpriced")[0].prices is None
    assert registry.resolve("claude-cheap")[0].prices == Prices.per_million(input=1, output=4)
    assert registry.resolve("claude-sonnet-5")[0].prices == claude_prices("claude-sonnet-5")
    path.write_text(
        '[[models]]\nid = "x"\nprovider = "anthropic"\ncontext_window = 1000\nmax_output = 10\n'
        "prices = { input = 0.00001, output = 1 }\n"
    )
    with pytest.raises(ConfigError, match=r"model 'x': prices\.input: .*at most three decimals"):
        _registry(tmp_path, anthropic_api_key="sk-ant-x", models_file=path)


def test_the_local_model_costs_nothing(tmp_path: Path) -> None:
    if find_model_file() is None or installed_runtime() is None:
        pytest.skip("the local model is not installed (make install installs it)")
    registry = _registry(tmp_path, local_model=True)
    [spec] = [s for s in registry.models.values() if s.provider == "local"]
    assert spec.prices == FREE


def test_missing_models_file_is_a_clear_error(tmp_path: Path) -> None:
    """A models file that is not there is named."""
    with pytest.raises(ConfigError, match="cannot be read"):
        _registry(tmp_path, models_file=tmp_path / "absent.toml")


def _hide_modules(monkeypatch: pytest.MonkeyPatch, *hidden: str) -> None:
    """Make importlib find none of `hidden`, as if they were not installed."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a)
    )


def test_local_model_asked_for_but_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LOCAL_MODEL=true with neither runtime installed says how to install one."""
    _hide_modules(monkeypatch, "xllamacpp", "llama_cpp")
    with pytest.raises(ConfigError, match=r"no local runtime \(xllamacpp or llama-cpp-python\)"):
        _registry(tmp_path, local_model=True)


def test_a_runtime_asked_for_but_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LOCAL_RUNTIME names a runtime that is not there: the start fails, saying how to get it."""
    _hide_modules(monkeypatch, "llama_cpp")
    with pytest.raises(
        ConfigError,
        match=r"LOCAL_RUNTIME=llama-cpp-python but llama-cpp-python is not installed: "
        r"`make install LOCAL_RUNTIME=llama-cpp-python`",
    ):
        _registry(tmp_path, local_model=True, local_runtime="llama-cpp-python")


@pytest.mark.parametrize(
    ("wanted", "hidden", "chosen"),
    [
        ("auto", (), "xllamacpp"),
        ("auto", ("xllamacpp",), "llama-cpp-python"),
        ("xllamacpp", (), "xllamacpp"),
        ("llama-cpp-python", (), "llama-cpp-python"),
    ],
)
def test_the_runtime_is_the_one_asked_for_or_the_first_installed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    wanted: str,
    hidden: tuple[str, ...],
    chosen: str,
) -> None:
    """auto prefers xllamacpp (prebuilt) and falls back to llama-cpp-python; nothing loads."""
    real = importlib.util.find_spec
    runtimes = {"xllamacpp", "llama_cpp"}

    def find_spec(name: str, *args: Any) -> object:
        if name in runtimes:
            return None if name in hidden else object()
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    model = tmp_path / "model.gguf"
    registry = _registry(tmp_path, local_model=True, local_runtime=wanted, local_model_path=model)
    health = registry.providers["local"].health()
    assert (health["runtime"], health["state"]) == (chosen, "not_loaded")


def test_local_model_left_unset_is_only_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LOCAL_MODEL unset: with a Claude key, the local model is not offered."""
    registry = _registry(tmp_path, anthropic_api_key="sk-ant-x", local_model=None)
    assert "local" not in registry.providers


def test_counter_rises_fast_to_what_usage_says() -> None:
    """Text denser than the configured ratio is caught up with in a few replies."""
    counter = TokenCounter(_registry_provider(), chars_per_token=4.0)
    text = "x" * 3000
    first = counter.count(text)
    assert 750 <= first <= 900  # 4 characters a token, with a 10% margin
    for _ in range(6):
        counter.observe(
            chars=3000, input_tokens=1500 + MESSAGE_OVERHEAD_TOKENS, messages=1
        )  # 2 characters a token
    calibrated = counter.count(text)
    assert calibrated >= 1500  # never under what the provider counted
    counter.observe(chars=10, input_tokens=10_000, messages=1)  # too small to say anything
    assert counter.count(text) == calibrated


def test_counter_falls_slowly_and_never_below_the_configured_ratio() -> None:
    """Sparser text lowers the estimate a little at a time, down to CHARS_PER_TOKEN only."""
    counter = TokenCounter(_registry_provider(), chars_per_token=3.0)
    text = "x" * 3000
    start = counter.count(text)
    for _ in range(3):
        counter.observe(
            chars=3000, input_tokens=3000 + MESSAGE_OVERHEAD_TOKENS, messages=1
        )  # 1 character a token
    high = counter.count(text)
    assert high > start
    counter.observe(
        chars=3000, input_tokens=600 + MESSAGE_OVERHEAD_TOKENS, messages=1
    )  # 5 characters a token
    assert counter.count(text) > high * 0.9  # one sparse reply moves it 5% of the way
    for _ in range(300):
        counter.observe(chars=3000, input_tokens=600 + OVERHEAD, messages=1)
    assert counter.count(text) == start  # back at the configured ratio, not below


def _registry_provider() -> Any:
    class NoTokenizer:
        def count_tokens(self, text: str) -> int | None:
            return None

    return NoTokenizer()


@pytest.mark.parametrize("prefix", ["anthropic", "openai"])
def test_reply_budget_must_leave_room_for_the_prompt(tmp_path: Path, prefix: str) -> None:
    """A max output as large as the window is refused at start, naming both settings."""
    with pytest.raises(ConfigError, match=f"{prefix.upper()}_MAX_OUTPUT"):
        _registry(
            tmp_path,
            **{f"{prefix}_context_window": 4096, f"{prefix}_max_output": 4096},
        )


@pytest.mark.parametrize(
    ("model_id", "mode"),
    [
        ("claude-sonnet-5", "adaptive"),
        ("claude-opus-5", "adaptive"),
        ("claude-opus-4-7", "adaptive"),
        ("claude-sonnet-4-6", "both"),
        ("claude-opus-4-6", "both"),
        ("claude-haiku-4-5", "budget"),
        ("claude-sonnet-4-5-20250929", "budget"),
        ("claude-opus-4-1-20250805", "budget"),
        ("claude-sonnet-4-20250514", "budget"),
        ("claude-sonnet-4-0", "budget"),
        ("claude-opus-4-0", "budget"),
        ("claude-opus-4-20250514", "budget"),
        ("some-other-model", None),
        ("claude-3-7-sonnet-20250219", "budget"),
        ("claude-3-5-haiku-20241022", None),
    ],
)
def test_claude_models_say_how_they_think(model_id: str, mode: str | None) -> None:
    """Budget-only, both, adaptive-only or none, as Anthropic lists the models."""
    assert claude_reasoning(model_id) == mode


def test_capabilities_default_by_kind_and_the_file_overrides(tmp_path: Path) -> None:
    """Claude sees images and PDFs; OpenAI-compatible images; the file may say otherwise."""
    path = tmp_path / "models.toml"
    path.write_text(
        '[[providers]]\nname = "p"\nkind = "openai"\nbase_url = "http://x/v1"\n'
        '[[models]]\nid = "plain"\nprovider = "p"\ncontext_window = 1000\nmax_output = 10\n'
        '[[models]]\nid = "rich"\nprovider = "p"\ncontext_window = 1000\nmax_output = 10\n'
        'pdf = true\nreasoning = "adaptive"\n'
        '[[models]]\nid = "blind"\nprovider = "p"\ncontext_window = 1000\nmax_output = 10\n'
        "vision = false\n"
        '[[models]]\nid = "claude-x"\nprovider = "anthropic"\nupstream_id = "claude-haiku-4-5"\n'
        'context_window = 1000\nmax_output = 10\nreasoning = "none"\n'
    )
    registry = _registry(tmp_path, anthropic_api_key="sk-ant-x", models_file=path)
    caps = {spec.id: (spec.vision, spec.pdf, spec.reasoning) for spec in registry.models.values()}
    assert caps["claude-sonnet-5"] == (True, True, "adaptive")
    assert caps["plain"] == (True, False, None)
    assert caps["rich"] == (True, True, "adaptive")
    assert caps["blind"] == (False, False, None)
    assert caps["claude-x"] == (True, True, None)
    assert registry.accepting("pdf") == [
        *DEFAULT_CLAUDE_MODELS,
        "rich",
        "claude-x",
    ]


def test_openai_capabilities_from_the_environment(tmp_path: Path) -> None:
    """OPENAI_CAPABILITIES says what OPENAI_MODELS take; an unknown one stops the start."""
    registry = _registry(
        tmp_path,
        openai_base_url="http://x/v1",
        openai_models=["m"],
        openai_capabilities=["pdf", "reasoning"],
    )
    spec = registry.models["m"]
    assert (spec.vision, spec.pdf, spec.reasoning) == (False, True, "adaptive")
    with pytest.raises(ValueError, match=r"OPENAI_CAPABILITIES|openai_capabilities"):
        _registry(
            tmp_path, openai_base_url="http://x/v1", openai_models=["m"], openai_capabilities=["x"]
        )
