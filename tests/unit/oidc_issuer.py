"""A stand-in OIDC provider for tests: real keys (RSA, EC P-256, Ed25519 from `cryptography`),
its JWKS served over real HTTP on a local port, and tokens minted as a provider mints them."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER, AUDIENCE = "https://idp.example.com/realms/ml", "signoff-review"


def _keys() -> dict[str, tuple[str, Any, dict]]:
    """kid -> (algorithm, private key, public JWK)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    return {
        "rsa-1": ("RS256", rsa_key, RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)),
        "ec-1": ("ES256", ec_key, ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)),
        "ed-1": ("EdDSA", ed_key, OKPAlgorithm.to_jwk(ed_key.public_key(), as_dict=True)),
    }


class Issuer:
    def __init__(self) -> None:
        self.keys = _keys()
        self.published = set(self.keys)  # the kids the JWKS lists
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                issuer.fetches += 1
                body = json.dumps(issuer.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.jwks_url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def jwks(self) -> dict:
        return {"keys": [{**jwk, "kid": kid, "use": "sig"} for kid, (_, _, jwk) in self.keys.items()
                         if kid in self.published]}

    def __enter__(self) -> Issuer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def mint(self, sub: str = "alice", kid: str = "rsa-1", *, ttl: float = 300, headers: dict | None = None,
             **claims: Any) -> str:
        alg, key, _ = self.keys[kid]
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + ttl, "preferred_username": sub,
                   **claims}
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=alg,
                          headers={"kid": kid, **(headers or {})})
