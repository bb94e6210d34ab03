"""Issue built-in access and refresh tokens, shaped like Supabase's."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid

import jwt

AUDIENCE = "authenticated"
ROLE = "authenticated"
ALGORITHM = "HS256"


def issue_access_token(
    *,
    key: str,
    issuer: str,
    user_id: uuid.UUID,
    email: str | None,
    session_id: uuid.UUID,
    ttl_seconds: int,
) -> str:
    """Sign a short-lived access token with the claims Supabase puts in its own."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "role": ROLE,
        "aud": AUDIENCE,
        "iss": issuer,
        "iat": now,
        "exp": now + ttl_seconds,
        "session_id": str(session_id),
        "email": email,
        "is_anonymous": False,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"typ": "JWT"})


def new_refresh_token() -> str:
    """Return a new opaque refresh token (256 random bits)."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """Hash a refresh token for storage; SHA-256 suffices for 256 random bits."""
    return hashlib.sha256(token.encode()).hexdigest()
