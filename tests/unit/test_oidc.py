"""OIDC tokens verified against the issuer's JWKS, served by a real local HTTP server: what a
provider issues is accepted; expired, for another audience or issuer, unsigned (alg none),
HMAC-signed with the public key as the secret, or signed with an unknown key is 401; the JWKS is
fetched again at most once per interval for an unknown key id."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.review_notifier.auth import BREAK_GLASS, Authenticator, Refusal
from services.review_notifier.oidc import JwksCache, OidcError, OidcVerifier
from shared.identity import Directory
from tests.unit.oidc_issuer import AUDIENCE, ISSUER, Issuer


@pytest.fixture(scope="module")
def issuer():
    with Issuer() as running:
        yield running


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier(issuer: Issuer, clock: Clock | None = None, **over) -> OidcVerifier:
    jwks = JwksCache(issuer.jwks_url, cache_seconds=300, min_refresh_seconds=30, clock=clock or Clock())
    return OidcVerifier(**{"issuer": ISSUER, "audience": AUDIENCE, "jwks": jwks, **over})


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1", "ed-1"])
def test_a_providers_token_is_accepted(issuer, kid):
    claims = verifier(issuer).verify(issuer.mint("bob", kid, roles=["signoff-break-glass", "other"]))
    assert claims.identity == "bob" and claims.roles == {"signoff-break-glass", "other"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hs256_with_the_public_key(issuer: Issuer) -> str:
    """The classic algorithm confusion: HMAC keyed with the RSA public key anyone can fetch."""
    public = issuer.keys["rsa-1"][1].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = _b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "preferred_username": "bob"}).encode())
    return f"{head}.{body}.{_b64(hmac.new(public, f'{head}.{body}'.encode(), hashlib.sha256).digest())}"


def _alg_none(issuer: Issuer) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "preferred_username": "bob"}, None,
                      algorithm="none", headers={"kid": "rsa-1"})


def _resigned_with_another_kid(issuer: Issuer) -> str:
    """Signed with the RSA key but naming the EC key: the key type does not fit the algorithm."""
    return issuer.mint("bob", "rsa-1", headers={"kid": "ec-1"})


@pytest.mark.parametrize(("token", "says"), [
    (lambda i: i.mint("bob", ttl=-120), "expired"),  # beyond the 30 s leeway
    (lambda i: i.mint("bob", aud="another-service"), "audience must be"),
    (lambda i: i.mint("bob", iss="https://evil.example.com"), "not issued by"),
    (lambda i: i.mint("bob", exp=None), "not valid"),  # no expiry at all
    (lambda i: i.mint("bob", preferred_username=None), "no 'preferred_username' claim"),
    (_alg_none, "algorithm 'none' is not allowed"),
    (_hs256_with_the_public_key, "algorithm 'HS256' is not allowed"),
    (lambda i: i.mint("bob", headers={"kid": "retired-9"}), "not in the issuer's JWKS"),
    (_resigned_with_another_kid, "is not a key for RS256"),
    (lambda i: i.mint("bob")[:-4] + "AAAA", "not valid"),  # the signature altered
    (lambda i: "not.a.jwt", "well-formed"),
])
def test_refused_tokens_are_401(issuer, token, says):
    with pytest.raises(OidcError, match=says) as refused:
        verifier(issuer).verify(token(issuer))
    assert refused.value.status == 401


def test_hs256_refused_even_if_configured_is_impossible(issuer):
    with pytest.raises(ValueError, match="not allowed"):
        verifier(issuer, algorithms=("RS256", "HS256"))


def test_an_unknown_kid_refreshes_the_jwks_at_most_once_per_interval(issuer):
    clock = Clock()
    check = verifier(issuer, clock)
    before = issuer.fetches
    check.verify(issuer.mint("bob"))
    forged = issuer.mint("bob", headers={"kid": "forged"})
    for _ in range(5):
        with pytest.raises(OidcError):
            check.verify(forged)
    assert issuer.fetches - before == 1  # the first fetch; the forged kid came within 30 s
    clock.now += 31
    with pytest.raises(OidcError):
        check.verify(forged)
    assert issuer.fetches - before == 2


def test_a_rotated_key_is_found_by_the_refresh(issuer):
    clock = Clock()
    check = verifier(issuer, clock)
    issuer.published = {"rsa-1"}
    try:
        check.verify(issuer.mint("bob"))
        with pytest.raises(OidcError, match="not in the issuer's JWKS"):
            check.verify(issuer.mint("bob", "ec-1"))
        issuer.published = {"rsa-1", "ec-1"}  # the provider rotates in a new key
        clock.now += 31
        assert check.verify(issuer.mint("bob", "ec-1")).identity == "bob"
    finally:
        issuer.published = set(issuer.keys)


def test_an_unreachable_jwks_is_503():
    jwks = JwksCache("http://127.0.0.1:9/certs")
    with pytest.raises(OidcError, match="cannot fetch") as refused:
        jwks.key("rsa-1")
    assert refused.value.status == 503


def authenticator(issuer: Issuer) -> Authenticator:
    return Authenticator(Directory(["alice", "bob", "carol", "erin"]), oidc=verifier(issuer))


def test_the_person_is_the_claim_as_it_is_and_known(issuer):
    person = authenticator(issuer).person(f"Bearer {issuer.mint('bob')}")
    assert (person.name, person.roles, person.credential) == ("bob", {"approver"}, "oidc")
    glass = authenticator(issuer).person(f"Bearer {issuer.mint('erin', roles=['signoff-break-glass'])}")
    assert BREAK_GLASS in glass.roles


@pytest.mark.parametrize(("name", "status"), [("c\u0430rol", 403), ("mallory", 403)])
def test_a_look_alike_or_unknown_claim_is_403(issuer, name, status):
    with pytest.raises(Refusal) as refused:
        authenticator(issuer).person(f"Bearer {issuer.mint(name)}")
    assert refused.value.status == status


@pytest.mark.parametrize("name", ["Bob", "\uff22ob", " bob", "BOB"])
def test_a_claim_not_in_normal_form_is_no_user(issuer, name):
    """Another account of the identity provider that differs by case, width or spaces does not
    become the known user bob by folding."""
    with pytest.raises(Refusal, match="not in normal form") as refused:
        authenticator(issuer).person(f"Bearer {issuer.mint(name)}")
    assert refused.value.status == 401


def test_a_jwt_without_oidc_configured_is_401(issuer):
    with pytest.raises(Refusal, match="OIDC is not configured") as refused:
        Authenticator(Directory(["bob"])).person(f"Bearer {issuer.mint('bob')}")
    assert refused.value.status == 401
