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

    @property
    def session_id(self) -> uuid.UUID | None:
        """Return the login session (refresh-token family) the token belongs to."""
        raw = self.claims.get("session_id")
        try:
            return uuid.UUID(str(raw)) if raw else None
        except ValueError:
            return None
