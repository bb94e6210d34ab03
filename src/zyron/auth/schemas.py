"""Request and response bodies of the /auth routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from zyron.request_body import RequestBody

_RESERVED = "|".join(SPECIAL_USE_DOMAIN_NAMES)
# A domain with a dot, not a bracketed address, not ending in a special-use name.
EMAIL_PATTERN = rf"^[^@\s]+@(?!\[)[^@\s]+\.(?!(?:{_RESERVED})$)[^@.\s]+$"


class _EmailBody(RequestBody):
    """A body with an email, validated and lower-cased so comparisons ignore case."""

    email: EmailStr = Field(
        max_length=320,
        # What `format: email` admits and email-validator refuses, said as a pattern too, so
        # generated clients and fuzzers do not send it (ECMA-262, as JSON Schema reads it).
        json_schema_extra={"pattern": EMAIL_PATTERN},
        description="An address as email-validator reads it, compared without case. Refused "
        "with `422 validation_error` although `format: email` admits them: domains reserved "
        f"for special use ({', '.join('.' + d for d in SPECIAL_USE_DOMAIN_NAMES)}, RFC 6761), "
        "a domain without a dot, and an IP address in brackets. An address taken is `409 "
        "email_taken` on signup.",
    )

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class SignupRequest(_EmailBody):
    """A new account's email and password."""

    password: str = Field(min_length=8, max_length=1024)


class LoginRequest(_EmailBody):
    """An existing account's email and password."""

    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(RequestBody):
    """A refresh token to exchange for a new pair."""

    refresh_token: str = Field(min_length=1, max_length=512)


class AccountDeletion(RequestBody):
    """The password that confirms deleting a built-in account."""

    password: str = Field(
        min_length=1,
        max_length=1024,
        description="The account's password. Required for a built-in account (without it: "
        "`422 validation_error`; a wrong one: `401 invalid_credentials`); a Supabase user "
        "sends no body.",
    )


class UserRead(BaseModel):
    """A user as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str | None
    display_name: str | None
    created_at: datetime


class TokenPair(BaseModel):
    """Tokens returned by signup, login and refresh."""

    # Sent with every field: a generated client may count on each (defaults included).
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105  # not a secret
    expires_in: int = Field(description="Seconds until the access token expires.")
    user: UserRead
