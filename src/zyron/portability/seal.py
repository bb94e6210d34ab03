"""Seals of reasoning signatures: an import trusts a signature only if this server exported it.

A signature goes back to the provider with its thinking, and one the provider refuses fails
every later reply of that session. The export adds `seal`, an HMAC (keyed from SECRET_KEY) of
the part's provider, text, signature and redacted data; an import keeps a signature only
when its seal is this server's and nothing it covers changed. docs/export-import.md.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

_PURPOSE = b"zyron.export.reasoning.v1\x00"
_SIGNED = ("signature", "redacted")


def _mac(key: str, part: Mapping[str, Any]) -> str:
    covered = orjson.dumps(
        [part.get("provider"), part.get("text"), part.get("signature"), part.get("redacted")]
    )
    return hmac.new(key.encode(), _PURPOSE + covered, hashlib.sha256).hexdigest()


def sealed(key: str, part: dict[str, Any]) -> dict[str, Any]:
    """Return a stored part as exported: a signed reasoning part gets its seal."""
    if part.get("type") != "reasoning" or not any(part.get(name) for name in _SIGNED):
        return part
    return {**part, "seal": _mac(key, part)}


def unsealed(key: str, part: dict[str, Any]) -> dict[str, Any]:
    """Return an imported part as stored: its signature kept only under a valid seal."""
    if part.get("type") != "reasoning":
        return part
    seal = part.get("seal")
    kept = {name: value for name, value in part.items() if name != "seal"}
    if isinstance(seal, str) and hmac.compare_digest(seal, _mac(key, kept)):
        return kept
    # Not this server's, or altered since: the thinking stays readable, never sent back.
    return {name: value for name, value in kept.items() if name not in _SIGNED}
