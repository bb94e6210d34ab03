"""Schemathesis hooks for the runs of tests/api/test_schemathesis.py (schemathesis.toml names them).

The test sets the environment this module reads:

- ZYRON_ST_BASE_URL: the live server.
- ZYRON_ST_AUTH: signed-in runs only, a Web Fuzzing Commons auth document listing the users
  `owner` (every request goes as them) and `peer` (who must never see the owner's objects).
- ZYRON_ST_THROWAWAY_EMAIL, ZYRON_ST_THROWAWAY_PASSWORD: an account whose tokens and data the
  destructive operations use up, so a logout or a DELETE never ends the owner's session or takes
  away the ids every other operation is given.
- ZYRON_ST_KEEP: the ids of the owner's sessions and file that other operations rely on (the
  session of the reply schemathesis.toml gives, the /ui/chat chat's); a DELETE of one of them
  deletes a fresh object of the throwaway's instead.
- ZYRON_ST_REFRESH_TOKEN: the refresh token schemathesis.toml gives POST /auth/refresh; it is
  sent as a fresh one of the throwaway's.
- ZYRON_ST_SHARE_ID, ZYRON_ST_SHARE_TOKEN, ZYRON_ST_SHARED_FILE_ID: a share link of the
  owner's and a file it shows, which schemathesis.toml gives GET /shared/{token} (and its
  files) and DELETE /shares/{id}; the share's id is in ZYRON_ST_KEEP, so a DELETE of it
  revokes a fresh link of the throwaway's.

- ZYRON_ST_ADMIN_TOKEN: an admin's access token; the owner's requests to the admin routes go
  as the admin (the peer's, a guest's and invalid ones go as they are, and answer 404).
- ZYRON_ST_KEEP_USERS: the accounts the run relies on (owner, peer, throwaway, admin): an admin
  change of one of them (PATCH, DELETE) acts on a fresh account instead, so the run never
  disables, demotes or limits an account it goes on using.

DELETE /auth/me never deletes an account the run keeps: each one signed in goes as an account
signed up for it alone, with that account's password in the body.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import date
from functools import cache
from typing import Any

import httpx
import schemathesis
from schemathesis import Case
from schemathesis.config._auth import WFCAuthConfig
from schemathesis.generation import GenerationMode
from schemathesis.hooks import HookContext
from schemathesis.schemas import BaseSchema
from schemathesis.wfc.integration import register_wfc_auth

from zyron.admin.schemas import MAX_USAGE_DAYS
from zyron.errors import InvalidInput
from zyron.search.query import parse

OWNER = "owner"
PEER = "peer"


# The server's MAX_SEARCH_QUERY_CHARS in the run (the default).
MAX_SEARCH_QUERY_CHARS = 256


def _env(name: str) -> str:
    return os.environ[name]


@cache
def _owner_authorization() -> str | None:
    """The owner's Authorization header, in signed-in runs."""
    path = os.environ.get("ZYRON_ST_AUTH")
    if not path:
        return None
    with open(path, encoding="utf-8") as document:
        users = json.load(document)["auth"]
    owner = next(user for user in users if user["name"] == OWNER)
    header = next(h for h in owner["fixedHeaders"] if h["name"] == "Authorization")
    value: str = header["value"]
    return value


@cache
def _budget_models() -> frozenset[str]:
    """The models that take a thinking budget (the default model is not one of them)."""
    listed = httpx.get(f"{_env('ZYRON_ST_BASE_URL')}/models", timeout=30).json()
    return frozenset(
        model["id"] for model in listed["models"] if "budget" in (model["reasoning_modes"] or [])
    )


@cache
def _kept() -> frozenset[str]:
    """Ids the run must not delete: other operations are given them."""
    return frozenset(_env("ZYRON_ST_KEEP").split(","))


def _throwaway_tokens() -> dict[str, Any]:
    """Sign the throwaway account in once more: a new session, with its own token pair."""
    response = httpx.post(
        f"{_env('ZYRON_ST_BASE_URL')}/auth/login",
        json={
            "email": _env("ZYRON_ST_THROWAWAY_EMAIL"),
            "password": _env("ZYRON_ST_THROWAWAY_PASSWORD"),
        },
        timeout=30,
    )
    response.raise_for_status()
    tokens: dict[str, Any] = response.json()
    return tokens


def _doomed_account() -> tuple[str, str]:
    """Sign up an account for one DELETE /auth/me; return its access token and password."""
    password = f"doomed-{uuid.uuid4().hex}"
    response = httpx.post(
        f"{_env('ZYRON_ST_BASE_URL')}/auth/signup",
        json={"email": f"doomed-{uuid.uuid4().hex[:16]}@example.com", "password": password},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"]), password


@cache
def _kept_authorizations() -> frozenset[str]:
    """The Authorization headers of the accounts the run keeps (the owner and the peer)."""
    path = os.environ.get("ZYRON_ST_AUTH")
    if not path:
        return frozenset()
    with open(path, encoding="utf-8") as document:
        users = json.load(document)["auth"]
    return frozenset(
        header["value"]
        for user in users
        for header in user["fixedHeaders"]
        if header["name"] == "Authorization"
    )


def _delete_a_doomed_account(case: Case[Any]) -> None:
    """Send DELETE /auth/me as a new account; a valid case confirms with its password."""
    token, password = _doomed_account()
    assert case.headers is not None
    case.headers["Authorization"] = f"Bearer {token}"
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return
    if any(part.mode == GenerationMode.NEGATIVE for part in meta.components.values()):
        return
    # The password is required of a built-in account: its description says so.
    case.body = {"password": password}


def _throwaway_resource(path: str, **request: Any) -> tuple[str, str]:
    """Create a resource as the throwaway account; return its id and the token that owns it."""
    token = _throwaway_tokens()["access_token"]
    response = httpx.post(
        f"{_env('ZYRON_ST_BASE_URL')}{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        **request,
    )
    response.raise_for_status()
    return str(response.json()["id"]), token


def _throwaway_share() -> tuple[str, str]:
    """Share a new conversation of the throwaway account; return the share's id and its token."""
    token = _throwaway_tokens()["access_token"]
    base, headers = _env("ZYRON_ST_BASE_URL"), {"Authorization": f"Bearer {token}"}
    chat = httpx.post(
        f"{base}/chat", json={"message": "to share", "stream": False}, headers=headers, timeout=30
    )
    chat.raise_for_status()
    share = httpx.post(
        f"{base}/sessions/{chat.json()['session_id']}/shares", headers=headers, timeout=30
    )
    share.raise_for_status()
    return str(share.json()["id"]), token


def _fresh_user() -> str:
    """Sign up an account for one admin change; return its id."""
    response = httpx.post(
        f"{_env('ZYRON_ST_BASE_URL')}/auth/signup",
        json={"email": f"target-{uuid.uuid4().hex[:16]}@example.com", "password": "target-pw-1"},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["user"]["id"])


def _as_admin(case: Case[Any], owner: str | None) -> None:
    """Send the owner's request to an admin route as the admin, never changing a kept account."""
    if owner is None or case.headers is None or case.headers.get("Authorization") != owner:
        return
    case.headers["Authorization"] = f"Bearer {_env('ZYRON_ST_ADMIN_TOKEN')}"
    kept = set(_env("ZYRON_ST_KEEP_USERS").split(","))
    changes = case.method.upper() in ("PATCH", "DELETE") and case.path_parameters is not None
    if changes and str(case.path_parameters.get("user_id")) in kept:
        case.path_parameters["user_id"] = _fresh_user()


@schemathesis.hook
def after_load_schema(context: HookContext, schema: BaseSchema) -> None:
    """Signed in: send every request as the owner, and let the peer probe the owner's objects."""
    path = os.environ.get("ZYRON_ST_AUTH")
    if path:
        # What `[auth.wfc]` in schemathesis.toml would do, kept out of it because the guest run
        # has no users: the config file is read by both runs.
        register_wfc_auth(schema, WFCAuthConfig(path=path, user=OWNER, peers=[OWNER, PEER]))


# What an upload or an inline attachment must hold to be accepted: the type is decided from
# the bytes (docs/attachments.md), which no schema can say; random bytes are a 415.
# A str, not bytes: schemathesis checks the changed case against the schema again, and a
# `format: binary` string is a string there.
VALID_FILE = "Notes from the fuzzer.\n"
VALID_INLINE = {"media_type": "text/plain", "data": base64.b64encode(VALID_FILE.encode()).decode()}
# What POST /import reads (docs/export-import.md): the format is told from the content, which
# no schema can say. A Claude.ai conversation: imported once, skipped (still a 200) after.
VALID_IMPORT = (
    '[{"uuid": "5c4e0000-0000-4000-8000-00000000f022", "name": "Fuzzed", '
    '"created_at": "2026-01-01T00:00:00Z", "chat_messages": [{"uuid": "m1", "sender": '
    '"human", "text": "Hello", "created_at": "2026-01-01T00:00:00Z"}]}]'
)


def _make_valid(case: Case[Any], signed_in: bool) -> None:
    """Give a positive case what the document states in words but no schema can express.

    Each rule below is described in the operation's or field's description; everything the
    schema does express is left as generated. Negative cases are left alone.
    """
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return
    if any(part.mode == GenerationMode.NEGATIVE for part in meta.components.values()):
        return
    body: Any = case.body  # JSON as generated
    label = case.operation.label
    if label == "GET /search" and case.query is not None:
        _searchable(case.query)
    if label == "GET /admin/usage" and case.query is not None:
        _date_range(case.query)
    if not isinstance(body, dict):
        return
    if label == "POST /files" and "file" in body:
        body["file"] = VALID_FILE
    if label == "POST /import" and "file" in body:
        body["file"] = VALID_IMPORT
    if label == "POST /chat":
        _chat_as(body, signed_in)
        if case.headers is not None and "Idempotency-Key" in case.headers:
            # A key names one request: a reused one with another body is a 422 (the IETF
            # Idempotency-Key draft), which depends on what the run sent before.
            case.headers["Idempotency-Key"] = str(uuid.uuid4())
    if label == "POST /ui/chat":
        _ui_question(body, signed_in)
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("budget_tokens") is not None:
        # Which models take a budget is per model (GET /models, `reasoning_modes`), and the
        # budget must be below max_tokens: a budget stays where both hold, else an effort.
        model = body.get("model") if label != "POST /chat/{message_id}/regenerate" else None
        max_tokens = body.get("max_tokens")
        fits = max_tokens is None or reasoning["budget_tokens"] < max_tokens
        if model not in _budget_models() or not fits:
            body["reasoning"] = {"effort": "low"}


def _searchable(query: dict[str, Any]) -> None:
    """A query with a word to look for, and no cursor but one a previous page gave."""
    try:
        parse(str(query.get("q", "")), MAX_SEARCH_QUERY_CHARS)
    except InvalidInput:
        query["q"] = "hello"  # only operators or excluded words: a 422 no schema can state
    query.pop("before", None)  # a cursor is opaque: only the server makes valid ones


def _date_range(query: dict[str, Any]) -> None:
    """A range of at most a year, `end` not before `start` (the description says so)."""
    try:
        start = date.fromisoformat(str(query["start"])) if "start" in query else None
        end = date.fromisoformat(str(query["end"])) if "end" in query else None
    except ValueError:
        return  # not a date: the schema's own business
    if start is not None and (end is None or not 0 <= (end - start).days < MAX_USAGE_DAYS):
        query["end"] = start.isoformat()


def _chat_as(body: dict[str, Any], signed_in: bool) -> None:
    """Signed in, files are attached by id; a guest sends them inline and has no branches."""
    attachments = body.get("attachments")
    if signed_in:
        if isinstance(body.get("parent_id"), str) and body.get("session_id") is None:
            body.pop("parent_id")  # a reply's id needs its session's
        if attachments:
            body["attachments"] = [item for item in attachments if not isinstance(item, dict)]
        return
    body.pop("parent_id", None)
    if attachments:
        inline = [item for item in attachments if isinstance(item, dict)]
        body["attachments"] = [{**item, **VALID_INLINE} for item in inline]


def _ui_question(body: dict[str, Any], signed_in: bool) -> None:
    """The messages end with the user's question, which has text.

    Signed in, a regenerate names the reply to replace instead (an id that does not exist
    is a 404); a guest's regenerate sends the question again.
    """
    messages = body.get("messages")
    regenerate = body.get("trigger") == "regenerate-message"
    if (regenerate and signed_in) or not isinstance(messages, list) or not messages:
        return
    last = messages[-1]
    if not isinstance(last, dict):
        return
    last["role"] = "user"
    parts = [p for p in last.get("parts") or [] if isinstance(p, dict) and p.get("type") != "file"]
    if not any(p.get("type") == "text" and str(p.get("text") or "").strip() for p in parts):
        parts.append({"type": "text", "text": "Hello"})
    last["parts"] = parts


@schemathesis.hook
def before_call(context: HookContext, case: Case[Any], kwargs: dict[str, Any]) -> None:
    """Valid data where only words can say it; destructive requests as the throwaway."""
    owner = _owner_authorization()
    _make_valid(case, signed_in=case.headers is not None and "Authorization" in case.headers)
    label = case.operation.label
    if label == "POST /auth/refresh":
        # A refresh token works once; a used one revokes its whole family.
        body = case.body
        if isinstance(body, dict) and body.get("refresh_token") == _env("ZYRON_ST_REFRESH_TOKEN"):
            body["refresh_token"] = _throwaway_tokens()["refresh_token"]
        return
    if label == "DELETE /auth/me":
        if case.headers is not None and case.headers.get("Authorization") in _kept_authorizations():
            _delete_a_doomed_account(case)
        return
    if case.operation.path.startswith("/admin/"):
        _as_admin(case, owner)
        return
    # Only the owner's requests: one sent without credentials or with invalid ones goes as it is.
    if owner is None or case.headers is None or case.headers.get("Authorization") != owner:
        return
    if label == "POST /auth/logout":
        token = _throwaway_tokens()["access_token"]
    elif label == "DELETE /sessions/{session_id}":
        if case.path_parameters.get("session_id") not in _kept():
            return
        new_id, token = _throwaway_resource("/sessions", json={"title": "to delete"})
        case.path_parameters["session_id"] = new_id
    elif label == "DELETE /files/{file_id}":
        if case.path_parameters.get("file_id") not in _kept():
            return
        upload = {"file": ("doomed.txt", b"to be deleted\n", "text/plain")}
        new_id, token = _throwaway_resource("/files", files=upload)
        case.path_parameters["file_id"] = new_id
    elif label == "DELETE /shares/{share_id}":
        if case.path_parameters.get("share_id") not in _kept():
            return
        new_id, token = _throwaway_share()
        case.path_parameters["share_id"] = new_id
    else:
        return
    case.headers["Authorization"] = f"Bearer {token}"
