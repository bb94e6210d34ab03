"""Bearer token verification: built-in, Supabase JWKS (ES256/RS256) and legacy HS256 tokens."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
import pytest
from argon2 import PasswordHasher, extract_parameters

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.jwks_server import JwksServer, SigningKey, hmac_token, unsigned_token
from tests.support import LiveServer, live_server, signup, unique_email
from zyron.auth.passwords import Passwords
from zyron.auth.tokens import issue_access_token
from zyron.auth.verify import TokenVerifier
from zyron.errors import InvalidToken
from zyron.settings import Settings

BUILTIN_ISSUER = "zyron"


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    """The Supabase project's key set, served over HTTP."""
    with JwksServer() as keys:
        yield keys


@pytest.fixture(scope="module")
def attacker() -> Iterator[JwksServer]:
    """Someone else's key set, which a token may try to point the server at."""
    with JwksServer() as keys:
        yield keys


def supabase_settings(
    backend: Backend,
    data_dir: Path,
    keys: JwksServer,
    upstream: FakeAnthropic,
    *,
    min_refetch: float,
) -> Settings:
    """Settings for a server that trusts the given Supabase project."""
    return backend.settings(
        data_dir,
        supabase_url=keys.base_url,
        supabase_jwt_secret=keys.jwt_secret,
        jwks_min_refetch_seconds=min_refetch,
        anthropic_api_key="sk-ant-test-key-never-logged",
        anthropic_base_url=upstream.base_url,
    )


@pytest.fixture(scope="module")
def zyron(
    backend: Backend,
    jwks: JwksServer,
    fake_anthropic: FakeAnthropic,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    """A server accepting built-in and Supabase tokens, refetching keys at most once a minute."""
    data_dir = tmp_path_factory.mktemp("zyron-tokens")
    settings = supabase_settings(backend, data_dir, jwks, fake_anthropic, min_refetch=60)
    with live_server(settings) as running:
        yield running


@pytest.fixture
def api(zyron: LiveServer, upstream: FakeAnthropic) -> Iterator[httpx.Client]:
    """An HTTP client for that server; the fake upstream starts each test clean."""
    with zyron.client() as http:
        yield http


def me(api: httpx.Client, token: str) -> httpx.Response:
    """GET /auth/me with a bearer token."""
    return api.get("/auth/me", headers={"Authorization": f"Bearer {token}"})


def assert_invalid_token(response: httpx.Response) -> None:
    """Check a 401 `invalid_token` with the error shape and a Bearer challenge."""
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer"), response.headers
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == "invalid_token", body
    assert body["detail"]


def builtin_claims(**overrides: Any) -> dict[str, Any]:
    """Return the claims of a built-in access token for a random user."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "role": "authenticated",
        "aud": "authenticated",
        "iss": BUILTIN_ISSUER,
        "iat": now,
        "exp": now + 900,
        "session_id": str(uuid.uuid4()),
        "email": unique_email("builtin"),
    }
    claims.update(overrides)
    return claims


# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_supabase_jwks_token_is_accepted(
    api: httpx.Client, jwks: JwksServer, alg: Literal["ES256", "RS256"]
) -> None:
    """A Supabase token signed with a key of the project's JWKS is accepted."""
    claims = jwks.claims()
    token = jwks.sign(alg, claims)

    response = me(api, token)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == claims["sub"]
    assert response.json()["email"] == claims["email"]


def test_legacy_hs256_supabase_token_is_accepted(api: httpx.Client, jwks: JwksServer) -> None:
    """A Supabase token signed with the project's legacy JWT secret is accepted."""
    claims = jwks.claims()

    response = me(api, jwks.sign("HS256", claims))

    assert response.status_code == 200, response.text
    assert response.json()["id"] == claims["sub"]


def test_builtin_token_is_accepted_next_to_supabase(api: httpx.Client) -> None:
    """The server's own accounts keep working when Supabase is configured."""
    account = signup(api)

    response = api.get("/auth/me", headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(account.id)


def test_token_expired_within_the_leeway_is_accepted(api: httpx.Client, jwks: JwksServer) -> None:
    """A few seconds of clock skew are tolerated."""
    now = int(time.time())
    claims = jwks.claims({"iat": now - 905, "exp": now - 5})

    response = me(api, jwks.sign("ES256", claims))

    assert response.status_code == 200, response.text


def test_supabase_user_gets_a_row_on_first_use(
    api: httpx.Client, zyron: LiveServer, jwks: JwksServer
) -> None:
    """The first request of a Supabase user creates their `users` row; they can then work."""
    email = unique_email("SUPA")
    claims = jwks.claims({"email": email})
    token = jwks.sign("ES256", claims)
    headers = {"Authorization": f"Bearer {token}"}
    assert zyron.query("select id from users where email = :e", e=email.lower()) == []

    first = me(api, token)

    assert first.status_code == 200, first.text
    assert first.json()["email"] == email.lower()
    rows = zyron.query("select id, password_hash from users where email = :e", e=email.lower())
    assert len(rows) == 1
    assert uuid.UUID(str(rows[0][0])) == uuid.UUID(claims["sub"])
    assert rows[0][1] is None
    users = zyron.count("users")
    assert me(api, token).status_code == 200
    assert zyron.count("users") == users

    created = api.post("/sessions", json={"title": "from supabase"}, headers=headers)

    assert created.status_code == 201, created.text
    assert created.json()["title"] == "from supabase"
    owners = {
        uuid.UUID(str(session_id)): uuid.UUID(str(user_id))
        for session_id, user_id in zyron.query("select id, user_id from chat_sessions")
    }
    assert owners[uuid.UUID(created.json()["id"])] == uuid.UUID(claims["sub"])
    listed = api.get("/sessions", headers=headers)
    assert listed.status_code == 200, listed.text
    assert [item["id"] for item in listed.json()] == [created.json()["id"]]


def test_supabase_user_with_a_builtin_accounts_email_is_someone_else(
    api: httpx.Client, zyron: LiveServer, jwks: JwksServer
) -> None:
    """A Supabase token carrying a built-in account's email never acts as that account."""
    account = signup(api)
    own = api.post("/sessions", json={"title": "built-in only"}, headers=account.headers)
    assert own.status_code == 201, own.text
    claims = jwks.claims({"email": account.email})
    headers = {"Authorization": f"Bearer {jwks.sign('ES256', claims)}"}

    response = api.get("/auth/me", headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == claims["sub"]
    assert response.json()["id"] != str(account.id)
    listed = api.get("/sessions", headers=headers)
    assert listed.status_code == 200, listed.text
    assert listed.json() == []
    assert api.get(f"/sessions/{own.json()['id']}", headers=headers).status_code == 404


def test_supabase_token_naming_a_builtin_account_id_is_refused(
    api: httpx.Client, zyron: LiveServer, jwks: JwksServer
) -> None:
    """A Supabase token whose `sub` is a built-in account's id never acts as that account."""
    account = signup(api)
    own = api.post("/sessions", json={"title": "mine"}, headers=account.headers)
    assert own.status_code == 201, own.text
    token = jwks.sign("ES256", {"sub": str(account.id), "email": account.email})
    headers = {"Authorization": f"Bearer {token}"}
    before = zyron.counts()

    assert_invalid_token(api.get("/auth/me", headers=headers))
    assert_invalid_token(api.get(f"/sessions/{own.json()['id']}", headers=headers))
    assert_invalid_token(api.delete(f"/sessions/{own.json()['id']}", headers=headers))

    assert zyron.counts() == before
    assert api.get(f"/sessions/{own.json()['id']}", headers=account.headers).status_code == 200


def test_oversized_email_claim_is_not_stored(
    api: httpx.Client, zyron: LiveServer, jwks: JwksServer
) -> None:
    """An email claim longer than any real address is dropped, not a database error."""
    claims = jwks.claims({"email": "x" * 400 + "@example.com"})
    response = me(api, jwks.sign("RS256", claims))
    assert response.status_code == 200, response.text
    assert response.json()["email"] is None
    rows = zyron.query("select email from users where id = :i", i=zyron.id(claims["sub"]))
    assert rows == [(None,)]


def test_supabase_user_cannot_log_in_with_a_password(api: httpx.Client, jwks: JwksServer) -> None:
    """A Supabase user's row has no password, so no password logs in as them."""
    claims = jwks.claims()
    assert me(api, jwks.sign("ES256", claims)).status_code == 200

    for password in ("x", "not a password: evens out the time of unknown emails"):
        response = api.post("/auth/login", json={"email": claims["email"], "password": password})
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_credentials"


# --- rejected ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forge:
    """What an attacker-side token factory may use."""

    jwks: JwksServer
    attacker: JwksServer
    builtin_key: str


def _tampered(forge: Forge) -> str:
    header, _, signature = forge.jwks.sign("ES256").split(".")
    payload = unsigned_token({}, forge.jwks.claims()).split(".")[1]
    return f"{header}.{payload}.{signature}"


def _tampered_hs256(forge: Forge) -> str:
    header, _, signature = forge.jwks.sign("HS256").split(".")
    payload = unsigned_token({}, forge.jwks.claims({"role": "service_role"})).split(".")[1]
    return f"{header}.{payload}.{signature}"


def _expired(alg: Literal["ES256", "RS256", "HS256"]) -> Callable[[Forge], str]:
    def make(forge: Forge) -> str:
        now = int(time.time())
        return forge.jwks.sign(alg, {"iat": now - 1000, "exp": now - 120})

    return make


def _attacker_key_as(forge: Forge, headers: dict[str, Any]) -> str:
    """Sign with the attacker's key under the project's kid, pointing at the attacker's key."""
    stolen_kid = SigningKey(forge.jwks.es256.kid, "ES256", forge.attacker.es256.private_key)
    return forge.jwks.sign("ES256", headers=headers, key=stolen_kid)


def _anon_key(forge: Forge) -> str:
    # The exact shape of a Supabase project's anon API key.
    now = int(time.time())
    claims = {"iss": "supabase", "ref": "abcdefghijklmnopqrst", "role": "anon"}
    return jwt.encode({**claims, "iat": now, "exp": now + 3600}, forge.jwks.jwt_secret, "HS256")


REJECTED: dict[str, Callable[[Forge], str]] = {
    "alg-none-with-project-kid": lambda f: unsigned_token(
        {"alg": "none", "typ": "JWT", "kid": f.jwks.es256.kid}, f.jwks.claims()
    ),
    "alg-none-without-kid": lambda f: unsigned_token(
        {"alg": "none", "typ": "JWT"}, f.jwks.claims()
    ),
    "alg-none-builtin": lambda f: unsigned_token({"alg": "none", "typ": "JWT"}, builtin_claims()),
    "hs256-with-es-public-pem": lambda f: hmac_token(
        {"alg": "HS256", "typ": "JWT", "kid": f.jwks.es256.kid},
        f.jwks.claims(),
        f.jwks.es256.public_pem(),
    ),
    "hs256-with-rs-public-pem": lambda f: hmac_token(
        {"alg": "HS256", "typ": "JWT", "kid": f.jwks.rs256.kid},
        f.jwks.claims(),
        f.jwks.rs256.public_pem(),
    ),
    "expired-es256": _expired("ES256"),
    "expired-rs256": _expired("RS256"),
    "expired-hs256": _expired("HS256"),
    "wrong-aud": lambda f: f.jwks.sign("ES256", {"aud": "service"}),
    "wrong-aud-hs256": lambda f: f.jwks.sign("HS256", {"aud": "anon"}),
    "wrong-iss": lambda f: f.jwks.sign("ES256", {"iss": "https://evil.example/auth/v1"}),
    "wrong-iss-hs256": lambda f: f.jwks.sign("HS256", {"iss": "https://evil.example/auth/v1"}),
    "no-iss": lambda f: f.jwks.sign("ES256", omit=["iss"]),
    "tampered-payload": _tampered,
    "tampered-payload-hs256": _tampered_hs256,
    "no-exp": lambda f: f.jwks.sign("ES256", omit=["exp"]),
    "no-exp-hs256": lambda f: f.jwks.sign("HS256", omit=["exp"]),
    "no-sub": lambda f: f.jwks.sign("ES256", omit=["sub"]),
    "sub-not-a-uuid": lambda f: f.jwks.sign("ES256", {"sub": "admin"}),
    "kid-of-the-rsa-key-on-es256": lambda f: f.jwks.sign(
        "ES256", headers={"kid": f.jwks.rs256.kid}
    ),
    "unknown-kid": lambda f: f.jwks.sign("ES256", key=SigningKey.generate("ES256")),
    "jku-to-attacker": lambda f: _attacker_key_as(
        f, {"jku": f"{f.attacker.base_url}/auth/v1/.well-known/jwks.json"}
    ),
    "jku-to-project": lambda f: f.jwks.sign(
        "ES256", headers={"jku": f"{f.jwks.base_url}/auth/v1/.well-known/jwks.json"}
    ),
    "jwk-embedded": lambda f: _attacker_key_as(f, {"jwk": f.attacker.es256.public_jwk()}),
    "x5u-to-attacker": lambda f: _attacker_key_as(f, {"x5u": f"{f.attacker.base_url}/cert.pem"}),
    "x5c-embedded": lambda f: _attacker_key_as(f, {"x5c": ["MIIBdGVzdA=="]}),
    "builtin-expired": lambda f: jwt.encode(
        builtin_claims(iat=int(time.time()) - 1000, exp=int(time.time()) - 120),
        f.builtin_key,
        "HS256",
    ),
    "builtin-wrong-aud": lambda f: jwt.encode(builtin_claims(aud="anon"), f.builtin_key, "HS256"),
    "builtin-no-exp": lambda f: jwt.encode(
        {k: v for k, v in builtin_claims().items() if k != "exp"}, f.builtin_key, "HS256"
    ),
    "builtin-wrong-secret": lambda f: jwt.encode(
        builtin_claims(), "not-the-server-secret-but-long-enough-1234", "HS256"
    ),
    "builtin-signed-with-supabase-secret": lambda f: jwt.encode(
        builtin_claims(), f.jwks.jwt_secret, "HS256"
    ),
    "builtin-issuer-es256": lambda f: f.jwks.sign("ES256", builtin_claims()),
    "supabase-signed-with-builtin-key": lambda f: f.jwks.sign("HS256", key=f.builtin_key),
    "anon-key": _anon_key,
    "anon-role-no-sub": lambda f: f.jwks.sign("HS256", {"role": "anon"}, omit=["sub"]),
    "anon-role": lambda f: f.jwks.sign("ES256", {"role": "anon"}),
    "service-role": lambda f: f.jwks.sign("HS256", {"role": "service_role"}),
    "not-a-jwt": lambda f: "not-a-jwt",
    "three-garbage-parts": lambda f: "abc.def.ghi",
}


@pytest.mark.parametrize("name", list(REJECTED))
def test_token_is_rejected(
    api: httpx.Client, zyron: LiveServer, jwks: JwksServer, attacker: JwksServer, name: str
) -> None:
    """A token that is not exactly right is a 401 `invalid_token`, and nothing is written."""
    token = REJECTED[name](Forge(jwks, attacker, zyron.settings.signing_key()))
    before = zyron.counts()

    response = me(api, token)

    assert_invalid_token(response)
    assert zyron.counts() == before
    # A key URL in a token is never followed.
    assert attacker.fetch_count == 0


@pytest.mark.parametrize(
    "scheme", ["Basic dXNlcjpwYXNzd29yZA==", "Token {token}", "{token}", "Bearer", ""]
)
def test_non_bearer_authorization_is_rejected(
    api: httpx.Client, jwks: JwksServer, scheme: str
) -> None:
    """An Authorization header that is not `Bearer <token>` is a 401, never a guest."""
    value = scheme.format(token=jwks.sign("ES256"))

    response = api.get("/auth/me", headers={"Authorization": value})

    assert_invalid_token(response)


def test_unknown_kids_refetch_the_keys_at_most_once(api: httpx.Client, jwks: JwksServer) -> None:
    """Tokens with made-up kids cause at most one JWKS fetch per minute, not one each."""
    before = jwks.fetch_count

    for _ in range(5):
        assert_invalid_token(me(api, jwks.sign("ES256", key=SigningKey.generate("ES256"))))

    assert jwks.fetch_count - before <= 1
    # The project's real keys keep working after the flood.
    assert me(api, jwks.sign("ES256")).status_code == 200


def test_rotated_key_is_accepted_after_one_refetch(
    backend: Backend, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    """A token signed with a key added to the JWKS after start is accepted after one refetch."""
    with JwksServer() as keys:
        settings = supabase_settings(backend, tmp_path, keys, fake_anthropic, min_refetch=0)
        with live_server(settings) as running, running.client() as http:
            assert me(http, keys.sign("ES256")).status_code == 200
            new_key = keys.add_key("ES256")
            before = keys.fetch_count

            response = me(http, keys.sign("ES256", key=new_key))

            assert response.status_code == 200, response.text
            assert keys.fetch_count == before + 1


# --- where the token comes from ---------------------------------------------------------------


def test_token_in_query_string_is_ignored_on_sessions(api: httpx.Client, jwks: JwksServer) -> None:
    """A valid token in the query string does not authenticate the request."""
    token = jwks.sign("ES256")

    response = api.get("/sessions", params={"access_token": token})

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "not_authenticated"


def test_token_in_query_string_makes_a_guest_chat(
    api: httpx.Client, zyron: LiveServer, jwks: JwksServer, upstream: FakeAnthropic
) -> None:
    """POST /chat with the token only in the query string is a guest chat: nothing saved."""
    token = jwks.sign("ES256")
    before = zyron.counts()

    response = api.post(
        "/chat", params={"access_token": token}, json={"message": "hi", "stream": False}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["saved"] is False
    assert body["session_id"] is None
    assert body["message"]["id"] is None
    assert body["message"]["content"] == "Hello, world!"
    assert len(upstream.requests) == 1
    assert zyron.counts() == before


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", ["expired-es256", "alg-none-with-project-kid", "not-a-jwt"])
def test_invalid_token_on_chat_is_401_not_a_guest(
    api: httpx.Client,
    zyron: LiveServer,
    jwks: JwksServer,
    attacker: JwksServer,
    upstream: FakeAnthropic,
    name: str,
    stream: bool,
) -> None:
    """A present but invalid token on POST /chat is a 401; the model is never called."""
    token = REJECTED[name](Forge(jwks, attacker, zyron.settings.signing_key()))
    before = zyron.counts()

    response = api.post(
        "/chat",
        json={"message": "hi", "stream": stream},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert_invalid_token(response)
    assert upstream.requests == []
    assert zyron.counts() == before


# --- passwords --------------------------------------------------------------------------------


class CountingHasher(PasswordHasher):
    """A real argon2 hasher (cheap parameters) that records what it verifies against."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        """Record the hash, then verify for real."""
        self.verified.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)


def test_unknown_email_still_costs_one_argon2_verification() -> None:
    """Checking a password without an account runs one real verification, as a real one does."""
    hasher = CountingHasher()
    passwords = Passwords(hasher)

    ok = asyncio.run(passwords.verify(None, "pw"))

    assert ok is False
    assert len(hasher.verified) == 1
    # Same argon2 parameters as a real account's hash, so the same work.
    assert extract_parameters(hasher.verified[0]) == extract_parameters(hasher.hash("pw"))


def test_password_verification_matches_only_the_right_password() -> None:
    """A real hash verifies its password and nothing else, with one verification each."""
    hasher = CountingHasher()
    passwords = Passwords(hasher)
    stored = asyncio.run(passwords.hash("right password"))

    right = asyncio.run(passwords.verify(stored, "right password"))
    wrong = asyncio.run(passwords.verify(stored, "wrong password"))

    assert stored.startswith("$argon2id$")
    assert (right, wrong) == (True, False)
    assert hasher.verified == [stored, stored]


def test_a_verified_token_is_served_from_the_cache_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second request skips the decode; past its expiry the token is refused all the same."""
    key = "k" * 48
    verifier = TokenVerifier(
        builtin_key=key,
        builtin_issuer=BUILTIN_ISSUER,
        supabase_url=None,
        supabase_secret=None,
        jwks=None,
        leeway_seconds=0,
    )
    token = issue_access_token(
        key=key,
        issuer=BUILTIN_ISSUER,
        user_id=uuid.uuid4(),
        email="cache@example.com",
        session_id=uuid.uuid4(),
        ttl_seconds=1,
    )
    decodes = 0
    real_decode = verifier._decode

    def counting(*args: Any) -> dict[str, Any]:
        nonlocal decodes
        decodes += 1
        return real_decode(*args)

    monkeypatch.setattr(verifier, "_decode", counting)
    first = asyncio.run(verifier.verify(token))
    assert asyncio.run(verifier.verify(token)) is first
    assert decodes == 1
    time.sleep(2.1)  # PyJWT reads the real clock: the token really expires
    with pytest.raises(InvalidToken, match="expired"):
        asyncio.run(verifier.verify(token))
