"""Topic names, and their explicit creation: the broker never creates topics on its own."""

from __future__ import annotations

MODEL_SUBMITTED = "model.submitted"
CHECKS_PASSED = "checks.passed"
CHECKS_FAILED = "checks.failed"
REVIEW_REQUESTED = "review.requested"
REVIEW_DECIDED = "review.decided"
DEPLOYMENT_SUCCEEDED = "deployment.succeeded"
DEPLOYMENT_FAILED = "deployment.failed"
REVIEW_ESCALATED = "review.escalated"
ROLLBACK_REQUESTED = "rollback.requested"
REVOCATION_REQUESTED = "revocation.requested"
DEPLOYMENT_PROGRESSED = "deployment.progressed"
DEPLOYMENT_ROLLED_BACK = "deployment.rolled_back"
DEPLOYMENT_REVOKED = "deployment.revoked"
DEPLOYMENT_SUPERSEDED = "deployment.superseded"
DEPLOYMENT_DRIFTED = "deployment.drifted"

EVENT_TOPICS = (
    MODEL_SUBMITTED,
    CHECKS_PASSED,
    CHECKS_FAILED,
    REVIEW_REQUESTED,
    REVIEW_DECIDED,
    DEPLOYMENT_SUCCEEDED,
    DEPLOYMENT_FAILED,
    REVIEW_ESCALATED,
    ROLLBACK_REQUESTED,
    REVOCATION_REQUESTED,
    DEPLOYMENT_PROGRESSED,
    DEPLOYMENT_ROLLED_BACK,
    DEPLOYMENT_REVOKED,
    DEPLOYMENT_SUPERSEDED,
    DEPLOYMENT_DRIFTED,
)

# Topics some service consumes: their bad events are dead-lettered.
CONSUMED_TOPICS = (
    MODEL_SUBMITTED, CHECKS_PASSED, CHECKS_FAILED, REVIEW_REQUESTED, REVIEW_DECIDED,
    DEPLOYMENT_SUCCEEDED, ROLLBACK_REQUESTED, REVOCATION_REQUESTED,
)


def dlq(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return f"{topic}.dlq"


ALL_TOPICS = EVENT_TOPICS + tuple(dlq(t) for t in CONSUMED_TOPICS)
