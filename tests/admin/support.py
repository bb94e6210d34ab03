"""Helpers of the admin tests: admins made in the database, requests, the error shape."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.support import Account, LiveServer, signup

# Every route of the admin API, with a body where it takes one (the 404 tests send each).
ADMIN_ROUTES: tuple[tuple[str, str, dict[str, Any] | None], ...] = (
    ("GET", "/admin/users", None),
    ("GET", "/admin/users/{user_id}", None),
    ("PATCH", "/admin/users/{user_id}", {"disabled": True}),
    ("GET", "/admin/users/{user_id}/limits", None),
    ("PATCH", "/admin/users/{user_id}/limits", {"daily_tokens": 1}),
    ("DELETE", "/admin/users/{user_id}/limits", None),
    ("GET", "/admin/usage", None),
)


def make_admin(server: LiveServer, client: httpx.Client) -> Account:
    """Sign up an account and make it an admin in its row (before its token is ever used)."""
    account = signup(client)
    promote(server, account)
    return account


def promote(server: LiveServer, account: Account, role: str = "admin") -> None:
    """Set an account's role in the database directly, as the superuser."""
    server.query(
        "UPDATE users SET role = :role WHERE id = :id", role=role, id=server.id(account.id)
    )


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    """Check the status and the one error shape; return the detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code, body
    detail: str = body["detail"]
    return detail


def until(check: Any, seconds: float = 5.0) -> httpx.Response:
    """Call `check` until its answer is no longer a 2xx, for up to `seconds`; the last answer.

    A change announced through Redis reaches another replica by a subscriber task of its own:
    the request right after the change may be served a moment before it. Not told at all, the
    replica would answer as before for KNOWN_USERS_TTL_SECONDS (5 minutes), so a few seconds
    still tell a replica that hears from one that does not.
    """
    deadline = time.monotonic() + seconds
    while True:
        response: httpx.Response = check()
        if not 200 <= response.status_code < 300 or time.monotonic() > deadline:
            return response
        time.sleep(0.02)


def until_ok(check: Any, seconds: float = 5.0) -> httpx.Response:
    """Call `check` until it answers a 2xx, for up to `seconds`; the last answer."""
    deadline = time.monotonic() + seconds
    while True:
        response: httpx.Response = check()
        if 200 <= response.status_code < 300 or time.monotonic() > deadline:
            return response
        time.sleep(0.02)
