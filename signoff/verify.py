"""`signoff verify PATH`: may this model be served? What a serving platform asks before it loads one.

    verdict = verify(Path("/models/fraud-detector/1.4.0"), load_trust(trust_file))
    if not verdict.ok: refuse(verdict.reason)
    load(verdict.artifact)  # the resolved file that was checked

PATH is a version folder of the model store (the artifact, `manifest.json` and
`attestation.intoto.json`) or the artifact file itself beside its attestation. Everything holds,
or the answer is one line saying what did not:

- the attestation is the file the deployer wrote (bounded, strict JSON, canonical: shared.attestation)
  and is signed by a key the trust file lists for the role deployer;
- it is this release's: the files are served as the model and version it attests, either as the
  store's `<model>/<version>` folder, or as the release the caller names (--model/--version);
- the artifact is the attested subject: its file name, and the sha256 of its bytes (streamed), or
  for a folder artifact (an MLflow model) the folder's name and its tree digest (docs/sources.md);
  given a folder, nothing else is in it that a server might load instead (manifest.json aside);
- it was not revoked: offline, the deployer's own marks in the store (a `REVOKED` file in the
  folder, a folder kept under `.revoked/`, or a version with the same submission or bytes retired
  into the store's `.revoked/<model>/`); online (`--online`), the signed events of
  deployment.revoked and revocation.requested naming its submission, its digest or its model version.

It checks a path at one moment: load `Verdict.artifact` (resolved) straight after, from a store
only the deployer writes; a file swapped between the check and the load is not seen. Reading the
files is signoff/verify_files.py. Offline it reads only the files and the trust file, so it answers
in well under a second (the hashing is the artifact's size over the disk's speed). `verify_envelope`
is the same check for a webhook receiver holding the envelope from the request body and the
artifact it fetched.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import attestation, signing
from shared.attestation import AttestationError, Envelope, Statement
from shared.events import DeploymentRevoked, Event, RevocationRequested
from signoff import verify_files as files


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
    artifact: Path | None = None  # the file checked (resolved): what to load

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


def verify(path: Path, keyring: signing.Keyring, *, revoked: Revocations | None = None,
           expected_model: str | None = None, expected_version: str | None = None) -> Verdict:
    """Whether the model at `path` may be served (see the module). Never raises for a bad file.

    Give `expected_model` and `expected_version` (both) when the platform serves the files under a
    name of its own; without them, PATH must be the store's `<model>/<version>` folder of the
    attested release (or the artifact in it). Load `Verdict.artifact`: the file that was checked."""
    if (expected_model is None) != (expected_version is None):
        raise ValueError("expected_model and expected_version go together: name the release you serve")
    try:
        place = files.locate(path)
        statement, signer = attestation.verify(files.read_envelope(place.folder), keyring)
        artifact = _attested_artifact(place, statement.artifact.name)
        if (why := files.revoked_offline(place, statement)) or (revoked and (why := revoked.of(statement))):
            raise AttestationError(f"{statement.predicate.model} {statement.predicate.version} was revoked ({why})")
        _check_release(place, statement, expected_model, expected_version)
        files.check_digest(artifact, statement.artifact.digest.sha256)
    except AttestationError as exc:
        return Verdict(False, str(exc))
    return Verdict(True, _summary(statement, signer), statement, signer, artifact)


def verify_envelope(envelope: Envelope | dict[str, Any], artifact: Path, keyring: signing.Keyring, *,
                    revoked: Revocations | None = None) -> Verdict:
    """The same checks for an envelope in hand (a webhook body's `attestation`) and the artifact."""
    try:
        if not isinstance(envelope, Envelope):
            envelope = attestation.read_envelope(attestation.canonical(envelope) + b"\n")
        statement, signer = attestation.verify(envelope, keyring)
        files.check_digest(artifact, statement.artifact.digest.sha256)
        if revoked and (why := revoked.of(statement)):
            raise AttestationError(f"{statement.predicate.model} {statement.predicate.version} was revoked ({why})")
    except (AttestationError, ValueError, TypeError) as exc:  # a body that is no envelope too
        return Verdict(False, " ".join(str(exc).split()))
    return Verdict(True, _summary(statement, signer), statement, signer, artifact)


def _summary(statement: Statement, signer: signing.Principal) -> str:
    p, d = statement.predicate, statement.predicate.decision
    return (f"{p.model} {p.version} sha256 {statement.artifact.digest.sha256} approved by {d.decided_by} "
            f"({d.mode}{', break-glass' if d.break_glass else ''}) under policy {d.policy.name} "
            f"{d.policy.digest[:12]}, attested by {signer.name}")


def _attested_artifact(place: files.Place, name: str) -> Path:
    """The file the attestation's subject names; given a folder, nothing else may be in it."""
    if place.artifact is None:
        files.only_attested_files(place.folder, name)
        return place.folder / name
    if place.artifact.name != name:
        raise AttestationError(f"the attestation is for {name!r}, not {place.artifact.name!r}")
    return place.artifact


def _check_release(place: files.Place, statement: Statement, model: str | None, version: str | None) -> None:
    """The files are served as the release the attestation is for: an approved release copied under
    another model's or version's name is not that model or version. The name served under is the
    caller's (`model`, `version`) or, in a model store, the folder's `<model>/<version>` as given.
    (The attested deployer.location is not compared: a store is mounted at other paths on other
    hosts, and the deployer builds it from the same model and version.)"""
    p = statement.predicate
    if model is not None:
        if (model, version) != (p.model, p.version):
            raise AttestationError(f"the attestation is for {p.model} {p.version}, not {model} {version}: "
                                   "these are another release's files")
        return
    served = (place.given.parent.name, place.given.name)
    if served != (p.model, p.version):
        raise AttestationError(
            f"{place.given} would be served as {served[0] or '?'} {served[1] or '?'}, but the attestation is for "
            f"{p.model} {p.version}: verify the folder <root>/{p.model}/{p.version} of the model store, or name "
            "the release you serve these files as with --model and --version")


async def online_revocations(kafka: Any, keyring: signing.Keyring) -> Revocations:
    """Every signed revocation on the topics now (as the principal `kafka` authenticates)."""
    from shared import topics
    from shared.reader import read_events  # here: offline verification loads no Kafka client

    return Revocations.from_events(await read_events(
        kafka, [topics.DEPLOYMENT_REVOKED, topics.REVOCATION_REQUESTED], keyring=keyring))


def command(
    path: Annotated[str, typer.Argument(
        help="The model's version folder, or the artifact file beside its attestation, or a version the "
             "s3 target deployed: s3://bucket/prefix/<model>/<version>/ (read with the standard AWS chain)")],
    online: Annotated[bool, typer.Option("--online", help="Also ask the topics whether it was revoked "
                                         "(KAFKA_* as a pipeline or an operator)")] = False,
    model: Annotated[str | None, typer.Option(
        "--model", help="The model you serve these files as (with --version), when PATH is not the model "
                        "store's <model>/<version> folder")] = None,
    version: Annotated[str | None, typer.Option(
        "--version", help="The version you serve these files as (with --model)")] = None,
) -> None:
    """Check a deployed model before serving it: the files against the attested digest, the
    signature against the trusted deployer keys (SIGNOFF_TRUSTED_KEYS), and that it was not revoked.
    Exit 0 when all hold, 1 with the reason otherwise."""
    if (model is None) != (version is None):
        _refuse("give --model and --version together: the release you serve these files as")
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
    if path.startswith("s3://"):  # downloaded into a temporary folder, then the same checks
        from signoff.verify_s3 import verify_s3

        verdict = verify_s3(path, keyring, revoked=revoked, expected_model=model, expected_version=version)
    else:
        verdict = verify(Path(path), keyring, revoked=revoked, expected_model=model, expected_version=version)
    if not verdict.ok:
        _refuse(verdict.reason)
    typer.echo(verdict.line)


def _refuse(reason: str) -> NoReturn:
    typer.echo(f"refused: {' '.join(reason.split())}", err=True)
    raise typer.Exit(1)


if __name__ == "__main__":  # python -m signoff.verify PATH: the same, without the rest of the CLI
    typer.run(command)
