"""Built-in accounts over real HTTP: signup, login, refresh rotation, logout, /auth/me."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jwt
import pytest

from tests.support import PASSWORD, Account, LiveServer, signup, unique_email


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check an error response: status, JSON `{"error","detail"}` shape and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def assert_unauthorized(response: httpx.Response, code: str) -> dict[str, Any]:
    """Check a 401 with the error shape and a Bearer challenge."""
    body = assert_error(response, 401, code)
    assert response.headers["www-authenticate"].startswith("Bearer"), response.headers
    return body


def login(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    """POST /auth/login."""
    return client.post("/auth/login", json={"email": email, "password": password})


def refresh(client: httpx.Client, token: str) -> httpx.Response:
    """POST /auth/refresh."""
    return client.post("/auth/refresh", json={"refresh_token": token})


def bearer(token: str) -> dict[str, str]:
    """Return an Authorization header for an access token."""
    return {"Authorization": f"Bearer {token}"}


def user_row(server: LiveServer, email: str) -> tuple[Any, ...]:
    """Return the whole `users` row for an email."""
    rows = server.query("select * from users where email = :e", e=email)
    assert len(rows) == 1, rows
    return rows[0]


def test_signup_returns_tokens_and_user(client: httpx.Client, server: LiveServer) -> None:
    """Signup answers 201 with a bearer token pair and the new user."""
    email = unique_email("signup")
    users_before = server.count("users")

    response = client.post("/auth/signup", json={"email": email, "password": PASSWORD})

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert isinstance(body["access_token"], str)
    assert body["access_token"].count(".") == 2
    assert isinstance(body["refresh_token"], str)
    assert len(body["refresh_token"]) >= 32
    user = body["user"]
    assert {"id", "email", "display_name", "created_at"} <= set(user)
    assert "password_hash" not in user
    assert user["email"] == email
    uuid.UUID(user["id"])
    assert server.count("users") == users_before + 1


def test_login_returns_a_new_pair(client: httpx.Client) -> None:
    """Login answers 200 with the same shape and a different login session."""
    account = signup(client)

    response = login(client, account.email)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["user"]["id"] == str(account.id)
    assert body["refresh_token"] != account.refresh_token
    first = jwt.decode(account.access_token, options={"verify_signature": False})
    second = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert first["session_id"] != second["session_id"]


def test_email_is_case_insensitive(client: httpx.Client, server: LiveServer) -> None:
    """An email is stored lower-cased and matched whatever its case."""
    local = f"Case-{uuid.uuid4().hex[:10]}"
    mixed = f"{local}@Example.COM"
    lower = mixed.lower()

    account = signup(client, mixed)

    assert account.email == lower
    user_row(server, lower)
    response = login(client, lower)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == str(account.id)
    response = login(client, lower.upper())
    assert response.status_code == 200, response.text
    users_before = server.count("users")
    taken = client.post("/auth/signup", json={"email": lower.swapcase(), "password": PASSWORD})
    assert_error(taken, 409, "email_taken")
    assert server.count("users") == users_before


@pytest.mark.parametrize(
    "email", ["not-an-email", "missing@", "@example.com", "two@@example.com", ""]
)
def test_signup_rejects_an_invalid_email(
    client: httpx.Client, server: LiveServer, email: str
) -> None:
    """An invalid email is a 422 naming the field, and nothing is written."""
    before = server.counts()

    response = client.post("/auth/signup", json={"email": email, "password": PASSWORD})

    body = assert_error(response, 422, "validation_error")
    assert "email" in body["detail"]
    assert server.counts() == before


def test_signup_rejects_a_short_password(client: httpx.Client, server: LiveServer) -> None:
    """A password under 8 characters is a 422 naming the field, and nothing is written."""
    before = server.counts()

    response = client.post("/auth/signup", json={"email": unique_email(), "password": "short"})

    body = assert_error(response, 422, "validation_error")
    assert "password" in body["detail"]
    assert server.counts() == before


def test_signup_rejects_malformed_json(client: httpx.Client) -> None:
    """A body that is not JSON is a 422 `invalid_json`."""
    response = client.post(
        "/auth/signup", content=b'{"email": ', headers={"Content-Type": "application/json"}
    )

    assert_error(response, 422, "invalid_json")


def test_wrong_password_and_unknown_email_look_the_same(client: httpx.Client) -> None:
    """Wrong password and unknown email both give the same 401, so emails cannot be probed."""
    account = signup(client)

    wrong_password = login(client, account.email, "not the password at all")
    unknown_email = login(client, unique_email("nobody"))

    first = assert_unauthorized(wrong_password, "invalid_credentials")
    second = assert_unauthorized(unknown_email, "invalid_credentials")
    assert first == second
    assert wrong_password.headers["www-authenticate"] == unknown_email.headers["www-authenticate"]


def test_access_token_is_shaped_like_supabase(client: httpx.Client, server: LiveServer) -> None:
    """The access token is HS256 with SECRET_KEY and carries Supabase's claims."""
    account = signup(client)

    header = jwt.get_unverified_header(account.access_token)
    claims = jwt.decode(account.access_token, options={"verify_signature": False})

    assert header["alg"] == "HS256"
    assert claims["sub"] == str(account.id)
    assert claims["role"] == "authenticated"
    assert claims["aud"] == "authenticated"
    assert claims["iss"] == server.settings.token_issuer
    assert claims["email"] == account.email
    uuid.UUID(claims["session_id"])
    assert isinstance(claims["iat"], int)
    assert claims["exp"] - claims["iat"] == 900
    # The signature really is made with the server's key (not merely any HS256 token).
    verified = jwt.decode(
        account.access_token,
        server.settings.signing_key(),
        algorithms=["HS256"],
        audience="authenticated",
    )
    assert verified["sub"] == str(account.id)


def test_me_returns_the_signed_in_user(client: httpx.Client) -> None:
    """GET /auth/me returns the token's user."""
    account = signup(client)

    response = client.get("/auth/me", headers=account.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == str(account.id)
    assert body["email"] == account.email
    assert "password_hash" not in body


def test_me_without_a_token_is_401(client: httpx.Client) -> None:
    """GET /auth/me with no Authorization header is a 401 `not_authenticated`."""
    assert_unauthorized(client.get("/auth/me"), "not_authenticated")


def test_refresh_rotates_the_pair(client: httpx.Client) -> None:
    """A refresh gives a new working pair in the same login session; the old token is spent."""
    account = signup(client)

    response = refresh(client, account.refresh_token)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["refresh_token"] != account.refresh_token
    assert body["user"]["id"] == str(account.id)
    old = jwt.decode(account.access_token, options={"verify_signature": False})
    new = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert new["session_id"] == old["session_id"]
    me = client.get("/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == str(account.id)
    assert_unauthorized(refresh(client, account.refresh_token), "invalid_refresh_token")


def test_refresh_reuse_revokes_the_family(client: httpx.Client) -> None:
    """Presenting a used refresh token revokes its whole family, not other logins."""
    account = signup(client)
    other_login = login(client, account.email)
    assert other_login.status_code == 200, other_login.text
    other_refresh = other_login.json()["refresh_token"]
    second = refresh(client, account.refresh_token)
    assert second.status_code == 200, second.text
    third = refresh(client, second.json()["refresh_token"])
    assert third.status_code == 200, third.text
    newest = third.json()["refresh_token"]

    # The first token was spent: someone holds a stolen copy, or a client replays it.
    reuse = refresh(client, account.refresh_token)

    assert_unauthorized(reuse, "invalid_refresh_token")
    assert_unauthorized(refresh(client, newest), "invalid_refresh_token")
    still_working = refresh(client, other_refresh)
    assert still_working.status_code == 200, still_working.text
    assert still_working.json()["user"]["id"] == str(account.id)


def test_logout_ends_the_login_session(client: httpx.Client) -> None:
    """Logout answers 204 and that session's refresh token stops working; others keep working."""
    account = signup(client)
    other = login(client, account.email)
    assert other.status_code == 200, other.text

    response = client.post("/auth/logout", headers=account.headers)

    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_unauthorized(refresh(client, account.refresh_token), "invalid_refresh_token")
    kept = refresh(client, other.json()["refresh_token"])
    assert kept.status_code == 200, kept.text


def test_logout_without_a_token_is_401(client: httpx.Client) -> None:
    """Logout needs the access token of the session it ends."""
    assert_unauthorized(client.post("/auth/logout"), "not_authenticated")


@pytest.mark.parametrize(
    "token", ["garbage", "x" * 43, "a.b.c", "0" * 512], ids=["word", "urlsafe", "jwt", "long"]
)
def test_unknown_refresh_token_is_401(client: httpx.Client, token: str) -> None:
    """A refresh token the server never issued is a 401 `invalid_refresh_token`."""
    assert_unauthorized(refresh(client, token), "invalid_refresh_token")


def test_empty_refresh_token_is_422(client: httpx.Client) -> None:
    """An empty refresh token is a validation error naming the field."""
    body = assert_error(refresh(client, ""), 422, "validation_error")
    assert "refresh_token" in body["detail"]


def test_an_access_token_is_not_a_refresh_token(client: httpx.Client) -> None:
    """The access token cannot be exchanged as if it were a refresh token."""
    account = signup(client)

    assert_unauthorized(refresh(client, account.access_token), "invalid_refresh_token")


def test_password_is_stored_as_argon2id(client: httpx.Client, server: LiveServer) -> None:
    """The password is kept only as an argon2id hash, never in clear."""
    account = signup(client)

    rows = server.query("select password_hash from users where email = :e", e=account.email)

    assert len(rows) == 1
    password_hash = rows[0][0]
    assert isinstance(password_hash, str)
    assert password_hash.startswith("$argon2id$")
    assert all(PASSWORD not in str(value) for value in user_row(server, account.email))


def test_refresh_tokens_are_stored_hashed(client: httpx.Client, server: LiveServer) -> None:
    """No column of refresh_tokens holds a raw refresh token."""
    account: Account = signup(client)
    rotated = refresh(client, account.refresh_token)
    assert rotated.status_code == 200, rotated.text
    raw_tokens = [account.refresh_token, rotated.json()["refresh_token"]]

    rows = server.query("select * from refresh_tokens")

    assert len(rows) >= 2
    stored = [str(value) for row in rows for value in row]
    for raw in raw_tokens:
        assert all(raw not in value for value in stored)


def test_token_of_a_deleted_account_is_401_not_500(
    server: LiveServer, client: httpx.Client
) -> None:
    """A validly signed token whose account no longer exists is refused cleanly."""
    account = signup(client)
    server.query("DELETE FROM users WHERE id = :i", i=server.id(account.id))
    for response in (
        client.post("/sessions", json={}, headers=account.headers),
        client.post("/chat", json={"message": "hi", "stream": False}, headers=account.headers),
        client.get("/auth/me", headers=account.headers),
    ):
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_token"
