"""Argon2id password hashing, run off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    """Hash and verify passwords; a login for an unknown email costs the same as a real one."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        # argon2-cffi's default is argon2id with RFC 9106's low-memory profile.
        self._hasher = hasher or PasswordHasher()
        # Made now, so even the first login for an unknown email costs one verification only.
        self._dummy_hash = self._hasher.hash("not a password: evens out unknown emails' time")

    async def hash(self, password: str) -> str:
        """Return the argon2id hash of `password`."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Check `password` against `stored_hash`, spending the same time when there is none."""
        target = stored_hash or self._dummy_hash
        ok = await asyncio.to_thread(self._check, target, password)
        return ok and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """Tell whether the hash was made with weaker parameters than today's."""
        return self._hasher.check_needs_rehash(stored_hash)

    def _check(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
