"""The shared upstream error mapping: statuses, and nothing secret passed on."""

from __future__ import annotations

from zyron.llm.errors import upstream_error_for_status


def test_a_key_echoed_by_the_provider_is_masked() -> None:
    """A provider message quoting a key or bearer token reaches the client masked."""
    error = upstream_error_for_status(
        400,
        "invalid x-api-key sk-ant-api03-abcdefghijkl (Authorization: Bearer eyJhbGciOi.x.y)",
        retry_after=None,
        key_name="ANTHROPIC_API_KEY",
    )
    assert error.code == "upstream_bad_request"
    assert "sk-ant" not in error.detail
    assert "eyJhbGciOi" not in error.detail
    assert error.detail.count("[redacted]") == 2


def test_auth_failure_names_the_setting_not_the_key() -> None:
    """401 says which setting to fix."""
    error = upstream_error_for_status(
        401, "bad key sk-proj-123456789", retry_after=None, key_name="OPENAI_API_KEY"
    )
    assert error.code == "upstream_auth"
    assert "OPENAI_API_KEY" in error.detail
    assert "sk-proj" not in error.detail
