"""Who is calling: the verified identity behind a bearer token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Principal:
    """A user proven by a verified token, with the token's claims (Postgres RLS reads them)."""

    user_id: uuid.UUID
    email: str | None
    issuer: Literal["zyron", "supabase"]
    claims: dict[str, Any] = field(repr=False)
    # Set once the account is checked (zyron.auth.deps): from the row for a built-in account,
    # from the row or the token's app_metadata for a Supabase user (docs/admin.md).
    admin: bool = False

    @property
    def session_id(self) -> uuid.UUID | None:
        """Return the login session (refresh-token family) the token belongs to."""
        raw = self.claims.get("session_id")
        try:
            return uuid.UUID(str(raw)) if raw else None
        except ValueError:
            return None


# The key of the token's app_metadata that makes a Supabase user an administrator, with the
# value "admin". Only Supabase's service role can set app_metadata (docs/supabase.md).
SUPABASE_ROLE_CLAIM = "zyron_role"


@dataclass(frozen=True, slots=True)
class KnownAccount:
    """What a process caches of an account whose row it has checked (AppState.known_users)."""

    admin: bool  # the row's role is 'admin'
    disabled: bool  # the row's disabled_at is set


def supabase_admin(claims: dict[str, Any]) -> bool:
    """Tell whether a Supabase token's app_metadata names its user an administrator."""
    metadata = claims.get("app_metadata")
    return isinstance(metadata, dict) and metadata.get(SUPABASE_ROLE_CLAIM) == "admin"
