"""Topic names, and their explicit creation: the broker never creates topics on its own."""

from __future__ import annotations

MODEL_SUBMITTED = "model.submitted"
CHECKS_PASSED = "checks.passed"
CHECKS_FAILED = "checks.failed"
REVIEW_REQUESTED = "review.requested"
REVIEW_DECIDED = "review.decided"
DEPLOYMENT_SUCCEEDED = "deployment.succeeded"
DEPLOYMENT_FAILED = "deployment.failed"

EVENT_TOPICS = (
    MODEL_SUBMITTED,
    CHECKS_PASSED,
    CHECKS_FAILED,
    REVIEW_REQUESTED,
    REVIEW_DECIDED,
    DEPLOYMENT_SUCCEEDED,
    DEPLOYMENT_FAILED,
)

# Topics whose consumers dead-letter bad events.
CONSUMED_TOPICS = EVENT_TOPICS[:5]


def dlq(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return f"{topic}.dlq"


ALL_TOPICS = EVENT_TOPICS + tuple(dlq(t) for t in CONSUMED_TOPICS)
