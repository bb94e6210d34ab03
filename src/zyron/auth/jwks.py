"""Supabase's signing keys, fetched from its JWKS endpoint and cached."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWKError

log = logging.getLogger("zyron.auth.jwks")

# Asymmetric algorithms only: a public key must never be usable as an HMAC secret.
ALLOWED_ALGORITHMS = frozenset({"ES256", "RS256"})


class JwksUnavailable(Exception):
    """The key set has never been fetched successfully."""


class JwksCache:
    """Keys by `kid`; an unknown `kid` refetches at most once per `min_refetch_seconds`."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        ttl_seconds: float,
        min_refetch_seconds: float,
    ) -> None:
        self.url = url
        self._http = http
        self._ttl = ttl_seconds
        self._min_refetch = min_refetch_seconds
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    async def get(self, kid: str) -> PyJWK | None:
        """Return the key named `kid`, fetching the set when it is stale or the kid is new."""
        now = time.monotonic()
        if self._fetched_at is None or now - self._fetched_at > self._ttl or kid not in self._keys:
            await self._refresh(force=False)
        if self._fetched_at is None and not self._keys:
            raise JwksUnavailable(f"could not fetch signing keys from {self.url}")
        return self._keys.get(kid)

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            now = time.monotonic()
            # Rate limit: tokens with made-up kids must not turn into a request flood.
            if (
                not force
                and self._attempted_at is not None
                and now - self._attempted_at < self._min_refetch
            ):
                return
            self._attempted_at = now
            self.fetch_count += 1
            try:
                response = await self._http.get(self.url, timeout=5.0)
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("jwks fetch failed", extra={"url": self.url, "reason": str(exc)})
                return
            self._keys = _parse_keys(document)
            self._fetched_at = now


def _parse_keys(document: Any) -> dict[str, PyJWK]:
    """Keep the usable asymmetric keys of a JWKS document, by `kid`."""
    keys: dict[str, PyJWK] = {}
    entries = document.get("keys", []) if isinstance(document, dict) else []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            jwk = PyJWK(entry)
        except PyJWKError:
            log.warning("jwks key skipped", extra={"kid": entry.get("kid")})
            continue
        if jwk.algorithm_name in ALLOWED_ALGORITHMS:
            keys[entry["kid"]] = jwk
    return keys
