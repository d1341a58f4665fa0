"""`signoff verify PATH`: may this model be served? What a serving platform asks before it loads one.

    verdict = verify(Path("/models/fraud-detector/1.4.0"), load_trust(trust_file))
    if not verdict.ok: refuse(verdict.reason)

PATH is a version folder of the model store (the artifact, `manifest.json` and
`attestation.intoto.json`) or the artifact file itself beside its attestation. Everything holds,
or the answer is one line saying what did not:

- the attestation is the file the deployer wrote (bounded, strict JSON, canonical: shared.attestation)
  and is signed by a key the trust file lists for the role deployer;
- the artifact is the attested subject: its file name, and the sha256 of its bytes (streamed);
  given a folder, nothing else is in it that a server might load instead (manifest.json aside);
- it was not revoked: offline, the deployer's own marks in the store (a `REVOKED` file in the
  folder, a folder kept under `.revoked/`, or the same version retired into the store's
  `.revoked/`); online (`--online`), the signed events of deployment.revoked and
  revocation.requested naming its submission, its digest or its model version.

Offline it reads only the files and the trust file, so it answers in well under a second (the
hashing is the artifact's size over the disk's speed). `verify_envelope` is the same check for a
webhook receiver holding the envelope from the request body and the artifact it fetched.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import attestation, signing
from shared.attestation import (
    ATTESTATION_FILE,
    MANIFEST_FILE,
    REVOKED_FILE,
    AttestationError,
    Envelope,
    Statement,
)
from shared.events import DeploymentRevoked, Event, RevocationRequested

CHUNK = 1 << 20
REVOKED_DIR = ".revoked"  # where the deployer keeps retired versions (services/deployer/targets/_store_files)
MAX_MARK_BYTES = 16_384


class VerifySettings(BaseSettings):
    """What offline verification reads: SIGNOFF_TRUSTED_KEYS, as signoff.settings.ClientSettings
    does, without loading the Kafka settings (and their client) that only --online needs."""

    model_config = SettingsConfigDict(env_prefix="SIGNOFF_", extra="ignore", frozen=True)

    trusted_keys: Path | None = None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # one line: what holds, or the first thing that does not
    statement: Statement | None = None
    signer: signing.Principal | None = None

    @property
    def line(self) -> str:
        return f"ok: {self.reason}" if self.ok else f"refused: {self.reason}"


@dataclass
class Revocations:
    """What was revoked, by submission id, artifact digest and model version, and why."""

    why: dict[object, str] = field(default_factory=dict)

    def add(self, submission_id: uuid.UUID, reason: str, sha256: str | None = None,
            version: tuple[str, str] | None = None) -> None:
        for key in (submission_id, sha256, version):
            if key is not None:
                self.why.setdefault(key, reason)

    def of(self, statement: Statement) -> str | None:
        p = statement.predicate
        keys = (p.submission_id, statement.artifact.digest.sha256, (p.model, p.version))
        return next((self.why[k] for k in keys if k in self.why), None)

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> Revocations:
        out = cls()
        for e in events:
            if isinstance(e, DeploymentRevoked):
                out.add(e.submission_id, f"revoked by {e.requested_by}: {e.reason}", e.candidate.artifact_sha256,
                        (e.candidate.model, e.candidate.version))
            elif isinstance(e, RevocationRequested):
                out.add(e.submission_id, f"revocation requested by {e.requested_by}: {e.reason}")
        return out


def verify(path: Path, keyring: signing.Keyring, *, revoked: Revocations | None = None) -> Verdict:
    """Whether the model at `path` may be served (see the module). Never raises for a bad file."""
    try:
        folder, artifact = _locate(path)
        envelope = attestation.read_envelope(_read_capped(folder / ATTESTATION_FILE))
        statement, signer = attestation.verify(envelope, keyring)
        name = statement.artifact.name
        if artifact is None:
            artifact = folder / name
            _only_attested_files(folder, name)
        elif artifact.name != name:
            raise AttestationError(f"the attestation is for {name!r}, not {artifact.name!r}")
        _check_digest(artifact, statement.artifact.digest.sha256)
        if (why := _revoked_offline(folder, statement)) or (revoked and (why := revoked.of(statement))):
            raise AttestationError(f"{statement.predicate.model} {statement.predicate.version} was revoked ({why})")
    except AttestationError as exc:
        return Verdict(False, str(exc))
    return Verdict(True, _summary(statement, signer), statement, signer)


def verify_envelope(envelope: Envelope | dict[str, Any], artifact: Path, keyring: signing.Keyring, *,
                    revoked: Revocations | None = None) -> Verdict:
    """The same checks for an envelope in hand (a webhook body's `attestation`) and the artifact."""
    try:
        if not isinstance(envelope, Envelope):
            envelope = attestation.read_envelope(attestation.canonical(envelope) + b"\n")
        statement, signer = attestation.verify(envelope, keyring)
        _check_digest(artifact, statement.artifact.digest.sha256)
        if revoked and (why := revoked.of(statement)):
            raise AttestationError(f"{statement.predicate.model} {statement.predicate.version} was revoked ({why})")
    except (AttestationError, ValueError, TypeError) as exc:  # a body that is no envelope too
        return Verdict(False, " ".join(str(exc).split()))
    return Verdict(True, _summary(statement, signer), statement, signer)


def _summary(statement: Statement, signer: signing.Principal) -> str:
    p, d = statement.predicate, statement.predicate.decision
    return (f"{p.model} {p.version} sha256 {statement.artifact.digest.sha256} approved by {d.decided_by} "
            f"({d.mode}{', break-glass' if d.break_glass else ''}) under policy {d.policy.name} "
            f"{d.policy.digest[:12]}, attested by {signer.name}")


def _locate(path: Path) -> tuple[Path, Path | None]:
    """The version folder, and the artifact when PATH names it (None: the subject says)."""
    try:
        info = path.lstat()
    except OSError as exc:
        raise AttestationError(f"{path}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        return path, None
    if path.name in (ATTESTATION_FILE, MANIFEST_FILE):
        return path.parent, None
    return path.parent, path


def _read_capped(file: Path) -> bytes:
    try:
        with open(file, "rb") as f:
            raw = f.read(attestation.MAX_ENVELOPE_BYTES + 1)
    except FileNotFoundError:
        raise AttestationError(f"no attestation: {file} does not exist (was it deployed by Signoff?)") from None
    except OSError as exc:
        raise AttestationError(f"{file}: {exc.strerror}") from None
    return raw


def _only_attested_files(folder: Path, name: str) -> None:
    """A server loading the folder loads only what was attested (manifest.json is the deployer's)."""
    extra = sorted(set(os.listdir(folder)) - {name, ATTESTATION_FILE, MANIFEST_FILE, REVOKED_FILE})
    if extra:
        raise AttestationError(f"{folder} holds {extra[0]!r}" + (f" and {len(extra) - 1} more" if extra[1:] else "")
                               + f", which the attestation does not cover (it attests {name!r})")


def _check_digest(artifact: Path, expected: str) -> None:
    digest = hashlib.sha256()
    try:
        fd = os.open(artifact, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise AttestationError(f"{artifact} is not a regular file")
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise AttestationError(f"the attested artifact {artifact} cannot be read: {exc.strerror}") from None
    if digest.hexdigest() != expected:
        raise AttestationError(f"{artifact.name} has sha256 {digest.hexdigest()}, the attestation says {expected}: "
                               "the file was changed")


def _revoked_offline(folder: Path, statement: Statement) -> str | None:
    """The model store's own marks (services/deployer/targets/_store_files.retire)."""
    p = statement.predicate
    if REVOKED_DIR in folder.resolve().parts:
        return f"kept under {REVOKED_DIR}/ of the model store"
    mark = folder / REVOKED_FILE
    if mark.exists():
        try:
            with open(mark, "rb") as f:
                data = json.loads(f.read(MAX_MARK_BYTES))
            return f"marked in the model store by {data['requested_by']}: {data['reason']}"[:300]
        except (OSError, ValueError, KeyError, TypeError):
            return "marked REVOKED in the model store"
    if folder.name == p.version and folder.parent.name == p.model:  # a store's <root>/<model>/<version>
        retired = folder.parent.parent / REVOKED_DIR / p.model
        if retired.is_dir() and any(n.rpartition("-")[0] == p.version for n in os.listdir(retired)):
            return f"this version was retired into {retired}"
    return None


async def online_revocations(kafka: Any, keyring: signing.Keyring) -> Revocations:
    """Every signed revocation on the topics now (as the principal `kafka` authenticates)."""
    from shared import topics
    from shared.reader import read_events  # here: offline verification loads no Kafka client

    return Revocations.from_events(await read_events(
        kafka, [topics.DEPLOYMENT_REVOKED, topics.REVOCATION_REQUESTED], keyring=keyring))


def command(
    path: Annotated[Path, typer.Argument(
        help="The model's version folder, or the artifact file beside its attestation")],
    online: Annotated[bool, typer.Option("--online", help="Also ask the topics whether it was revoked "
                                         "(KAFKA_* as a pipeline or an operator)")] = False,
) -> None:
    """Check a deployed model before serving it: the files against the attested digest, the
    signature against the trusted deployer keys (SIGNOFF_TRUSTED_KEYS), and that it was not revoked.
    Exit 0 when all hold, 1 with the reason otherwise."""
    settings = VerifySettings()
    if settings.trusted_keys is None:
        _refuse("set SIGNOFF_TRUSTED_KEYS to the trust file: it says which keys are the deployer's")
    try:
        keyring = signing.load_trust(settings.trusted_keys)
    except signing.KeyProblem as exc:
        _refuse(str(exc))
    revoked = None
    if online:
        from signoff.settings import ClientSettings

        try:
            revoked = asyncio.run(online_revocations(ClientSettings().kafka, keyring))
        except Exception as exc:  # noqa: BLE001 - asked to check online: not knowing refuses
            _refuse(f"cannot read the revocations from Kafka: {type(exc).__name__}: {exc}")
    verdict = verify(path, keyring, revoked=revoked)
    if not verdict.ok:
        _refuse(verdict.reason)
    typer.echo(verdict.line)


def _refuse(reason: str) -> NoReturn:
    typer.echo(f"refused: {' '.join(reason.split())}", err=True)
    raise typer.Exit(1)


if __name__ == "__main__":  # python -m signoff.verify PATH: the same, without the rest of the CLI
    typer.run(command)
