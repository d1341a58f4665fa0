"""The policy's decisions, as pure functions of the checks outcome, the matching workflow and what
the policy remembers (earlier rejections, the model in production).

    rejected digest before?              -> rejected again at once, citing that decision
    no workflow for the model            -> rejected, saying so
    unsigned, and the workflow requires  -> rejected, not for good (the validator refuses it first;
    signed submissions                      this holds if the two services' workflows disagree)
    a check failed without blocking      -> review requested (rejected, not for good, when the
                                            workflow has no approval step: nobody to ask)
    no approval step                     -> approved automatically
    approval `when` is false             -> approved automatically
    `carry_forward_when` is true         -> approved automatically (retrained within tolerance of
                                            the last release a person approved, recorded as anchored_to)
    otherwise (or a condition errs)      -> review requested from the approvers

Every decision under a workflow carries its policy: the workflow's name, the rule that decided, the
policy digest and the texts it is of (workflow file and groups.yaml, `PolicyDocuments`); a decision
no workflow made names the whole folder's digest. Every decision on checks cites them
(`checks_event_id`): the deployer deploys an approval only with the checks.passed it follows. A
review request carries the verified submitter (`submitted_by`) for separation of duties, and
workflow conditions see that identity as `submitter` when the submission was signed (a claimed name
proves nothing).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared.events import (
    ChecksFailed,
    ChecksPassed,
    Escalation,
    PolicyRef,
    Production,
    ReviewDecided,
    ReviewRequested,
    Submission,
)
from shared.identity import normalise
from shared.rejections import Rejection
from shared.workflow.matching import ConditionError, Loaded


@dataclass(frozen=True)
class Match:
    """The workflow chosen for a model, or why there is none (with the digest of the whole set)."""

    workflow: Loaded | None
    no_match: str
    set_digest: str


def on_checks_passed(event: ChecksPassed, match: Match, rejection: Rejection | None,
                     production: Production | None,
                     anchor: Production | None = None) -> ReviewDecided | ReviewRequested:
    """`production`: the release in production (evidence, and `when`); `anchor`: the newest release
    a person approved, what `carry_forward_when` compares with."""
    workflow = match.workflow
    if rejection is not None:
        return _rejected_before(event, match, rejection)
    if workflow is None:
        return _unmatched(event, match)
    if workflow.workflow.require_signed_submission and event.submitted_by is None:
        return _decide(event, workflow, "rejected", "require_signed_submission", unsigned_reason(workflow),
                       final_for_artifact=False)
    approval = workflow.workflow.approval
    # A check that failed without blocking (production unknown: nothing to compare with) is for a
    # person to weigh, never approved automatically.
    flagged = "; ".join(f"{r.name}: {r.message}" for r in event.results if not r.passed and not r.blocking)
    if approval is None:
        if flagged:
            return _decide(event, workflow, "rejected", "no_approval_step", "a check failed and the "
                           f"workflow has no approval step to ask a person: {flagged}", final_for_artifact=False)
        return _approve(event, workflow, "no_approval_step", "all automated checks passed; "
                        "the workflow has no approval step")
    context = evaluation_context(event, production)
    try:
        if flagged:
            reason = f"a check failed without blocking, so a person decides: {flagged}"
        elif approval.when is not None and not workflow.programs[approval.when](context):
            return _approve(event, workflow, f"{approval.name}.when",
                            f"all automated checks passed and review is not needed: "
                            f"`{approval.when}` is false")
        elif (approval.carry_forward_when is not None and anchor is not None
                and workflow.programs[approval.carry_forward_when](evaluation_context(event, anchor))):
            return _decide(event, workflow, "approved", f"{approval.name}.carry_forward_when",
                           f"carried forward from version {anchor.candidate.version}, the last one a "
                           f"person approved (submission {anchor.submission_id}): "
                           f"`{approval.carry_forward_when}` holds", anchored_to=anchor.submission_id)
        else:
            reason = (f"`{approval.when}` is true" if approval.when else "the workflow requires review")
            if approval.carry_forward_when is not None and anchor is None and production is not None:
                reason += "; nothing to carry forward from: no release in production was approved by a person"
    except ConditionError as exc:
        reason = f"a condition could not be evaluated, so a person decides: {exc}"
    return ReviewRequested.caused_by(
        event,
        submission=event.submission,
        results=event.results,
        approvers=workflow.approvers(),
        quorum=approval.inputs.quorum,
        deadline=event.occurred_at + approval.inputs.timeout,
        on_timeout=approval.inputs.on_timeout,
        escalation=Escalation(approvers=workflow.expand(approval.inputs.escalate_to),
                              timeout=approval.inputs.escalation_timeout)
        if approval.inputs.on_timeout == "escalate" else None,
        remind_every=approval.inputs.remind_every,
        break_glass=workflow.expand(approval.inputs.break_glass),
        veto=approval.inputs.veto,
        policy=_ref(workflow, approval.name),
        reason=reason,
        production=production,
        submitted_by=event.submitted_by,
    )


def on_checks_failed(event: ChecksFailed, match: Match) -> ReviewDecided:
    """Failed checks are a rejection: final for this artifact, recorded like any decision."""
    workflow = match.workflow
    if workflow is None:
        return _unmatched(event, match)
    failed = [f"{r.name}: {r.message}" for r in event.results if r.blocking and not r.passed]
    checks = workflow.workflow.checks.name
    # Final for the digest only when the checks condemned the bytes themselves (the security scan):
    # bytes that did not match say nothing about the digest, and failed declarations (metrics,
    # lineage, fairness, model card) are the submitter's, which anyone may make about any artifact.
    return _decide(event, workflow, "rejected", checks, "automated checks failed: " + "; ".join(failed),
                   final_for_artifact=event.condemns_artifact)


def unsigned_reason(workflow: Loaded) -> str:
    return (f"the submission is unsigned, and workflow {workflow.workflow.name!r} requires signed "
            "submissions (require_signed_submission): submit with the pipeline's signing key")


def evaluation_context(event: ChecksPassed, production: Production | None) -> dict:
    """What workflow conditions see: the submission, its check results, and `production`.
    `submitter` is who signed the submission (its key's owner) when it was signed, else the
    claimed name (a claim: a workflow whose conditions trust it should require signed
    submissions); normalised either way, as identities are everywhere (shared.identity)."""
    s: Submission = event.submission
    submitter = normalise(event.submitted_by.identity if event.submitted_by else s.submitter)
    return {
        "model": s.candidate.model, "version": s.candidate.version, "submitter": submitter,
        "data_version": s.candidate.data_version, "code_commit": s.candidate.code_commit,
        "training_run_id": s.training_run_id or "",
        "metrics": dict(s.metrics), "group_metrics": {g: dict(m) for g, m in s.group_metrics.items()},
        "checks": {r.name: {"passed": r.passed, "measured": r.measured, "threshold": r.threshold}
                   for r in event.results},
        "production": {} if production is None else {
            "version": production.candidate.version, "data_version": production.candidate.data_version,
            "code_commit": production.candidate.code_commit,
            "artifact_sha256": production.candidate.artifact_sha256, "metrics": dict(production.metrics),
        },
    }


def _approve(event: ChecksPassed, workflow: Loaded, rule: str, reason: str) -> ReviewDecided:
    return _decide(event, workflow, "approved", rule, reason)


def _rejected_before(event: ChecksPassed, match: Match, earlier: Rejection) -> ReviewDecided:
    reason = (f"artifact {event.submission.candidate.artifact_sha256} was rejected before, by "
              f"{earlier.decided_by} at {earlier.at.isoformat()} (submission {earlier.submission_id}, "
              f"decision {earlier.event_id}): {earlier.reason}")
    if match.workflow is None:
        return ReviewDecided.caused_by(
            event, candidate=event.submission.candidate, outcome="rejected", mode="automatic",
            decided_by="policy:(no workflow)/rejected_before", reason=reason, cites=earlier.event_id,
            checks_event_id=event.event_id,
            policy=PolicyRef(name="(no workflow)", rule="rejected_before", digest=match.set_digest))
    return _decide(event, match.workflow, "rejected", "rejected_before", reason, cites=earlier.event_id)


def _unmatched(event: ChecksPassed | ChecksFailed, match: Match) -> ReviewDecided:
    return ReviewDecided.caused_by(
        event, candidate=event.submission.candidate, outcome="rejected", mode="automatic",
        decided_by="policy:(no workflow)", reason=match.no_match, final_for_artifact=False,
        checks_event_id=event.event_id,
        policy=PolicyRef(name="(no workflow)", rule="no_workflow", digest=match.set_digest),
    )


def _decide(event: ChecksPassed | ChecksFailed, workflow: Loaded, outcome: str, rule: str,
            reason: str, cites: uuid.UUID | None = None, final_for_artifact: bool = True,
            anchored_to: uuid.UUID | None = None
            ) -> ReviewDecided:
    return ReviewDecided.caused_by(
        event,
        candidate=event.submission.candidate,
        outcome=outcome,
        mode="automatic",
        decided_by=f"policy:{workflow.workflow.name}/{rule}",
        reason=reason,
        policy=_ref(workflow, rule),
        cites=cites,
        final_for_artifact=final_for_artifact,
        anchored_to=anchored_to,
        checks_event_id=event.event_id,
    )


def _ref(workflow: Loaded, rule: str) -> PolicyRef:
    # With the texts in force (the workflow and groups.yaml): the audit shows exactly what decided.
    return workflow.ref(rule)
