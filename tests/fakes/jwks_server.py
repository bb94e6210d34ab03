"""Fake Supabase Auth JWKS endpoint: a real local HTTP server, and a signer of Supabase tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = [
    "JWKS_PATH",
    "AsymmetricAlg",
    "JwksServer",
    "SigningKey",
    "b64url",
    "hmac_token",
    "unsigned_token",
]

JWKS_PATH = "/auth/v1/.well-known/jwks.json"

AsymmetricAlg = Literal["ES256", "RS256"]


def b64url(data: bytes) -> str:
    """Encode bytes as unpadded base64url, as JWS does."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(part: Mapping[str, Any]) -> str:
    return b64url(json.dumps(dict(part), separators=(",", ":")).encode())


def unsigned_token(header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """Build a JWS with an empty signature by hand (for `alg: none`)."""
    return f"{_segment(header)}.{_segment(claims)}."


def hmac_token(header: Mapping[str, Any], claims: Mapping[str, Any], secret: bytes) -> str:
    """Build an HMAC-SHA256 JWS by hand; PyJWT refuses PEM keys as HMAC secrets, attackers don't."""
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@dataclass(frozen=True)
class SigningKey:
    """A private key with its `kid` and the one algorithm it signs with."""

    kid: str
    alg: AsymmetricAlg
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    @classmethod
    def generate(cls, alg: AsymmetricAlg, kid: str | None = None) -> SigningKey:
        """Create a fresh P-256 (ES256) or RSA 2048 (RS256) key."""
        private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if alg == "ES256":
            private_key = ec.generate_private_key(ec.SECP256R1())
        else:
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(kid=kid or str(uuid.uuid4()), alg=alg, private_key=private_key)

    def public_jwk(self) -> dict[str, Any]:
        """Return the public JWK as Supabase publishes it (alg, kid, use, key_ops)."""
        public = self.private_key.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "alg": self.alg, "kid": self.kid, "use": "sig", "key_ops": ["verify"]}

    def public_pem(self) -> bytes:
        """Return the public key as SubjectPublicKeyInfo PEM (the algorithm-confusion secret)."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: JwksServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    timeout = 10.0

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""

    def do_GET(self) -> None:
        """Serve the key set; everything else is a 404."""
        owner = cast(_HttpServer, self.server).owner
        if self.path.split("?", 1)[0] != JWKS_PATH:
            self._send(404, {"error": "not_found"})
            return
        self._send(200, owner.record_fetch())

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        payload = json.dumps(dict(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class JwksServer:
    """A Supabase project's signing keys served at `{base_url}/auth/v1/.well-known/jwks.json`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._published: dict[str, SigningKey] = {}
        self._fetch_count = 0
        self.es256 = self.add_key("ES256")
        self.rs256 = self.add_key("RS256")
        # The legacy HS256 "JWT secret" of the project (SUPABASE_JWT_SECRET).
        self.jwt_secret = secrets.token_urlsafe(48)
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Return the value to use as SUPABASE_URL."""
        if self._server is None:
            raise RuntimeError("JwksServer is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def issuer(self) -> str:
        """Return the `iss` Supabase Auth puts in its tokens."""
        return f"{self.base_url}/auth/v1"

    @property
    def fetch_count(self) -> int:
        """Return how many times the key set has been fetched."""
        with self._lock:
            return self._fetch_count

    def record_fetch(self) -> dict[str, Any]:
        """Count one fetch and return the published key set."""
        with self._lock:
            self._fetch_count += 1
            return {"keys": [key.public_jwk() for key in self._published.values()]}

    def add_key(self, alg: AsymmetricAlg, kid: str | None = None) -> SigningKey:
        """Generate a key and publish it (a key rotation adds the new key first)."""
        key = SigningKey.generate(alg, kid)
        with self._lock:
            self._published[key.kid] = key
        return key

    def remove_key(self, kid: str) -> None:
        """Stop publishing a key (the end of a rotation)."""
        with self._lock:
            self._published.pop(kid, None)

    def start(self) -> JwksServer:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        if self._server is None:
            self._server = _HttpServer(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"fake-jwks-{self._server.server_port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> JwksServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def claims(
        self, overrides: Mapping[str, Any] | None = None, omit: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Return the claims of a Supabase access token for a new user, with changes."""
        now = int(time.time())
        sub = str(uuid.uuid4())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": "authenticated",
            "exp": now + 3600,
            "iat": now,
            "email": f"supa-{sub[:12]}@example.com",
            "phone": "",
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {},
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": str(uuid.uuid4()),
            "is_anonymous": False,
        }
        claims.update(overrides or {})
        for name in omit:
            claims.pop(name, None)
        return claims

    def sign(
        self,
        alg: Literal["ES256", "RS256", "HS256"],
        claims_overrides: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, Any] | None = None,
        key: SigningKey | str | None = None,
        omit: Iterable[str] = (),
    ) -> str:
        """Sign a Supabase-shaped token: ES256/RS256 with a JWKS key, HS256 with the JWT secret."""
        claims = self.claims(claims_overrides, omit)
        if alg == "HS256":
            secret = key if isinstance(key, str) else self.jwt_secret
            return jwt.encode(claims, secret, algorithm="HS256", headers=dict(headers or {}))
        signer = (
            key if isinstance(key, SigningKey) else (self.es256 if alg == "ES256" else self.rs256)
        )
        all_headers = {"kid": signer.kid, "typ": "JWT", **(headers or {})}
        return jwt.encode(claims, signer.private_key, algorithm=alg, headers=all_headers)
