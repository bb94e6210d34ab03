"""Configuration from the environment or `.env`, with the seed backend's variable names."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import tempfile
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from limits import parse as parse_rate
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_CLAUDE_MODEL = "claude-sonnet-5"
# The current Claude models (platform.claude.com/docs/en/models/overview, November 2026);
# ANTHROPIC_MODELS replaces the list.
DEFAULT_CLAUDE_MODELS = ["claude-sonnet-5", "claude-opus-5", "claude-haiku-4-5"]
LOCAL_MODEL_ID = "smollm2-135m-instruct"

# Values copied from tutorials and .env examples; a server signing tokens with one of these
# would accept tokens anyone can forge.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "secret",
        "your-secret-key",
        "your_secret_key",
        "super-secret",
        "supersecret",
        "replace-me",
        "your-super-secret-jwt-token-with-at-least-32-characters-long",
    }
)


MIN_SECRET_LENGTH = 32
_MAKE_ONE = (
    "set it to a long random value, e.g. "
    'python -c "import secrets; print(secrets.token_urlsafe(48))"'
)


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message says what to change."""


class Settings(BaseSettings):
    """Every setting Zyron reads, with its default."""

    # env_ignore_empty: `NAME=` in a .env copied from .env.example means "not set".
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    environment: Literal["development", "production", "test"] = Field(
        default="development", alias="ZYRON_ENV"
    )
    data_dir: Path = Field(default=Path("data"), alias="ZYRON_DATA_DIR")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    db_pool_size: int = Field(default=10, alias="DB_POOL_SIZE", ge=1)
    db_max_overflow: int = Field(default=10, alias="DB_MAX_OVERFLOW", ge=0)
    db_pool_timeout_seconds: float = Field(default=10.0, alias="DB_POOL_TIMEOUT_SECONDS", gt=0)
    db_connect_timeout_seconds: float = Field(
        default=10.0, alias="DB_CONNECT_TIMEOUT_SECONDS", gt=0
    )
    db_statement_timeout_seconds: float = Field(
        default=30.0, alias="DB_STATEMENT_TIMEOUT_SECONDS", gt=0
    )
    db_pool_recycle_seconds: int = Field(default=1800, alias="DB_POOL_RECYCLE_SECONDS", ge=-1)
    # Transaction-mode poolers (Supabase port 6543, PgBouncer) hand each transaction to any
    # server connection: no prepared-statement cache, no session state. None: on for port 6543.
    db_transaction_pooler: bool | None = Field(default=None, alias="DB_TRANSACTION_POOLER")
    host: str = Field(default="127.0.0.1", alias="HOST")
    port: int = Field(default=8000, alias="PORT", ge=1, le=65535)
    log_level: str = Field(default="info", alias="LOG_LEVEL")

    secret_key: SecretStr | None = Field(default=None, alias="SECRET_KEY")
    access_token_ttl_seconds: int = Field(default=900, alias="ACCESS_TOKEN_TTL_SECONDS", ge=30)
    refresh_token_ttl_seconds: int = Field(
        default=30 * 24 * 3600, alias="REFRESH_TOKEN_TTL_SECONDS", ge=60
    )
    token_issuer: str = Field(default="zyron", alias="TOKEN_ISSUER")
    jwt_leeway_seconds: int = Field(default=30, alias="JWT_LEEWAY_SECONDS", ge=0, le=300)

    supabase_url: str | None = Field(default=None, alias="SUPABASE_URL")
    supabase_jwt_secret: SecretStr | None = Field(default=None, alias="SUPABASE_JWT_SECRET")
    # Accepted so an existing .env still loads; the server never needs them.
    supabase_anon_key: SecretStr | None = Field(default=None, alias="SUPABASE_ANON_KEY")
    supabase_service_role_key: SecretStr | None = Field(
        default=None, alias="SUPABASE_SERVICE_ROLE_KEY"
    )
    jwks_cache_seconds: int = Field(default=600, alias="JWKS_CACHE_SECONDS", ge=0)
    jwks_min_refetch_seconds: float = Field(default=60.0, alias="JWKS_MIN_REFETCH_SECONDS", ge=0)

    anthropic_api_key: SecretStr | None = Field(default=None, alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(default=None, alias="ANTHROPIC_BASE_URL")
    default_model: str | None = Field(default=None, alias="DEFAULT_MODEL")
    anthropic_models: Annotated[list[str], NoDecode] = Field(
        default=DEFAULT_CLAUDE_MODELS, alias="ANTHROPIC_MODELS"
    )
    anthropic_context_window: int = Field(default=200_000, alias="ANTHROPIC_CONTEXT_WINDOW", ge=256)
    anthropic_max_output: int = Field(default=64_000, alias="ANTHROPIC_MAX_OUTPUT", ge=1)
    # Cache breakpoints on Claude's prompts (docs/costs.md); MODELS_FILE switches it per model.
    prompt_caching: bool = Field(default=True, alias="PROMPT_CACHING")
    prompt_cache_ttl: Literal["5m", "1h"] = Field(default="5m", alias="PROMPT_CACHE_TTL")
    # Any server that speaks OpenAI's chat completions: vLLM, Ollama, llama.cpp, OpenRouter.
    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    openai_models: Annotated[list[str], NoDecode] = Field(default=[], alias="OPENAI_MODELS")
    openai_context_window: int = Field(default=32_768, alias="OPENAI_CONTEXT_WINDOW", ge=256)
    openai_max_output: int = Field(default=4096, alias="OPENAI_MAX_OUTPUT", ge=1)
    # What OPENAI_MODELS take besides text: images (as data URLs), PDFs, reasoning on request.
    openai_capabilities: Annotated[list[Literal["vision", "pdf", "reasoning"]], NoDecode] = Field(
        default=["vision"], alias="OPENAI_CAPABILITIES"
    )
    openai_max_tokens_parameter: Literal["max_tokens", "max_completion_tokens"] = Field(
        default="max_tokens", alias="OPENAI_MAX_TOKENS_PARAMETER"
    )
    # The in-process model (llama.cpp). None: used when installed (the `local` extra).
    local_model: bool | None = Field(default=None, alias="LOCAL_MODEL")
    local_model_path: Path | None = Field(default=None, alias="LOCAL_MODEL_PATH")
    local_model_id: str = Field(default=LOCAL_MODEL_ID, alias="LOCAL_MODEL_ID", min_length=1)
    local_context_window: int = Field(default=4096, alias="LOCAL_CONTEXT_WINDOW", ge=256)
    local_max_output: int = Field(default=512, alias="LOCAL_MAX_OUTPUT", ge=1)
    local_threads: int | None = Field(default=None, alias="LOCAL_THREADS", ge=1)
    local_max_queue: int = Field(default=32, alias="LOCAL_MAX_QUEUE", ge=0)
    # What runs it: xllamacpp (prebuilt wheels, the default) or llama-cpp-python (compiled);
    # auto takes the first of those two that is installed.
    local_runtime: Literal["auto", "xllamacpp", "llama-cpp-python"] = Field(
        default="auto", alias="LOCAL_RUNTIME"
    )
    # More providers and models, with their limits (docs/models.md).
    models_file: Path | None = Field(default=None, alias="MODELS_FILE")
    # Prompt size estimate where a provider has no local tokenizer; calibrated by usage.
    chars_per_token: float = Field(default=3.0, alias="CHARS_PER_TOKEN", gt=0.5, le=10)
    auto_titles: bool = Field(default=True, alias="AUTO_TITLES")
    title_model: str | None = Field(default=None, alias="TITLE_MODEL")
    title_timeout_seconds: float = Field(default=20.0, alias="TITLE_TIMEOUT_SECONDS", gt=0)
    # How long a stream stays open after `done` for the session's generated title.
    title_wait_seconds: float = Field(default=10.0, alias="TITLE_WAIT_SECONDS", ge=0)
    max_tokens: int = Field(default=4096, alias="MAX_TOKENS", ge=1)
    # The most a request may think (a budget, or an effort's allowance), on top of MAX_TOKENS.
    max_reasoning_tokens: int = Field(default=16_384, alias="MAX_REASONING_TOKENS", ge=0)
    # Retries happen only before the first token; after text has been sent there is none.
    upstream_max_retries: int = Field(default=3, alias="UPSTREAM_MAX_RETRIES", ge=0, le=10)
    upstream_retry_budget_seconds: float = Field(
        default=30.0, alias="UPSTREAM_RETRY_BUDGET_SECONDS", ge=0
    )
    upstream_retry_base_seconds: float = Field(
        default=0.5, alias="UPSTREAM_RETRY_BASE_SECONDS", ge=0
    )
    upstream_connect_timeout_seconds: float = Field(
        default=10.0, alias="UPSTREAM_CONNECT_TIMEOUT_SECONDS", gt=0
    )
    upstream_first_token_timeout_seconds: float = Field(
        default=60.0, alias="UPSTREAM_FIRST_TOKEN_TIMEOUT_SECONDS", gt=0
    )
    upstream_idle_timeout_seconds: float = Field(
        default=60.0, alias="UPSTREAM_IDLE_TIMEOUT_SECONDS", gt=0
    )
    upstream_timeout_seconds: float = Field(default=600.0, alias="UPSTREAM_TIMEOUT_SECONDS", gt=0)
    # The SDK's HTTP backend: aiohttp reads a streamed reply for about half the CPU of httpx
    # (52 vs 98 microseconds per event, docs/benchmarks.md); httpx is the SDK's default.
    upstream_http_client: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp", alias="UPSTREAM_HTTP_CLIENT"
    )
    # Each open reply holds one upstream connection: the SDK's default of 1,000 would queue
    # the 1,001st reply of a busy process.
    upstream_max_connections: int = Field(default=10_000, alias="UPSTREAM_MAX_CONNECTIONS", ge=1)

    reply_flush_interval_seconds: float = Field(
        default=0.3, alias="REPLY_FLUSH_INTERVAL_SECONDS", gt=0
    )
    reply_flush_chars: int = Field(default=400, alias="REPLY_FLUSH_CHARS", ge=1)
    # All progress writes of one process together: past this, each reply writes less often.
    reply_writes_per_second: float = Field(default=200.0, alias="REPLY_WRITES_PER_SECOND", gt=0)
    reply_lease_seconds: float = Field(default=30.0, alias="REPLY_LEASE_SECONDS", ge=1)
    reply_heartbeat_seconds: float = Field(default=2.0, alias="REPLY_HEARTBEAT_SECONDS", gt=0)
    recovery_interval_seconds: float = Field(default=10.0, alias="RECOVERY_INTERVAL_SECONDS", gt=0)
    cancel_on_disconnect: bool = Field(default=False, alias="CANCEL_ON_DISCONNECT")
    stream_retention_seconds: int = Field(default=600, alias="STREAM_RETENTION_SECONDS", ge=10)
    # On SIGTERM a server drains (zyron.serving, docs/deploy.md): /health answers 503 while
    # it serves on for at least DRAIN_MIN_SECONDS (longer than the balancer's health checks
    # take to mark it down) and until its replies end, at most DRAIN_TIMEOUT_SECONDS.
    drain_timeout_seconds: float = Field(default=60.0, alias="DRAIN_TIMEOUT_SECONDS", ge=0)
    drain_min_seconds: float = Field(default=5.0, alias="DRAIN_MIN_SECONDS", ge=0)

    # Where clients reach this server (https://chat.example.com), for the absolute URLs it
    # hands out (file parts of GET /ui/chat/{id}/messages); unset, the request's own address.
    public_url: str | None = Field(default=None, alias="PUBLIC_URL")
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default=["http://localhost:3000", "http://localhost:5173"], alias="ALLOWED_ORIGINS"
    )
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    # GET /metrics (docs/observability.md): off unless one of these is set. METRICS_TOKEN
    # serves it on the API's port to `Authorization: Bearer <token>`; METRICS_PORT serves it,
    # without a token, on a port of its own (on METRICS_HOST), apart from the API.
    metrics_token: SecretStr | None = Field(default=None, alias="METRICS_TOKEN")
    metrics_port: int | None = Field(default=None, alias="METRICS_PORT", ge=1, le=65535)
    metrics_host: str = Field(default="127.0.0.1", alias="METRICS_HOST")
    # OpenTelemetry traces, exported over OTLP/HTTP: off unless the endpoint is set. The SDK's
    # other OTEL_* variables (headers, sampler, resource attributes) apply as documented.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    otel_service_name: str = Field(default="zyron", alias="OTEL_SERVICE_NAME")
    rate_limit_enabled: bool = Field(default=True, alias="RATE_LIMIT_ENABLED")
    # Rates in the `limits` notation ("20/hour", "10 per 15 minutes"), moving windows.
    guest_chat_rate: str = Field(default="20/hour", alias="GUEST_CHAT_RATE")
    user_chat_rate: str = Field(default="300/hour", alias="USER_CHAT_RATE")
    login_ip_rate: str = Field(default="30 per 15 minutes", alias="LOGIN_IP_RATE")
    login_email_rate: str = Field(default="10 per 15 minutes", alias="LOGIN_EMAIL_RATE")
    signup_ip_rate: str = Field(default="10/hour", alias="SIGNUP_IP_RATE")
    signup_email_rate: str = Field(default="5/hour", alias="SIGNUP_EMAIL_RATE")
    # Reads of share links (the page and its files) per client address: no account needed.
    shared_read_rate: str = Field(default="600/hour", alias="SHARED_READ_RATE")
    # Tokens (prompt + reply) per UTC day; 0: no quota. A request is refused when its worst
    # case (the prompt and the whole reply budget) would pass what is left.
    user_daily_tokens: int = Field(default=2_000_000, alias="USER_DAILY_TOKENS", ge=0)
    guest_daily_tokens: int = Field(default=50_000, alias="GUEST_DAILY_TOKENS", ge=0)
    # Money budgets in US dollars (docs/costs.md); 0: none.
    user_daily_usd: Decimal = Field(default=Decimal(0), alias="USER_DAILY_USD", ge=0)
    user_monthly_usd: Decimal = Field(default=Decimal(0), alias="USER_MONTHLY_USD", ge=0)
    guest_daily_usd: Decimal = Field(default=Decimal(0), alias="GUEST_DAILY_USD", ge=0)
    guest_monthly_usd: Decimal = Field(default=Decimal(0), alias="GUEST_MONTHLY_USD", ge=0)
    # Replies running at once per signed-in user, and per guest address.
    user_max_concurrent: int = Field(default=3, alias="USER_MAX_CONCURRENT", ge=1)
    guest_max_concurrent: int = Field(default=2, alias="GUEST_MAX_CONCURRENT", ge=1)
    # Proxies whose X-Forwarded-For is believed (addresses or CIDR ranges); none by default.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default=[], alias="TRUSTED_PROXIES")
    # IPv6 clients are limited per network of this prefix length (a host usually has a /64).
    client_ipv6_prefix: int = Field(default=64, alias="CLIENT_IPV6_PREFIX", ge=32, le=128)

    max_body_bytes: int = Field(default=1_000_000, alias="MAX_BODY_BYTES", ge=1024)
    max_message_chars: int = Field(default=100_000, alias="MAX_MESSAGE_CHARS", ge=1)
    max_history_messages: int = Field(default=200, alias="MAX_HISTORY_MESSAGES", ge=0)
    max_sessions_page: int = Field(default=200, alias="MAX_SESSIONS_PAGE", ge=1)
    max_files_page: int = Field(default=200, alias="MAX_FILES_PAGE", ge=1)
    # Search (docs/search.md): the largest `limit` of GET /search, and the longest query.
    max_search_page: int = Field(default=100, alias="MAX_SEARCH_PAGE", ge=1)
    max_search_query_chars: int = Field(default=256, alias="MAX_SEARCH_QUERY_CHARS", ge=1)
    # Postgres's text search configuration (stemming, stop words) for messages and titles:
    # changing it re-indexes at the next start. SQLite always uses FTS5's Porter stemmer.
    search_config: str = Field(
        default="english", alias="SEARCH_CONFIG", pattern=r"^[a-z_][a-z0-9_]{0,62}$"
    )

    # Uploaded files (docs/attachments.md). Every file is capped by MAX_FILE_BYTES and by the
    # cap of its kind, whichever is smaller. The kinds' defaults are what the Anthropic API
    # takes: an image's base64 text at most 5 MiB (so 3.75 MiB of bytes); a PDF inside a
    # 32 MB request once base64 has made it a third larger (20 MB leaves room for the rest);
    # text: 1 MB, more than any model's context window holds (200K tokens is about 800 KB).
    # Files one message may attach (stored ones by id, or a guest's inline ones).
    max_attachments: int = Field(default=20, alias="MAX_ATTACHMENTS", ge=0)
    max_file_bytes: int = Field(default=20_000_000, alias="MAX_FILE_BYTES", ge=1)
    max_image_bytes: int = Field(default=3_932_160, alias="MAX_IMAGE_BYTES", ge=1)
    max_pdf_bytes: int = Field(default=20_000_000, alias="MAX_PDF_BYTES", ge=1)
    max_pdf_pages: int = Field(default=100, alias="MAX_PDF_PAGES", ge=0)  # 0: no page cap
    max_text_file_bytes: int = Field(default=1_000_000, alias="MAX_TEXT_FILE_BYTES", ge=1)
    # The sum of one user's files' sizes; 0: no quota.
    max_storage_bytes_per_user: int = Field(
        default=1_000_000_000, alias="MAX_STORAGE_BYTES_PER_USER", ge=0
    )
    # Decoded bytes of the inline (base64) attachments of one POST /chat; unset (-1): the
    # value of MAX_FILE_BYTES.
    # Guests' bodies are read before their rate limit: kept small by default.
    max_inline_attachment_bytes: int = Field(
        default=5_000_000, alias="MAX_INLINE_ATTACHMENT_BYTES", ge=-1
    )
    # POST /import (docs/export-import.md): the upload, what its zip may unpack to in all,
    # and how many conversations one import may hold. Files and messages in it are held to
    # the caps above (MAX_FILE_BYTES and its kinds, the storage quota, MAX_MESSAGE_CHARS).
    max_import_bytes: int = Field(default=52_428_800, alias="MAX_IMPORT_BYTES", ge=1024)
    # An import is held in memory whole and its JSON parsed at several times its size: 100
    # MiB (twice MAX_IMPORT_BYTES, room for a zip of already-compressed files) bounds that.
    max_import_unpacked_bytes: int = Field(
        default=104_857_600, alias="MAX_IMPORT_UNPACKED_BYTES", ge=1024
    )
    max_import_sessions: int = Field(default=1000, alias="MAX_IMPORT_SESSIONS", ge=1)
    # Messages (ChatGPT: nodes) in one import, counted before any is validated: bytes do not
    # bound the objects a parse makes, and each costs memory and CPU.
    max_import_messages: int = Field(default=100_000, alias="MAX_IMPORT_MESSAGES", ge=1)
    storage_backend: Literal["local", "s3"] = Field(default="local", alias="STORAGE_BACKEND")
    s3_bucket: str | None = Field(default=None, alias="S3_BUCKET")
    # None: AWS itself. R2: https://<account>.r2.cloudflarestorage.com; Supabase:
    # https://<project-ref>.supabase.co/storage/v1/s3; MinIO: its URL.
    s3_endpoint_url: str | None = Field(default=None, alias="S3_ENDPOINT_URL")
    s3_region: str = Field(default="us-east-1", alias="S3_REGION")
    s3_access_key_id: str | None = Field(default=None, alias="S3_ACCESS_KEY_ID")
    s3_secret_access_key: SecretStr | None = Field(default=None, alias="S3_SECRET_ACCESS_KEY")
    s3_prefix: str = Field(default="", alias="S3_PREFIX")
    # Bucket in the path, not the host name: MinIO, SeaweedFS and Supabase need it.
    s3_force_path_style: bool = Field(default=False, alias="S3_FORCE_PATH_STYLE")
    max_messages_page: int = Field(default=1000, alias="MAX_MESSAGES_PAGE", ge=1)
    stream_ping_seconds: float = Field(default=15.0, alias="STREAM_PING_SECONDS", gt=0)

    @field_validator(
        "guest_chat_rate",
        "user_chat_rate",
        "login_ip_rate",
        "login_email_rate",
        "signup_ip_rate",
        "signup_email_rate",
        "shared_read_rate",
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            parse_rate(value)
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not a rate like '20/hour' or '10 per 15 minutes'"
            ) from exc
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(
                f"PUBLIC_URL must be an http(s) URL like https://chat.example.com: {value!r}"
            )
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the entry
        return value

    @field_validator(
        "allowed_origins",
        "anthropic_models",
        "openai_models",
        "openai_capabilities",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _inline_default(self) -> Settings:
        if self.max_inline_attachment_bytes < 0:
            self.max_inline_attachment_bytes = self.max_file_bytes
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        """Return the database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'zyron.db').resolve()}"

    def signing_key(self) -> str:
        """Return the built-in token key: configured, or generated once in the data directory."""
        if self.secret_key is None or not self.secret_key.get_secret_value().strip():
            return _generated_secret(self.data_dir)
        key = self.secret_key.get_secret_value()
        if self.environment != "development":
            if key.strip().lower() in PLACEHOLDER_SECRETS:
                raise ConfigError(f"SECRET_KEY is a known placeholder; {_MAKE_ONE}")
            if len(key) < MIN_SECRET_LENGTH:
                raise ConfigError(
                    f"SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters; {_MAKE_ONE}"
                )
        return key


def _generated_secret(data_dir: Path) -> str:
    """Read the secret kept in the data directory, creating it on first start."""
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written whole to a private temporary file, then linked into place: a reader never
        # sees a half-written key, and if two processes race the first link wins for both.
        fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=".secret_key.")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    key = path.read_text().strip()
    if len(key) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{path} holds no usable key; delete it to have a new one generated")
    return key
