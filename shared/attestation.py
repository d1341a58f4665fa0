"""Approval attestations: an in-toto Statement (v1) about an artifact, signed in a DSSE envelope.

    {"payloadType": "application/vnd.in-toto+json", "payload": base64(statement),
     "signatures": [{"keyid": <the signer's kid>, "sig": base64(Ed25519(PAE(payloadType, payload)))}]}

The statement's subject is the artifact (file name and sha256); its predicate (`ApprovalPredicate`,
type PREDICATE_TYPE, in shared.approval_statement) records the decision that let it into production.
The deployer signs it with its own event key (shared.signing), so the trust file that says who may emit
deployment.* also says whose attestations are believed. DSSE is written here (PAE, about twenty
lines) rather than taken from a library: the OpenSSF model-signing package signs with ECDSA keys
only and fixes its predicate to a file manifest (docs/decisions.md).

Determinism: the statement is serialised canonically (sorted keys, no spaces, UTF-8) and Ed25519
is deterministic, so the same facts signed by the same key give the same bytes, and a redelivered
deployment installs the same file. The file on disk is the canonical envelope plus a newline, and
`read_envelope` accepts exactly that form: a one-byte change anywhere (even in whitespace or in a
base64 padding bit) is refused, not only a change the signature covers.

Pure: the standard library, pydantic and cryptography; keys come in as arguments.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from pydantic import Field, ValidationError

# The statement and its predicate, re-exported: `from shared.attestation import Statement` works.
from shared.approval_statement import (  # noqa: F401
    MAX_CHECKS,
    MAX_DETAIL,
    MAX_VOTES,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    ApprovalPredicate,
    Chain,
    CheckRecord,
    DecisionRecord,
    DeployedTo,
    Digest,
    PolicyCited,
    Statement,
    Subject,
    VoteRecord,
)
from shared.values import Frozen

if TYPE_CHECKING:
    from shared.signing import Keyring, Principal

PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
# Beside the artifact in a model store version folder; no artifact takes these names.
ATTESTATION_FILE = "attestation.intoto.json"
MANIFEST_FILE = "manifest.json"  # what was deployed, when (written by the deployer; not attested)
REVOKED_FILE = "REVOKED"  # left by the deployer in a version it retires (unsigned: it only denies)
MAX_ENVELOPE_BYTES = 256 * 1024  # file, webhook body and deployment.succeeded alike
MAX_SIGNATURES = 8


class AttestationError(ValueError):
    """An attestation that does not hold; the message is one line saying why."""


# --- the envelope -------------------------------------------------------------------------------

class DsseSignature(Frozen):
    keyid: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$", description="The signer's key id (trust file kid)")
    sig: str = Field(max_length=128, description="base64 of the Ed25519 signature of PAE(payloadType, payload)")


class Envelope(Frozen):
    """A DSSE envelope (https://github.com/secure-systems-lab/dsse/blob/master/envelope.md)."""

    payloadType: Literal["application/vnd.in-toto+json"] = PAYLOAD_TYPE
    payload: str = Field(max_length=MAX_ENVELOPE_BYTES, description="base64 of the in-toto Statement")
    signatures: tuple[DsseSignature, ...] = Field(min_length=1, max_length=MAX_SIGNATURES)


# --- DSSE --------------------------------------------------------------------------------------

def canonical(data: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers, type and body length-bound."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement_bytes(statement: Statement) -> bytes:
    return canonical(statement.model_dump(mode="json", by_alias=True))


def sign(statement: Statement, kid: str, sign_bytes: Callable[[bytes], bytes]) -> Envelope:
    """The envelope of `statement` signed by `sign_bytes` (the key whose id is `kid`)."""
    payload = statement_bytes(statement)
    encoded = _b64(payload)
    if len(encoded) > MAX_ENVELOPE_BYTES - 512:  # room for the signature and the JSON around them
        raise AttestationError(f"the attestation would be over {len(encoded)} bytes, over the "
                               f"{MAX_ENVELOPE_BYTES} allowed: the decision carries too much text")
    signature = sign_bytes(pae(PAYLOAD_TYPE, payload))
    return Envelope(payload=encoded, signatures=(DsseSignature(keyid=kid, sig=_b64(signature)),))


def file_bytes(envelope: Envelope) -> bytes:
    """The envelope as stored beside the artifact: canonical JSON and a newline."""
    return canonical(envelope.model_dump(mode="json")) + b"\n"


def verify(envelope: Envelope, keyring: Keyring, role: str = "deployer") -> tuple[Statement, Principal]:
    """The statement, and who signed it: a key the trust file lists for `role`. Raises
    AttestationError saying why not (unknown key, another role, a signature that does not verify,
    a payload that is not a Signoff approval statement)."""
    payload = _unb64(envelope.payload, "payload")
    message = pae(envelope.payloadType, payload)
    problems = []
    for entry in envelope.signatures:
        trusted = keyring.keys.get(entry.keyid)
        if trusted is None:
            problems.append(f"key {entry.keyid} is not in the trust file")
            continue
        who = trusted.principal
        if who.role != role:
            problems.append(f"key {entry.keyid} is {who.name}'s (role {who.role}); an attestation is the {role}'s")
            continue
        try:
            trusted.public.verify(_unb64(entry.sig, "signature"), message)
        except InvalidSignature:
            problems.append(f"the signature by {who.name} (key {entry.keyid}) does not verify: the attestation "
                            "was changed after it was signed")
            continue
        statement = parse_statement(payload)
        if trusted.not_after is not None and statement.predicate.decision.decided_at > trusted.not_after:
            problems.append(f"key {entry.keyid} ({who.name}) expired at {trusted.not_after.isoformat()}")
            continue
        return statement, who
    raise AttestationError("; ".join(problems))


def subject_of(envelope: Envelope) -> Subject:
    """The artifact an envelope names, read without verifying it: for its own signer (the
    deployer installing what it just signed), never for a reader deciding whether to trust it."""
    return claimed_statement(envelope).artifact


def claimed_statement(envelope: Envelope) -> Statement:
    """The statement an envelope carries, read without verifying it: only for what can only deny
    (`signoff verify` matching a release against the versions the store retired), never to trust."""
    return parse_statement(_unb64(envelope.payload, "payload"))


def parse_statement(payload: bytes) -> Statement:
    try:
        return Statement.model_validate(strict_json(payload, "the statement"))
    except ValidationError as exc:
        from shared.codec import describe  # here: codec is not needed to build or sign
        raise AttestationError(f"the statement is not a Signoff approval ({PREDICATE_TYPE}): "
                               f"{describe(exc)}") from None


def read_envelope(raw: bytes) -> Envelope:
    """The envelope in an attestation file: bounded, strict JSON, and in the canonical form the
    deployer writes (so no byte of it can change unnoticed)."""
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise AttestationError(f"the attestation is {len(raw)} bytes; at most {MAX_ENVELOPE_BYTES}")
    try:
        envelope = Envelope.model_validate(strict_json(raw, "the attestation"))
    except ValidationError as exc:
        from shared.codec import describe
        raise AttestationError(f"the attestation is not a DSSE envelope: {describe(exc)}") from None
    if file_bytes(envelope) != raw:
        raise AttestationError("the attestation file was changed: it is not in the form the deployer wrote")
    return envelope


def strict_json(raw: bytes, what: str) -> Any:
    """JSON with no duplicate keys, no NaN or infinity, valid UTF-8; AttestationError otherwise."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise AttestationError(f"{what} has the key {key!r} twice")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise AttestationError(f"{what} contains {name}, which is not JSON")

    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, AttestationError):
            raise
        raise AttestationError(f"{what} is not JSON ({type(exc).__name__})") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    """Standard base64, padded, in its one canonical spelling."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AttestationError(f"the attestation's {what} is not base64") from None
    if _b64(data) != text:
        raise AttestationError(f"the attestation's {what} is not in canonical base64")
    return data
