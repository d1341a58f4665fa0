"""A model's history as the services would have written it, for the audit tests: each release's
submission, checks, decision and deployment, and operators' rollbacks, at chosen times and with
the deployer's sequence numbers. `History.events` are in the order written; tests sign them with
tests/keys.py and feed them to the index (unit) or publish them (integration)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.events import (
    ChecksPassed,
    DeploymentRolledBack,
    DeploymentSucceeded,
    Event,
    ModelSubmitted,
    PolicyDocuments,
    PolicyRef,
    ReviewDecided,
    ReviewRequested,
    RollbackRequested,
    Vote,
)
from tests.unit import factories as f

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WORKFLOW = "name: default\nmatch: ['*']\nsteps: []\n"


def policy(rule: str, workflow: str = WORKFLOW, groups: str = "risk: [alice, bob]\n") -> PolicyRef:
    documents = PolicyDocuments(workflow=workflow, groups=groups)
    return PolicyRef(name="default", rule=rule, digest=documents.digest(), documents=documents)


@dataclass
class Release:
    submitted: ModelSubmitted
    checks: ChecksPassed
    decision: ReviewDecided
    deployed: DeploymentSucceeded


@dataclass
class History:
    model: str
    events: list[Event] = field(default_factory=list)
    sequence: int = 0

    def release(self, version: str, at: datetime, approver: str | None = "alice",
                ref: PolicyRef | None = None) -> Release:
        """Submitted at `at`, checked a minute later, decided (by `approver`, or automatically when
        None) after two, deployed after three."""
        ref = ref or policy("risk_approval" if approver else "auto_approve")
        cand = f.candidate(model=self.model, version=version)
        submitted = ModelSubmitted(submission_id=uuid.uuid4(), occurred_at=at,
                                   submission=f.submission(cand, submitter="carol"))
        checks = ChecksPassed.caused_by(submitted, submission=submitted.submission, results=f.results(),
                                        occurred_at=at + timedelta(minutes=1), submitted_by=f.PIPELINE)
        decided_at = at + timedelta(minutes=2)
        if approver is None:
            decision = ReviewDecided.caused_by(
                checks, candidate=cand, outcome="approved", mode="automatic", decided_by="policy:default/auto",
                reason="accuracy >= 0.9", policy=ref, checks_event_id=checks.event_id, occurred_at=decided_at)
            asked: list[Event] = []
        else:
            request = ReviewRequested.caused_by(
                checks, submission=submitted.submission, results=checks.results, approvers=(approver,),
                deadline=at + timedelta(days=1), policy=ref, reason="accuracy < 0.95", submitted_by=f.PIPELINE,
                occurred_at=at + timedelta(minutes=1, seconds=30))
            vote = Vote(approver=approver, decision="approve", reason=f"{approver} checked the evaluation",
                        channel="http", at=decided_at)
            decision = ReviewDecided.caused_by(
                request, candidate=cand, outcome="approved", mode="human", decided_by=approver,
                reason=vote.reason, policy=ref, votes=(vote,), checks_event_id=checks.event_id,
                occurred_at=decided_at)
            asked = [request]
        self.sequence += 1
        deployed = DeploymentSucceeded.caused_by(
            decision, candidate=cand, target="model-store", location=f"/store/{self.model}/{version}",
            metrics={"accuracy": 0.95}, approval_mode=decision.mode, sequence=self.sequence,
            occurred_at=at + timedelta(minutes=3))
        self.events += [submitted, checks, *asked, decision, deployed]
        return Release(submitted, checks, decision, deployed)

    def rollback(self, to: Release, from_version: str, at: datetime, by: str = "oncall") -> DeploymentRolledBack:
        """An operator asks at `at`; the deployer restores `to` a minute later."""
        request = RollbackRequested(submission_id=uuid.uuid4(), model=self.model, to_version=to.submitted.submission
                                    .candidate.version, requested_by=by, reason="p99 latency doubled", occurred_at=at)
        self.sequence += 1
        rolled = DeploymentRolledBack.caused_by(
            request, model=self.model, from_version=from_version, to_version=to.deployed.candidate.version,
            to_submission_id=to.deployed.submission_id, target="model-store", requested_by=by,
            reason=request.reason, sequence=self.sequence, occurred_at=at + timedelta(minutes=1))
        self.events += [request, rolled]
        return rolled


def deployed_rolled_back_redeployed(model: str) -> tuple[History, Release, Release, Release]:
    """1.0 approved by alice (09:00), 2.0 automatically (10:00), rolled back to 1.0 by oncall
    (11:00), 3.0 approved by bob under another workflow text (12:00); each deployed 3 minutes
    after its submission, the rollback done a minute after it was asked."""
    history = History(model)
    one = history.release("1.0", T0)
    two = history.release("2.0", T0 + timedelta(hours=1), approver=None)
    history.rollback(one, "2.0", T0 + timedelta(hours=2))
    three = history.release("3.0", T0 + timedelta(hours=3), approver="bob",
                            ref=policy("risk_approval", WORKFLOW + "# quorum raised\n"))
    return history, one, two, three


def without_texts(event: Event) -> Event:
    """`event` as the index keeps it: its policy texts stored apart, under their digest."""
    ref = getattr(event, "policy", None)
    return event.model_copy(update={"policy": ref.model_copy(update={"documents": None})}) if ref else event
