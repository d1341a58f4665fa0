"""OIDC bearer tokens (JWTs from the team's identity provider), verified against its JWKS.

A token counts when its signature verifies with a key of the issuer's JWKS (by `kid`), under an
allowed asymmetric algorithm (RS256, ES256, EdDSA; never `none` nor HS*, whatever the token's
header says), and its `iss`, `aud` and `exp` are the configured issuer, the audience and not
past. The person is the configured identity claim; the break-glass role is a configured value in
the roles claim.

The JWKS is cached for `cache_seconds`; a token naming an unknown `kid` (the provider rotated
its keys) refreshes it early, at most once every `min_refresh_seconds`, so forged kids cannot
make the service hammer the provider.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from shared.identity import normalise

ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
MAX_JWKS_BYTES = 1 * 2**20


class OidcError(Exception):
    """Why a token is refused (401), or the JWKS cannot be had (503); never contains the token."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def fetch_jwks(url: str, timeout: float = 5.0) -> dict:
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise OidcError(f"cannot fetch the issuer's JWKS ({type(exc).__name__})", 503) from None
    if len(response.content) > MAX_JWKS_BYTES:
        raise OidcError("the issuer's JWKS is larger than 1 MiB", 503)
    try:
        data = response.json()
    except ValueError:
        raise OidcError("the issuer's JWKS is not JSON", 503) from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise OidcError("the issuer's JWKS has no `keys` list", 503)
    return data


class JwksCache:
    def __init__(self, url: str, cache_seconds: float = 300.0, min_refresh_seconds: float = 30.0,
                 fetch: Callable[[str], dict] = fetch_jwks, clock: Callable[[], float] = time.monotonic) -> None:
        self.url, self.cache_seconds, self.min_refresh_seconds = url, cache_seconds, min_refresh_seconds
        self._fetch, self._clock = fetch, clock
        self._keys: dict[str, dict] = {}
        self._fetched: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> dict:
        """The JWK named `kid`; OidcError when the issuer has none such (after a bounded refresh)."""
        with self._lock:
            now = self._clock()
            stale = self._fetched is None or now - self._fetched >= self.cache_seconds
            may_refresh = self._fetched is None or now - self._fetched >= self.min_refresh_seconds
            if stale or (kid not in self._keys and may_refresh):
                self._keys = {str(k["kid"]): k for k in self._fetch(self.url)["keys"]
                              if isinstance(k, dict) and "kid" in k}
                self._fetched = now
            found = self._keys.get(kid)
        if found is None:
            raise OidcError(f"the token's signing key (kid {kid[:64]!r}) is not in the issuer's JWKS")
        return found


@dataclass(frozen=True)
class Claims:
    identity: str
    roles: frozenset[str]


class OidcVerifier:
    def __init__(self, *, issuer: str, audience: str, jwks: JwksCache, identity_claim: str = "preferred_username",
                 roles_claim: str = "roles", algorithms: Sequence[str] = ("RS256", "ES256", "EdDSA"),
                 leeway: float = 30.0) -> None:
        refused = [a for a in algorithms if a not in ALLOWED_ALGORITHMS]
        if refused or not algorithms:
            raise ValueError(f"OIDC algorithms {refused or '[]'} are not allowed; use some of "
                             f"{', '.join(ALLOWED_ALGORITHMS)} (never none or HS*)")
        self.issuer, self.audience, self.jwks = issuer, audience, jwks
        self.identity_claim, self.roles_claim = identity_claim, roles_claim
        self.algorithms, self.leeway = tuple(algorithms), leeway

    def verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise OidcError("the bearer token is neither an API token nor a well-formed JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.algorithms:
            raise OidcError(f"the token's algorithm {str(alg)[:16]!r} is not allowed "
                            f"(allowed: {', '.join(self.algorithms)})")
        if not isinstance(kid, str) or not kid:
            raise OidcError("the token's header names no signing key (kid)")
        jwk = self.jwks.key(kid)
        if jwk.get("kty") != _KEY_TYPES[alg[:2]] or jwk.get("alg", alg) != alg:
            raise OidcError(f"the signing key {kid[:64]!r} is not a key for {alg}")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
            claims = jwt.decode(token, key=key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                                leeway=self.leeway, options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise OidcError("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise OidcError(f"the token is not for this service (audience must be {self.audience!r})") from None
        except jwt.InvalidIssuerError:
            raise OidcError(f"the token was not issued by {self.issuer!r}") from None
        except jwt.PyJWTError as exc:
            raise OidcError(f"the token is not valid ({type(exc).__name__})") from None
        return Claims(self._identity(claims), _roles(claims.get(self.roles_claim)))

    def _identity(self, claims: dict[str, Any]) -> str:
        identity = claims.get(self.identity_claim)
        if not isinstance(identity, str) or not identity.strip():
            raise OidcError(f"the token has no {self.identity_claim!r} claim naming the person")
        if normalise(identity) != identity:
            # Folding would make another account ('Ａlice', 'ALICE ') the known user alice: an
            # identity provider's name is taken only as it is, already in normal form.
            raise OidcError(f"the token's {self.identity_claim!r} claim is not in normal form (NFKC, lower "
                            "case, no surrounding spaces): it is not taken as any user")
        return identity


def _roles(value: Any) -> frozenset[str]:
    """A roles claim as a list of strings, or one space-separated string (OAuth scope style)."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()
