"""How a submission's events read as a timeline, and when it has reached its end."""

from __future__ import annotations

from shared.events import (
    ChecksCompleted,
    DeploymentDrifted,
    DeploymentFailed,
    DeploymentProgressed,
    DeploymentRevoked,
    DeploymentRolledBack,
    DeploymentSucceeded,
    DeploymentSuperseded,
    Event,
    ModelSubmitted,
    ReviewDecided,
    ReviewEscalated,
    ReviewRequested,
    RevocationRequested,
    RollbackRequested,
)


def is_terminal(event: Event) -> bool:
    """Deployed, failed to deploy, or rejected: nothing more will happen to this submission."""
    if isinstance(event, (DeploymentSucceeded, DeploymentFailed, DeploymentRolledBack, DeploymentRevoked,
                          DeploymentSuperseded)):
        return True
    return isinstance(event, ReviewDecided) and event.outcome == "rejected"


class Ending:
    """Whether a followed timeline has ended: a terminal event was seen and no rollback or
    revocation asked for since is still waiting for its outcome (a deployed submission that is
    then revoked goes on until it is revoked)."""

    def __init__(self) -> None:
        self.ended = False
        self.pending: set[str] = set()

    def see(self, event: Event) -> bool:
        """Take `event` into account; False when it is noise after the end (a redelivered or
        forged decision after the final one), which a timeline does not show."""
        if self.done and not isinstance(event, (RevocationRequested, RollbackRequested)):
            return False
        if isinstance(event, RevocationRequested):
            self.pending.add("revocation")
        elif isinstance(event, RollbackRequested):
            self.pending.add("rollback")
        elif isinstance(event, DeploymentRevoked):
            self.pending.discard("revocation")
        elif isinstance(event, (DeploymentRolledBack, DeploymentFailed)):
            self.pending.discard("rollback")
        self.ended = self.ended or is_terminal(event)
        return True

    @property
    def done(self) -> bool:
        return self.ended and not self.pending


def outcome(event: Event) -> str:
    if isinstance(event, DeploymentSucceeded):
        return "deployed"
    if isinstance(event, DeploymentFailed):
        return "deployment failed"
    if isinstance(event, ReviewDecided):
        return event.outcome
    if isinstance(event, DeploymentRolledBack):
        return "rolled back"
    if isinstance(event, DeploymentRevoked):
        return "revoked"
    if isinstance(event, DeploymentSuperseded):
        return "superseded"
    return "pending"


def describe(event: Event) -> str:
    match event:
        case ModelSubmitted(submission=s):
            c = s.candidate
            return (f"{c.model} {c.version} by {s.submitter} (sha256 {c.artifact_sha256[:12]}, "
                    f"data {c.data_version}, commit {c.code_commit})")
        case ChecksCompleted(results=results):
            return ", ".join(f"{r.name} {'ok' if r.passed else 'FAILED'}" for r in results) + \
                "".join(f"\n{'':34}{r.name}: {r.message}" for r in results if not r.passed)
        case ReviewRequested(approvers=approvers, quorum=quorum, reason=reason):
            return f"asks {', '.join(approvers)} (quorum {quorum}): {reason}"
        case ReviewDecided(outcome=o, mode=mode, decided_by=by, reason=reason, policy=policy):
            return (f"{o} ({mode}) by {by}, workflow {policy.name}@{policy.digest[:12]} "
                    f"rule {policy.rule}: {reason}")
        case DeploymentSucceeded(target=target, location=location):
            return f"{target}: {location}"
        case DeploymentFailed(reason=reason):
            return reason
        case ReviewEscalated(approvers=approvers, deadline=deadline, reason=reason):
            return f"escalated to {', '.join(approvers)} until {deadline:%Y-%m-%d %H:%M}Z: {reason}"
        case RollbackRequested(model=model, to_version=to, requested_by=by, reason=reason):
            return f"{model} back to {to or 'the last healthy version'}, asked by {by}: {reason}"
        case RevocationRequested(requested_by=by, reason=reason):
            return f"asked by {by}: {reason}"
        case DeploymentProgressed(stage=stage, traffic_percent=pct, target=target):
            return f"{target}: stage {stage} at {pct}% of traffic"
        case DeploymentRolledBack(model=model, from_version=old, to_version=new, requested_by=by, reason=reason):
            return f"{model} {old or '(none)'} -> {new}, by {by}: {reason}"
        case DeploymentSuperseded(superseded_by_version=version, reason=reason):
            return f"not deployed, superseded by {version}: {reason}"
        case DeploymentRevoked(candidate=c, requested_by=by, reason=reason, was_in_production=live):
            return f"{c.model} {c.version} revoked by {by}{' (was in production)' if live else ''}: {reason}"
        case DeploymentDrifted(action=action, reason=reason):
            return f"{action}: {reason}"
    return ""


def line(event: Event) -> str:
    when = event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
    return f"{when}  {event.topic:<20}  {describe(event)}"


def history_line(event: Event) -> str:
    """A line of a model's history: like `line`, with the version (or operation) it is about."""
    when = event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
    candidate = getattr(event, "candidate", None)
    about = candidate.version if candidate is not None else f"op {str(event.submission_id)[:8]}"
    return f"{when}  {event.topic:<22}  {about:<12}  {describe(event)}"
