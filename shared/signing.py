"""Signed events: who emitted an event, proven by an Ed25519 signature, checked before it is read.

Kafka's ACLs say who may write a topic; on a cluster whose ACLs are someone else's they may say
"anyone". So every service signs what it emits and every consumer verifies, *before parsing*, that
an event which decides something was signed by a key trusted for that event type (`TRUST`):
checks only by the validator, decisions only by the policy or the review-notifier, deployment.*
only by the deployer, rollback and revocation only by an operator. An unsigned, unknown-key,
bad-signature or wrong-role record raises `Untrusted` (a `codec.BadEvent`): subscribers dead-letter
it with the reason, followers and readers skip it, and nothing acts on it.

What is signed (`signed_bytes`): a domain tag, the key id, the topic, the record key, every
CloudEvents header (`ce_*`) and content-type, and the value, each length-prefixed. A body replayed
under another ce_type, key, subject or topic therefore does not verify.

Keys: each signer holds an Ed25519 private key (PEM PKCS#8; a file readable by its owner only,
or the environment); its key id is the fingerprint of the public key (`key_id`), so it can never
disagree with the key. The trust file (`load_trust`, YAML or JSON) lists the public keys:
{kid, principal, role, public_key (base64 of the 32 raw bytes), owner?, team?, not_after?}; a
principal may have several kids at once, which is how a key is rotated (`signoff keys generate
--rotate`). `not_after` bounds the events a key may sign by their signed `ce_time`, so history
signed before it still verifies when topics are re-read; a key that leaked is removed instead.

The signer of the message being handled is `verified_signer()` (set by the decoder).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import hashlib
import json
import os
import stat
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared import codec
from shared.events import BY_TOPIC

Role = Literal["validator", "policy", "review-notifier", "deployer", "pipeline", "operator"]
ROLES: tuple[str, ...] = ("validator", "policy", "review-notifier", "deployer", "pipeline", "operator")

KID_HEADER = "signoff_kid"
SIG_HEADER = "signoff_sig"
_DOMAIN = b"signoff-event-v1"
KID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
MAX_TRUST_BYTES = 1_000_000
MAX_TRUSTED_KEYS = 1000
MAX_KEY_FILE_BYTES = 16_384

# Event type -> the roles whose keys may sign it. A type missing here is refused from everyone.
TRUST: dict[str, frozenset[str]] = {
    "signoff.model.submitted": frozenset({"pipeline"}),
    "signoff.checks.passed": frozenset({"validator"}),
    "signoff.checks.failed": frozenset({"validator"}),
    "signoff.review.requested": frozenset({"policy"}),
    "signoff.review.decided": frozenset({"policy", "review-notifier"}),
    "signoff.review.escalated": frozenset({"review-notifier"}),
    "signoff.deployment.succeeded": frozenset({"deployer"}),
    "signoff.deployment.failed": frozenset({"deployer"}),
    "signoff.deployment.progressed": frozenset({"deployer"}),
    "signoff.deployment.rolled_back": frozenset({"deployer"}),
    "signoff.deployment.revoked": frozenset({"deployer"}),
    "signoff.deployment.superseded": frozenset({"deployer"}),
    "signoff.deployment.drifted": frozenset({"deployer"}),
    "signoff.rollback.requested": frozenset({"operator"}),
    "signoff.revocation.requested": frozenset({"operator"}),
}
SUBMITTED = "signoff.model.submitted"

# Within review.decided, who may approve how: an automatic approval is the policy's, an approval by
# people is the review-notifier's (which counted their votes). Either may reject.
APPROVERS: dict[str, str] = {"automatic": "policy", "human": "review-notifier"}


def approval_refusal(outcome: str, mode: str, signer: Principal | None) -> str | None:
    """Why an approval may not be acted on given who signed it, or None when it may."""
    if outcome != "approved":
        return None
    owner = APPROVERS[mode]
    if signer is None or signer.role != owner:
        who = f"{signer.name} (role {signer.role})" if signer else "nobody"
        return (f"an approval of mode {mode} is the {owner}'s to make, but it was signed by {who}: "
                "only the owner of a decision can make it")
    return None


@dataclass(frozen=True)
class Principal:
    """Who signed an event, as the trust file names them."""

    name: str
    role: str
    owner: str | None = None
    team: str | None = None


_SIGNER: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("signoff_signer", default=None)


def verified_signer() -> Principal | None:
    """The verified signer of the message being handled (None when it was unsigned, which only an
    event type accepted unsigned can be, or outside a handler)."""
    return _SIGNER.get()


def set_signer(principal: Principal | None) -> None:
    """Set by the decoder of each message, signed or not, so no signer outlives its message."""
    _SIGNER.set(principal)


@contextlib.contextmanager
def signed_by(principal: Principal | None) -> Iterator[None]:
    """`verified_signer()` is `principal` inside the block (for code that handles an event outside
    a subscriber, and for tests of handlers)."""
    token = _SIGNER.set(principal)
    try:
        yield
    finally:
        _SIGNER.reset(token)


class Untrusted(codec.BadEvent):
    """A record whose signature does not make it an event of its type: never acted on."""


class Unsigned(Untrusted):
    pass


class UnknownKey(Untrusted):
    pass


class BadSignature(Untrusted):
    pass


class WrongSigner(Untrusted):
    pass


class KeyProblem(ValueError):
    """A key or trust file that cannot be used; the message names the file, entry and field."""


# -- what is signed -------------------------------------------------------------------------

def covered(name: str) -> bool:
    """Headers the signature covers: the CloudEvents attributes and the content type."""
    return name.startswith("ce_") or name == "content-type"


def signed_bytes(kid: str, topic: str, key: bytes, headers: Mapping[str, bytes], value: bytes) -> bytes:
    """An unambiguous encoding (each part length-prefixed, headers sorted by name and counted)."""
    parts = [_DOMAIN, kid.encode(), topic.encode(), key, struct.pack(">I", len(headers))]
    for name in sorted(headers):
        parts += [name.encode(), headers[name]]
    parts.append(value)
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def key_id(public: Ed25519PublicKey) -> str:
    """The key id: base64url SHA-256 of the raw public key, 22 characters (128 bits)."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).decode()[:22]


def public_b64(public: Ed25519PublicKey) -> str:
    return base64.b64encode(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


class Signer:
    """Signs records with one private key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.kid = key_id(private.public_key())

    def headers(self, record: codec.Record) -> dict[str, str]:
        """The record's headers with signoff_kid and signoff_sig added."""
        covered_headers = {k: v.encode() for k, v in record.headers.items() if covered(k)}
        signature = self._private.sign(signed_bytes(self.kid, record.topic, record.key, covered_headers,
                                                    record.value))
        return {**record.headers, KID_HEADER: self.kid,
                SIG_HEADER: base64.urlsafe_b64encode(signature).decode().rstrip("=")}

    def sign(self, record: codec.Record) -> codec.Record:
        return record._replace(headers=self.headers(record))

    def sign_bytes(self, message: bytes) -> bytes:
        """The raw signature of `message`, for a protocol that frames its own bytes (DSSE's PAE in
        shared.attestation begins b"DSSEv1 ", and `signed_bytes` with a length prefix: never equal)."""
        return self._private.sign(message)


# -- verifying ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrustedKey:
    kid: str
    principal: Principal
    public: Ed25519PublicKey
    not_after: datetime | None = None


def _who(roles: Iterable[str]) -> str:
    return " or the ".join(sorted(roles)) or "nobody"


class Keyring:
    """The trusted public keys, and which event types may arrive unsigned."""

    def __init__(self, keys: Iterable[TrustedKey], accept_unsigned: Iterable[str] = ()) -> None:
        self.keys = {k.kid: k for k in keys}
        self.accept_unsigned = frozenset(accept_unsigned)

    def verify(self, topic: str, key: bytes | None, headers: Sequence[tuple[str, bytes | str]] | None,
               value: bytes | None) -> Principal | None:
        """The verified signer of a record of `topic` (None: unsigned, and its type may be).
        Raises Untrusted naming the reason; looks at nothing but the record's bytes."""
        cls = BY_TOPIC.get(topic)
        if cls is None:
            raise codec.BadEvent(f"topic {topic!r} carries no Signoff event")
        allowed = TRUST.get(cls.type, frozenset())
        covered_headers: dict[str, bytes] = {}
        kid = sig = None
        for name, raw in headers or ():
            data = raw.encode() if isinstance(raw, str) else bytes(raw)
            if name in (KID_HEADER, SIG_HEADER) or covered(name):
                if name in covered_headers or (name == KID_HEADER and kid is not None) or \
                        (name == SIG_HEADER and sig is not None):
                    raise Untrusted(f"header {name} appears twice: which one was signed is ambiguous")
            if name == KID_HEADER:
                kid = data
            elif name == SIG_HEADER:
                sig = data
            elif covered(name):
                covered_headers[name] = data
        if kid is None and sig is None:
            if cls.type in self.accept_unsigned:
                return None
            raise Unsigned(f"unsigned: {cls.type} must be signed by the {_who(allowed)}")
        if kid is None or sig is None:
            raise Unsigned(f"unsigned: {KID_HEADER} and {SIG_HEADER} come together; this record has only "
                           f"{KID_HEADER if kid is not None else SIG_HEADER}")
        kid_text, signature = _kid(kid), _signature(sig)
        trusted = self.keys.get(kid_text)
        if trusted is None:
            raise UnknownKey(f"unknown key id {kid_text} (not in the trust file)")
        message = signed_bytes(kid_text, topic, key or b"", covered_headers, value or b"")
        try:
            trusted.public.verify(signature, message)
        except InvalidSignature:
            raise BadSignature(f"signature does not verify (key id {kid_text}): the record was changed "
                               "after it was signed, or signed by another key") from None
        if trusted.not_after is not None:
            at = _ce_time(covered_headers.get("ce_time"))
            if at is None or at > trusted.not_after:
                when = at.isoformat() if at else "no time"
                raise UnknownKey(f"key id {kid_text} ({trusted.principal.name}) expired at "
                                 f"{trusted.not_after.isoformat()}; the event says {when}")
        who = trusted.principal
        if who.role not in allowed:
            raise WrongSigner(f"signed by {who.name} (role {who.role}), but {cls.type} is decided by the "
                              f"{_who(allowed)}")
        return who


def _kid(raw: bytes) -> str:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    if not (8 <= len(text) <= 64 and all(c.isalnum() or c in "-_" for c in text)):
        raise UnknownKey(f"malformed {KID_HEADER} header ({len(raw)} bytes): a key id is 8-64 of A-Z a-z 0-9 _ -")
    return text


def _signature(raw: bytes) -> bytes:
    try:
        text = raw.decode("ascii")
        signature = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (UnicodeDecodeError, binascii.Error, ValueError):
        raise BadSignature(f"malformed {SIG_HEADER} header: not base64url") from None
    if len(signature) != 64:
        raise BadSignature(f"malformed {SIG_HEADER} header: {len(signature)} bytes, an Ed25519 signature has 64")
    return signature


def _ce_time(raw: bytes | None) -> datetime | None:
    if raw is None:
        return None
    try:
        at = datetime.fromisoformat(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return at if at.tzinfo is not None else None


# -- trust file -----------------------------------------------------------------------------

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"


class TrustEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kid: str = Field(pattern=KID_PATTERN, description="The key's fingerprint (`signoff keys generate` prints it)")
    principal: str = Field(pattern=_NAME, description="Who holds the key: a service, a pipeline, a person")
    role: Role
    public_key: str = Field(max_length=64, description="base64 of the 32 raw bytes of the Ed25519 public key")
    owner: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=200)
    not_after: datetime | None = Field(
        default=None, description="Events whose signed time (ce_time) is later are refused; no revocation: "
        "remove a leaked key's entry")

    @field_validator("not_after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2027-01-31T00:00:00Z")
        return value

    def public(self) -> Ed25519PublicKey:
        try:
            raw = base64.b64decode(self.public_key, validate=True)
            return Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError):
            raise ValueError("public_key is not base64 of 32 bytes (an Ed25519 public key)") from None


class TrustFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[TrustEntry] = Field(default_factory=list, max_length=MAX_TRUSTED_KEYS)


def read_trust(path: Path) -> TrustFile:
    """The trust file at `path`, validated strictly (raises KeyProblem naming entry and field)."""
    import yaml  # here: the pure modules that import Principal load no YAML parser
    try:
        size = path.stat().st_size
        if size > MAX_TRUST_BYTES:
            raise KeyProblem(f"{path}: {size} bytes; a trust file is at most {MAX_TRUST_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyProblem(f"{path}: cannot read the trust file: {exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise KeyProblem(f"{path}: not {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    try:
        trust = TrustFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise KeyProblem(f"{path}: {codec.describe(exc)}") from None
    problems = []
    seen: dict[str, int] = {}
    roles: dict[str, str] = {}
    for i, entry in enumerate(trust.keys):
        where = f"keys.{i} (kid {entry.kid})"
        try:
            public = entry.public()
        except ValueError as exc:
            problems.append(f"{where}.public_key: {exc}")
            continue
        if key_id(public) != entry.kid:
            problems.append(f"{where}.kid: the fingerprint of its public_key is {key_id(public)}")
        if entry.kid in seen:
            problems.append(f"{where}.kid: also keys.{seen[entry.kid]}; a key id is listed once")
        seen.setdefault(entry.kid, i)
        if roles.setdefault(entry.principal, entry.role) != entry.role:
            problems.append(f"{where}.role: {entry.principal} is {roles[entry.principal]} in an earlier "
                            "entry; a principal has one role")
    if problems:
        raise KeyProblem(f"{path}: " + "; ".join(problems[:10]))
    return trust


def load_trust(path: Path, accept_unsigned: Iterable[str] = ()) -> Keyring:
    trust = read_trust(path)
    return Keyring((TrustedKey(e.kid, Principal(e.principal, e.role, e.owner, e.team), e.public(), e.not_after)
                    for e in trust.keys), accept_unsigned)


def write_trust(path: Path, trust: TrustFile) -> None:
    """Write atomically (a reader never sees half a file)."""
    import yaml
    data = trust.model_dump(mode="json", exclude_none=True)
    text = json.dumps(data, indent=2) + "\n" if path.suffix == ".json" else yaml.safe_dump(data, sort_keys=False)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- private keys ---------------------------------------------------------------------------

def load_private(file: Path | None, pem: str | None, *, file_variable: str, env_variable: str) -> Signer:
    """The signer of a service or a person: from `file` (PEM PKCS#8, readable by its owner only)
    or `pem` (the PEM text itself, from the environment). Raises KeyProblem naming the variable."""
    if file is not None and pem is not None:
        raise KeyProblem(f"both {file_variable} and {env_variable} are set; set one")
    if file is not None:
        try:
            info = file.stat()
            if stat.S_IMODE(info.st_mode) & 0o077:
                raise KeyProblem(f"{file_variable}={file}: readable or writable by group or others "
                                f"(mode {stat.S_IMODE(info.st_mode):o}); run chmod 600 {file}")
            if info.st_size > MAX_KEY_FILE_BYTES:
                raise KeyProblem(f"{file_variable}={file}: {info.st_size} bytes, not a private key")
            data = file.read_bytes()
        except OSError as exc:
            raise KeyProblem(f"{file_variable}={file}: cannot read: {exc.strerror}") from None
        where = f"{file_variable}={file}"
    elif pem is not None:
        data, where = pem.encode()[:MAX_KEY_FILE_BYTES + 1], env_variable
    else:
        raise KeyProblem(f"no signing key: set {file_variable} to the key file `signoff keys generate` wrote "
                        f"(or {env_variable} to its PEM text)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyProblem(f"{where}: not an unencrypted PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyProblem(f"{where}: a {type(key).__name__}; Signoff signs with Ed25519 keys")
    return Signer(key)


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path: Path, key: Ed25519PrivateKey) -> None:
    """Create `path` (never overwrite) with mode 600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem(key))


def new_entry(key: Ed25519PrivateKey, principal: str, role: str, owner: str | None = None,
              team: str | None = None, not_after: datetime | None = None) -> TrustEntry:
    public = key.public_key()
    return TrustEntry.model_validate({"kid": key_id(public), "principal": principal, "role": role,
                                      "public_key": public_b64(public), "owner": owner, "team": team,
                                      "not_after": not_after})


# -- a service's keys -----------------------------------------------------------------------

class ServiceKeys:
    """A service's signer and keyring, read from its settings at start-up (`open`); the service
    refuses to start without them."""

    def __init__(self, signing_key_file: Path | None, signing_key: str | None, trusted_keys: Path | None,
                 accept_unsigned_submissions: bool, env_prefix: str) -> None:
        self._args = (signing_key_file, signing_key, trusted_keys, accept_unsigned_submissions, env_prefix)
        self._signer: Signer | None = None
        self._keyring: Keyring | None = None

    def open(self) -> None:
        """Load both (raises KeyProblem naming the variable to set)."""
        self._signer, self._keyring = self.signer, self.keyring

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            file, pem, _, _, prefix = self._args
            self._signer = load_private(file, pem, file_variable=f"{prefix}SIGNING_KEY_FILE",
                                        env_variable=f"{prefix}SIGNING_KEY")
        return self._signer

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            _, _, trusted, unsigned, _ = self._args
            if trusted is None:
                raise KeyProblem("no trust file: set SIGNOFF_TRUSTED_KEYS to the file of trusted public keys "
                                 "(`signoff keys generate --trust FILE` writes it)")
            self._keyring = load_trust(trusted, accept_unsigned=(SUBMITTED,) if unsigned else ())
        return self._keyring
