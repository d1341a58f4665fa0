"""The tests' signing keys: one per role, made once per test process (never checked in), and the
trust file that lists them. Everything a test publishes for a service to consume is signed by
the role that owns its event type (`shared.signing.TRUST`), as the real producer would sign it:

    signed(event)                   the record of `event`, signed by its type's role
    sign(record, by=None)           sign a record (raw bytes too, for dead-letter tests), by a principal
    service_fields("deployer")      the settings fields that give a service its key and the trust file
    env()                           the same as environment variables, for services run as processes
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import codec, signing
from shared.events import BY_TOPIC, Event, ReviewDecided

# Each test principal and its role; the first of each role signs what that role owns by default.
PRINCIPALS = {"validator": "validator", "policy": "policy", "review-notifier": "review-notifier",
              "deployer": "deployer", "pipeline-test": "pipeline", "oncall": "operator", "security": "operator"}
DEFAULT = {role: next(n for n, r in PRINCIPALS.items() if r == role) for role in set(PRINCIPALS.values())}
SERVICE_ROLES = {"validator": "validator", "policy": "policy", "review_notifier": "review-notifier",
                 "deployer": "deployer"}


@dataclass(frozen=True)
class Keys:
    folder: Path
    trust: Path
    files: dict[str, Path]               # principal -> private key file
    signers: dict[str, signing.Signer]   # principal -> its signer


@functools.cache
def keys() -> Keys:
    folder = Path(tempfile.mkdtemp(prefix="signoff-test-keys-"))
    trust = signing.TrustFile()
    files, signers = {}, {}
    for name, role in PRINCIPALS.items():
        private = Ed25519PrivateKey.generate()
        files[name] = folder / f"{name}.pem"
        signing.write_private(files[name], private)
        signers[name] = signing.Signer(private)
        trust.keys.append(signing.new_entry(private, name, role))
    path = folder / "trusted-keys.yaml"
    signing.write_trust(path, trust)
    return Keys(folder, path, files, signers)


def role_of(topic: str) -> str:
    """The role that signs `topic`'s events (the first in alphabetical order when several may)."""
    return sorted(signing.TRUST[BY_TOPIC[topic].type])[0]


def sign(record: codec.Record, by: str | None = None) -> codec.Record:
    """`record` signed by the principal `by` (default: the first of the role owning its topic)."""
    return signer(by or DEFAULT[role_of(record.topic)]).sign(record)


def signed(event: Event, source: str = "/test", by: str | None = None) -> codec.Record:
    """The record of `event`, signed by `by` or by who makes such an event: a decision by people is
    the review-notifier's, any other the policy's (`shared.signing.APPROVERS`)."""
    if by is None and isinstance(event, ReviewDecided):
        by = DEFAULT[signing.APPROVERS[event.mode]]
    return sign(codec.encode(event, source), by)


def signer(name: str) -> signing.Signer:
    return keys().signers[name]


def principal(name: str) -> signing.Principal:
    return signing.Principal(name, PRINCIPALS[name])


def service_fields(service: str) -> dict[str, Path]:
    """Settings fields of `services.<service>`: its own key and the trust file."""
    return {"signing_key_file": keys().files[DEFAULT[SERVICE_ROLES[service]]], "trusted_keys": keys().trust}


def env() -> dict[str, str]:
    """Each service's key file and the trust file as environment variables (devstack processes)."""
    ks = keys()
    out = {f"{service.upper()}_SIGNING_KEY_FILE": str(ks.files[DEFAULT[role]])
           for service, role in SERVICE_ROLES.items()}
    out["SIGNOFF_TRUSTED_KEYS"] = str(ks.trust)
    return out
