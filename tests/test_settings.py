"""Settings: the signing key's rules and the generated secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.support import make_settings
from zyron.settings import ConfigError


def test_no_key_generates_one_and_keeps_it(data_dir: Path) -> None:
    """Without SECRET_KEY a key is generated once, private to the owner, and reused."""
    first = make_settings(data_dir).signing_key()
    again = make_settings(data_dir).signing_key()
    assert first == again
    assert len(first) >= 32
    mode = stat.S_IMODE((data_dir / "secret_key").stat().st_mode)
    assert mode == 0o600
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".secret_key")]


def test_empty_key_means_generated(data_dir: Path) -> None:
    """SECRET_KEY= (empty, as in .env.example) is the same as unset, never an empty HMAC key."""
    key = make_settings(data_dir, secret_key=SecretStr("")).signing_key()
    assert len(key) >= 32


def test_unusable_secret_file_is_refused(data_dir: Path) -> None:
    """An empty secret file (a crash mid-write) is an error that says what to do."""
    (data_dir / "secret_key").write_text("\n")
    with pytest.raises(ConfigError, match="delete it"):
        make_settings(data_dir).signing_key()


@pytest.mark.parametrize("environment", ["production", "test"])
@pytest.mark.parametrize("key", ["changeme", "secret", "short-but-not-a-placeholder"])
def test_weak_keys_are_refused_outside_development(
    data_dir: Path, environment: str, key: str
) -> None:
    """Placeholders and short keys are refused in production (and in tests)."""
    settings = make_settings(data_dir, secret_key=SecretStr(key), environment=environment)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        settings.signing_key()


def test_development_accepts_any_key(data_dir: Path) -> None:
    """On a developer's machine a short key is their business."""
    settings = make_settings(data_dir, secret_key=SecretStr("dev"), environment="development")
    assert settings.signing_key() == "dev"


def test_strong_key_is_used_as_given(data_dir: Path) -> None:
    """A long random key is used in production."""
    key = "k" * 48
    settings = make_settings(data_dir, secret_key=SecretStr(key), environment="production")
    assert settings.signing_key() == key
