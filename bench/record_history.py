"""The histories `bench.record` publishes: model chains in the shapes the services emit, signed by
the role that owns each event type, and the model store the deployer's own code fills.

A release is submitted (by the pipeline), checked a minute later (validator), either asked of a
reviewer and approved by them (policy, then review-notifier) or approved automatically (policy),
and deployed three minutes after its submission. The deployment is made by the deployer's pure
code, as the service does it: `lifecycle.advance` on the checks and on the approval gives the
Deploy action and the state, `attesting.attest` signs the release's attestation with the deployer's
key, `lifecycle.succeeded_event` is the deployment.succeeded carrying it (numbered as the deployer
numbers production changes), and `_store_files.install` writes `<store>/<model>/<version>/` with the
artifact, `deploying.manifest` and the attestation, when the release is installed. Rollbacks and
revocations are the operator's request and the deployer's answer to it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from services.deployer import attesting, deploying, lifecycle
from services.deployer.rollout import Plan, Release
from services.deployer.targets import _store_files as files
from services.deployer.targets.model_store import Inputs
from shared import attestation, codec, signing
from shared.events import (
    CheckResult,
    ChecksPassed,
    DeploymentRevoked,
    DeploymentRolledBack,
    DeploymentSucceeded,
    Event,
    ModelSubmitted,
    ReviewDecided,
    ReviewRequested,
    RevocationRequested,
    RollbackRequested,
    Submitter,
    Vote,
)
from tests.audit_history import policy
from tests.unit import factories as f

PIPELINE = Submitter(name="pipeline")  # the pipeline key `signoff keys init` makes
PLAN = Plan(inputs=Inputs(), workflow="default", digest="d" * 64)  # a direct model-store deployment
SOURCE = "/bench/record"


@dataclass(frozen=True)
class Deployed:
    """A release as the history knows it: enough to roll back to it or revoke it."""

    submitted: ModelSubmitted
    decision: ReviewDecided
    deployed: DeploymentSucceeded

    @property
    def version(self) -> str:
        return self.deployed.candidate.version


@dataclass
class Chain:
    """One model's history; `events` in the order the services wrote them. `store`: the model
    store's root the deployer installs into (and its attestations name); `signer`: its key."""

    model: str
    store: Path
    signer: signing.Signer
    events: list[Event] = field(default_factory=list)
    sequence: int = 0

    def release(self, version: str, at: datetime, approver: str | None, *, install: bool = False,
                size: int = 4096) -> Deployed:
        """Submitted at `at`; approved by `approver` (automatically when None); deployed at +3 min,
        and installed in the store when `install` (the artifact is `size` bytes)."""
        data = artifact_bytes(self.model, version, size)
        cand = f.candidate(model=self.model, version=version, artifact_sha256=hashlib.sha256(data).hexdigest(),
                           artifact_uri=f"file:///models/incoming/{self.model}-{version}.onnx")
        submitted = ModelSubmitted(submission_id=uuid.uuid4(), occurred_at=at,
                                   submission=f.submission(cand, submitter="carol"))
        results = (CheckResult(name="integrity", passed=True, measured=cand.artifact_sha256,
                               threshold=cand.artifact_sha256, message="sha256 of the bytes matches"),
                   CheckResult(name="metric:accuracy", passed=True, measured=0.95, threshold=0.8,
                               message="accuracy = 0.95 (required >= 0.8)"))
        checks = ChecksPassed.caused_by(submitted, submission=submitted.submission, results=results,
                                        occurred_at=at + timedelta(minutes=1), submitted_by=PIPELINE)
        decided_at = at + timedelta(minutes=2)
        asked: list[Event] = []
        if approver is None:
            decision = ReviewDecided.caused_by(
                checks, candidate=cand, outcome="approved", mode="automatic", decided_by="policy:default/auto",
                reason="accuracy >= 0.9", policy=policy("auto_approve"), checks_event_id=checks.event_id,
                occurred_at=decided_at)
        else:
            request = ReviewRequested.caused_by(
                checks, submission=submitted.submission, results=results, approvers=(approver,),
                deadline=at + timedelta(days=1), policy=policy("risk_approval"), reason="accuracy < 0.95",
                submitted_by=PIPELINE, occurred_at=at + timedelta(minutes=1, seconds=30))
            vote = Vote(approver=approver, decision="approve", reason=f"{approver} checked the evaluation",
                        channel="http", at=decided_at)
            decision = ReviewDecided.caused_by(
                request, candidate=cand, outcome="approved", mode="human", decided_by=approver, reason=vote.reason,
                policy=request.policy, votes=(vote,), checks_event_id=checks.event_id, occurred_at=decided_at)
            asked = [request]
        deployed = self._deploy(checks, decision, data if install else None, at + timedelta(minutes=3))
        self.events += [submitted, checks, *asked, decision, deployed]
        return Deployed(submitted, decision, deployed)

    def _deploy(self, checks: ChecksPassed, decision: ReviewDecided, data: bytes | None,
                at: datetime) -> DeploymentSucceeded:
        state = lifecycle.Lifecycle(submission_id=checks.submission_id)
        state, _ = lifecycle.advance(state, checks, PLAN)
        state, actions = lifecycle.advance(state, decision, PLAN)
        [deploy] = [a for a in actions if isinstance(a, lifecycle.Deploy)]
        cand = deploy.candidate
        location, name = str(files.version_dir(self.store, cand)), files.uri_name(cand.artifact_uri)
        envelope = attesting.attest(state, decision, name, PLAN.target, location, self.signer.kid,
                                    self.signer.sign_bytes)
        if data is not None:
            release = Release(submission_id=state.submission_id, candidate=cand, approval=decision,
                              metrics=state.metrics, deploy=Inputs(), checked_at=state.checked_at,
                              attestation=envelope)
            source = self.store.parent / "incoming" / name  # what the deployer fetched, outside the store
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_bytes(data)
            files.install(self.store, cand, source, deploying.manifest(release, PLAN), name,
                          attestation.file_bytes(envelope))
            source.unlink()
        self.sequence += 1
        return lifecycle.succeeded_event(state, PLAN.target, location, envelope).model_copy(
            update={"sequence": self.sequence, "occurred_at": at})

    def rollback(self, to: Deployed, from_version: str, at: datetime, by: str = "oncall") -> None:
        """An operator asks at `at`; the deployer restores `to` a minute later."""
        request = RollbackRequested(submission_id=uuid.uuid4(), model=self.model, to_version=to.version,
                                    requested_by=by, reason="p99 latency doubled", occurred_at=at)
        self.sequence += 1
        rolled = DeploymentRolledBack.caused_by(
            request, model=self.model, from_version=from_version, to_version=to.version,
            to_submission_id=to.deployed.submission_id, target=PLAN.target, requested_by=by,
            reason=request.reason, sequence=self.sequence, occurred_at=at + timedelta(minutes=1))
        self.events += [request, rolled]

    def revoke(self, release: Deployed, at: datetime, by: str = "security") -> None:
        """An operator revokes a release no longer in production; the deployer announces it."""
        request = RevocationRequested(submission_id=release.submitted.submission_id, model=self.model,
                                      requested_by=by, reason="trained on data later withdrawn", occurred_at=at)
        self.sequence += 1
        revoked = DeploymentRevoked.caused_by(
            request, candidate=release.deployed.candidate, requested_by=by, reason=request.reason,
            was_in_production=False, sequence=self.sequence, occurred_at=at + timedelta(minutes=1))
        self.events += [request, revoked]


def artifact_bytes(model: str, version: str, size: int) -> bytes:
    """The release's artifact: distinct per release, never taken for a pickle (its first byte)."""
    head = f"weights {model} {version}\n".encode()
    return head + hashlib.shake_256(head).digest(max(size - len(head), 0))


def target_chain(model: str, at: datetime, store: Path, signer: signing.Signer, size: int) -> tuple[Chain, Deployed]:
    """The audited model, the same in both systems: 1.0.0 approved by alice at `at`, 2.0.0 approved
    automatically an hour later, rolled back to 1.0.0 by oncall an hour after that; both versions
    installed. Returns the chain and 1.0.0 (in production from `at` + 2 h 1 min)."""
    chain = Chain(model, store, signer)
    one = chain.release("1.0.0", at, "alice", install=True, size=size)
    chain.release("2.0.0", at + timedelta(hours=1), None, install=True, size=size)
    chain.rollback(one, "2.0.0", at + timedelta(hours=2))
    return chain, one


def busy_chain(model: str, start: datetime, store: Path, signer: signing.Signer, revoke: bool) -> Chain:
    """100 events: five blocks of (release approved by a person, release approved automatically,
    again both, rollback of the last to the one before), three days between releases. With
    `revoke`, the first block ends with a revocation of its first release instead of the rollback.
    The last block's two releases are installed in the store."""
    chain, at = Chain(model, store, signer), start
    for block in range(5):
        last = block == 4
        made = []
        for k, approver in enumerate(("alice", None, "bob", None)):
            made.append(chain.release(f"{block + 1}.{k}.0", at, approver, install=last and k >= 2))
            at += timedelta(days=3)
        if revoke and block == 0:
            chain.revoke(made[0], at)
        else:
            chain.rollback(made[2], made[3].version, at)
        at += timedelta(days=1)
    return chain


def signed(events: list[Event], signers: dict[str, signing.Signer]) -> list[codec.Record]:
    """Each event's record, signed by the role that makes it (`signers`: role -> its key)."""
    out = []
    for event in events:
        role = (signing.APPROVERS[event.mode] if isinstance(event, ReviewDecided)
                else sorted(signing.TRUST[event.type])[0])
        out.append(signers[role].sign(codec.encode(event, SOURCE)))
    return out
