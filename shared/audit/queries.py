"""The auditor's questions, answered from the index alone (no broker): a model's every release,
what was in production at a time and the decision that put it there, and the events of a period
as flat rows for compliance tools.

"In production at T" is shared.production's answer over the deployment events that occurred at or
before T: the same book the services keep, ordered by the deployer's sequence, so the audit and
the services never disagree about an order. Only `occurred_at` (signed, the deployer's clock)
chooses which events had happened by T.

A release's submission is the model.submitted its checks event cites (causation_id), of the same
model: a pipeline may write model.submitted with any submission_id and any date, so neither the
id nor the earliest date says which one was checked and approved. Other claims on the id are
listed as `disputed` (and were reported as conflicts when indexed).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

from shared import topics
from shared.audit.index import Index
from shared.audit.views import Entry, InProduction, ModelAudit, Operation, PolicyTexts, Release
from shared.events import (
    ChecksCompleted,
    ChecksFailed,
    DeploymentRevoked,
    DeploymentRolledBack,
    DeploymentSucceeded,
    ModelSubmitted,
    ReviewDecided,
    ReviewEscalated,
    ReviewRequested,
    RevocationRequested,
    RollbackRequested,
)
from shared.production import ProductionBook, Unknown, place

PRODUCTION_TOPICS = (topics.DEPLOYMENT_SUCCEEDED, topics.DEPLOYMENT_ROLLED_BACK, topics.DEPLOYMENT_REVOKED)


def releases(index: Index, model: str) -> ModelAudit:
    """Every submission of `model` with its checks, reviews, decisions (votes, reasons, policy)
    and deployment outcomes, oldest first; and the operators' rollbacks with their outcomes. An
    event whose submission the index lacks still appears, in a release without `submitted`."""
    entries = index.entries(model)
    operation_ids = {e.event.submission_id for e in entries if isinstance(e.event, RollbackRequested)}
    found: dict[uuid.UUID, dict[str, list[Entry]]] = {}
    operations: dict[uuid.UUID, dict[str, list[Entry]]] = {}
    for entry in entries:
        event = entry.event
        if event.submission_id in operation_ids:
            op = operations.setdefault(event.submission_id, {"request": [], "outcomes": []})
            op["request" if isinstance(event, RollbackRequested) else "outcomes"].append(entry)
            if isinstance(event, DeploymentRolledBack):  # the restored release shows it too
                _part(found, event.to_submission_id, entry)
            continue
        _part(found, event.submission_id, entry)
        if isinstance(event, DeploymentRolledBack) and event.to_submission_id != event.submission_id:
            _part(found, event.to_submission_id, entry)
    for entry in entries:  # the release a rollback took out of production shows it too
        event = entry.event
        if isinstance(event, DeploymentRolledBack) and event.from_version is not None:
            left = _deployed_as(found, event.from_version, entry)
            if left is not None and entry not in found[left]["deployments"]:
                _part(found, left, entry)
    out = []
    for sid, parts in found.items():
        submitted = submission(parts["checks"], parts["submitted"])
        out.append(Release(submission_id=sid, version=_version(parts, submitted), submitted=submitted,
                           checks=parts["checks"], reviews=parts["reviews"], decisions=parts["decisions"],
                           deployments=parts["deployments"], revocations=parts["revocations"],
                           disputed=[e for e in parts["submitted"] if e is not submitted]))
    ops = [Operation(operation_id=oid, request=next(iter(parts["request"]), None), outcomes=parts["outcomes"])
           for oid, parts in operations.items()]
    return ModelAudit(model=model, releases=out, operations=ops)


def _part(found: dict[uuid.UUID, dict[str, list[Entry]]], sid: uuid.UUID, entry: Entry) -> None:
    parts = found.setdefault(sid, {k: [] for k in ("submitted", "checks", "reviews", "decisions", "deployments",
                                                   "revocations")})
    match entry.event:
        case ModelSubmitted():
            name = "submitted"
        case ChecksCompleted():
            name = "checks"
        case ReviewRequested() | ReviewEscalated():
            name = "reviews"
        case ReviewDecided():
            name = "decisions"
        case RevocationRequested():
            name = "revocations"
        case _:
            name = "deployments"
    parts[name].append(entry)


def _deployed_as(found: dict[uuid.UUID, dict[str, list[Entry]]], version: str, rollback: Entry) -> uuid.UUID | None:
    """The release of `version` deployed last before `rollback` (what it rolled back from), in the
    deployer's order."""
    deployed = [(place(d.event), sid) for sid, parts in found.items() for d in parts["deployments"]
                if isinstance(d.event, DeploymentSucceeded) and d.event.candidate.version == version
                and place(d.event) < place(rollback.event)]
    return max(deployed, key=lambda pair: pair[0])[1] if deployed else None


def submission(checks: list[Entry], claims: list[Entry]) -> Entry | None:
    """The model.submitted among `claims` (one model's, one submission_id's) that the checks
    cite; without checks, the only claim. None when that is not one event: the chain's submission
    is not indexed (an open link says so) or the claims cannot be told apart."""
    cited = {c.event.causation_id for c in checks}
    chosen = [e for e in claims if e.event.event_id in cited] if checks else claims
    return chosen[0] if len(chosen) == 1 else None


def _version(parts: dict[str, list[Entry]], submitted: Entry | None) -> str | None:
    if submitted is not None:
        assert isinstance(submitted.event, ModelSubmitted)
        return submitted.event.submission.candidate.version
    for entry in (e for name, es in parts.items() if name != "submitted" for e in es):
        event = entry.event
        if isinstance(event, ModelSubmitted):
            return event.submission.candidate.version
        candidate = getattr(event, "candidate", None)
        if candidate is not None and not isinstance(event, DeploymentRolledBack):
            return str(candidate.version)
    return None


def production_at(index: Index, model: str, at: datetime) -> InProduction:
    """What was in production for `model` at `at`, as the deployment events that had occurred by
    then tell it, and what put it there."""
    entries = index.entries(model, PRODUCTION_TOPICS, until=at)
    book = ProductionBook(keep=None)  # one model's history up to `at`, read anyway: nothing dropped
    for entry in entries:
        book.apply(entry.event)
    current = book.get(model)
    setters = [e for e in entries if isinstance(e.event, DeploymentSucceeded | DeploymentRolledBack)]
    if current is None:
        last = max(setters, key=lambda e: place(e.event), default=None)
        if last is None:
            return InProduction(model=model, at=at, state="nothing", note=f"nothing of {model} was deployed by then")
        released = _restored(last)
        revoked = [e for e in entries if isinstance(e.event, DeploymentRevoked) and e.event.submission_id == released]
        return InProduction(model=model, at=at, state="nothing", taken_out_by=revoked[-1] if revoked else None,
                            note="the release in production had been revoked")
    set_by = max((e for e in setters if _restored(e) == current.submission_id), key=lambda e: place(e.event))
    request = (index.entry(set_by.event.causation_id, topics.ROLLBACK_REQUESTED)
               if isinstance(set_by.event, DeploymentRolledBack) else None)
    if isinstance(current, Unknown):
        return InProduction(model=model, at=at, state="unknown", version=current.version,
                            submission_id=current.submission_id, set_by=set_by, rollback_request=request,
                            note=current.reason)
    deployment = next(iter(index.of_submission(model, current.submission_id, (topics.DEPLOYMENT_SUCCEEDED,))), None)
    approval = index.entry(deployment.event.causation_id, topics.REVIEW_DECIDED) if deployment is not None else None
    if approval is not None and approval.event.key != model:
        approval = None
    checks = index.of_submission(model, current.submission_id, (topics.CHECKS_PASSED, topics.CHECKS_FAILED))
    return InProduction(
        model=model, at=at, state="deployed", version=current.candidate.version,
        submission_id=current.submission_id, set_by=set_by, rollback_request=request, deployment=deployment,
        approval=approval, submitted=submission(
            checks, index.of_submission(model, current.submission_id, (topics.MODEL_SUBMITTED,))),
        note="" if approval is not None else "the decision this deployment acted on is not in the index")


def _restored(entry: Entry) -> uuid.UUID:
    event = entry.event
    return event.to_submission_id if isinstance(event, DeploymentRolledBack) else event.submission_id


def policy_in_force(index: Index, model: str, at: datetime) -> tuple[InProduction, str | None, PolicyTexts | None]:
    """What was in production at `at`, the policy digest its approval names, and the policy texts
    under that digest (None when nothing approved was in production, or no decision carried them)."""
    answer = production_at(index, model, at)
    decision = answer.approval.event if answer.approval is not None else None
    digest = decision.policy.digest if isinstance(decision, ReviewDecided) else None
    return answer, digest, index.policy(digest) if digest is not None else None


EXPORT_COLUMNS = ("occurred_at", "type", "model", "version", "submission_id", "event_id", "actor", "outcome",
                  "policy_digest", "signer", "signer_role", "signer_owner", "signer_kid", "topic", "partition",
                  "offset", "event")


def export_rows(index: Index, since: datetime, until: datetime | None = None) -> Iterator[dict[str, object]]:
    """One flat row per event that occurred in [since, until), oldest first (`EXPORT_COLUMNS`;
    `event` is the whole event as a JSON object)."""
    for entry in index.between(since, until):
        yield row(entry)


def row(entry: Entry) -> dict[str, object]:
    event = entry.event
    candidate = getattr(event, "candidate", None) or getattr(getattr(event, "submission", None), "candidate", None)
    policy = getattr(event, "policy", None)
    return {
        "occurred_at": event.occurred_at.isoformat(), "type": event.type, "model": event.key,
        "version": candidate.version if candidate is not None else getattr(event, "to_version", None),
        "submission_id": str(event.submission_id), "event_id": str(event.event_id),
        "actor": _actor(entry), "outcome": _outcome(entry), "policy_digest": policy.digest if policy else None,
        "signer": entry.signer.name, "signer_role": entry.signer.role, "signer_owner": entry.signer.owner,
        "signer_kid": entry.signer.kid, "topic": entry.topic, "partition": entry.partition, "offset": entry.offset,
        "event": event.model_dump(mode="json"),
    }


def _actor(entry: Entry) -> str:
    """Who acted: the approver or policy rule of a decision, the operator of a request, the
    claimed submitter of a submission (its verified signer is the `signer` column)."""
    event = entry.event
    for name in ("decided_by", "requested_by"):
        if (who := getattr(event, name, None)) is not None:
            return str(who)
    if isinstance(event, ModelSubmitted):
        return event.submission.submitter
    return entry.signer.name


def _outcome(entry: Entry) -> str:
    event = entry.event
    if isinstance(event, ReviewDecided):
        return event.outcome
    if isinstance(event, ChecksCompleted):
        return "failed" if isinstance(event, ChecksFailed) else "passed"
    return event.topic.rsplit(".", 1)[-1]
