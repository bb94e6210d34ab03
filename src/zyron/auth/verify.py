"""Verify bearer tokens: built-in HS256, Supabase HS256 (legacy secret), Supabase ES256/RS256."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from cachetools import TTLCache

from zyron.auth.jwks import JwksCache, JwksUnavailable
from zyron.auth.principal import Principal
from zyron.auth.tokens import AUDIENCE, ROLE
from zyron.errors import InvalidToken, ZyronError

# Headers that ask the verifier to fetch or trust a key named by the token itself.
FORBIDDEN_HEADERS = ("jku", "jwk", "x5u", "x5c")
REQUIRED_CLAIMS = ["exp", "sub", "aud"]
MAX_EMAIL_LENGTH = 320
# Tokens verified lately, so a client's next requests skip the two decodes and the signature
# check (a third of a signed-in chat's time before the model call, profiled). An entry lives
# at most this long, and never past the token's own expiry.
VERIFIED_CACHE_SECONDS = 60.0
VERIFIED_CACHE_SIZE = 10_000


class AuthUnavailable(ZyronError):
    """The identity provider's keys cannot be fetched."""

    status_code = 503
    code = "auth_unavailable"
    default_detail = "Supabase signing keys cannot be fetched right now; try again shortly."


class TokenVerifier:
    """Pick the key by the token's issuer (and `kid`), with the algorithm fixed by that key."""

    def __init__(
        self,
        *,
        builtin_key: str,
        builtin_issuer: str,
        supabase_url: str | None,
        supabase_secret: str | None,
        jwks: JwksCache | None,
        leeway_seconds: int,
    ) -> None:
        self._builtin_key = builtin_key
        self._builtin_issuer = builtin_issuer
        self._supabase_issuer = f"{supabase_url.rstrip('/')}/auth/v1" if supabase_url else None
        self._supabase_secret = supabase_secret
        self._jwks = jwks
        self._leeway = leeway_seconds
        self._verified: TTLCache[str, Principal] = TTLCache(
            VERIFIED_CACHE_SIZE, VERIFIED_CACHE_SECONDS
        )

    async def verify(self, token: str) -> Principal:
        """Return the principal of a valid token, or raise InvalidToken saying why not."""
        known = self._verified.get(token)
        if known is not None:
            if known.claims["exp"] + self._leeway > time.time():
                return known
            self._verified.pop(token, None)  # expired since: verified again, and refused
        principal = await self._verify(token)
        self._verified[token] = principal
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken("The access token is malformed.") from exc
        if any(name in header for name in FORBIDDEN_HEADERS):
            raise InvalidToken("Tokens that name their own key (jku, jwk, x5u, x5c) are refused.")

        issuer = unverified.get("iss")
        if issuer == self._builtin_issuer:
            claims = self._decode(token, self._builtin_key, "HS256", issuer)
            return _principal(claims, "zyron")
        key, algorithm = await self._supabase_key(header, issuer)
        claims = self._decode(token, key, algorithm, self._supabase_issuer)
        return _principal(claims, "supabase")

    async def _supabase_key(self, header: dict[str, Any], issuer: object) -> tuple[Any, str]:
        """Find the Supabase key for this token, or refuse it."""
        if self._supabase_issuer is None and self._supabase_secret is None:
            raise InvalidToken("The token's issuer is not trusted by this server.")
        if self._supabase_issuer is not None and issuer != self._supabase_issuer:
            raise InvalidToken("The token's issuer is not trusted by this server.")
        # The header's alg only selects between the project's keys; each key has one algorithm.
        if header.get("alg") == "HS256":
            if self._supabase_secret is None:
                raise InvalidToken("HS256 Supabase tokens need SUPABASE_JWT_SECRET on the server.")
            return self._supabase_secret, "HS256"
        kid = header.get("kid")
        if self._jwks is None or not isinstance(kid, str):
            raise InvalidToken("The token's signing key is unknown.")
        try:
            jwk = await self._jwks.get(kid)
        except JwksUnavailable as exc:
            raise AuthUnavailable() from exc
        if jwk is None:
            raise InvalidToken("The token's signing key is unknown.")
        return jwk.key, jwk.algorithm_name

    def _decode(self, token: str, key: Any, algorithm: str, issuer: str | None) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=AUDIENCE,
                issuer=issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS + (["iss"] if issuer else [])},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("The access token has expired; refresh it.") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"The access token is invalid: {exc}.") from exc
        return claims


def _principal(claims: dict[str, Any], issuer: str) -> Principal:
    """Check the claims Zyron relies on and build the principal."""
    if claims.get("role", ROLE) != ROLE:
        raise InvalidToken("Only tokens of signed-in users (role 'authenticated') are accepted.")
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise InvalidToken("The token's subject is not a user id.") from exc
    email = claims.get("email")
    if not isinstance(email, str) or not email or len(email) > MAX_EMAIL_LENGTH:
        email = None  # phone or anonymous sign-ins carry none; an oversized one is not stored
    return Principal(
        user_id=user_id,
        email=email.lower() if email else None,
        issuer="zyron" if issuer == "zyron" else "supabase",
        claims=claims,
    )
