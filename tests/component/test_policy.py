"""The policy service, in memory: checks.* in, review.decided or review.requested out."""

from __future__ import annotations

import pytest
from faststream.kafka import TestKafkaBroker

from shared import topics
from shared.events import ReviewDecided, ReviewRequested
from tests.component.conftest import DLQ, capture, publish, publish_raw, sent
from tests.unit import factories as f


@pytest.fixture
def policy(load_app):
    return load_app("policy")


def passed_with(accuracy: float):
    return f.checks_passed(f.submitted(f.submission(metrics={"accuracy": accuracy})))



async def test_auto_approves_above_the_bar(policy):
    cause = passed_with(0.95)
    async with TestKafkaBroker(policy.broker) as br:
        await publish(br, cause)
        policy.emitter.publishers[ReviewRequested].mock.assert_not_called()
        out = sent(policy.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.mode, out.decided_by) == ("approved", "automatic", "policy:test-policy/auto_approve")
    assert out.policy.digest == policy.policy.digest
    assert out.causation_id == cause.event_id


async def test_requests_a_review_below_the_bar(policy):
    cause = passed_with(0.85)
    async with TestKafkaBroker(policy.broker) as br:
        await publish(br, cause)
        policy.emitter.publishers[ReviewDecided].mock.assert_not_called()
        out = sent(policy.emitter.publishers[ReviewRequested], topics.REVIEW_REQUESTED)
    assert out.approvers == ("alice", "bob") and out.quorum == 1
    assert out.reason == "accuracy = 0.85 (auto-approve needs >= 0.9)"


async def test_failed_checks_are_rejected(policy):
    cause = f.checks_failed()
    async with TestKafkaBroker(policy.broker) as br:
        await publish(br, cause)
        out = sent(policy.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.decided_by) == ("rejected", "policy:test-policy/checks_failed")
    assert "metric:accuracy" in out.reason


async def test_bad_checks_event_is_dead_lettered_then_the_next_is_decided(policy):
    dead = capture(policy.broker, DLQ(topics.CHECKS_PASSED))
    async with TestKafkaBroker(policy.broker) as br:
        await publish_raw(br, topics.CHECKS_PASSED, b'{"schema_version": 1}')
        await publish(br, passed_with(0.95))
        policy.emitter.publishers[ReviewDecided].mock.assert_called_once()
    [record] = dead.records
    assert record.value == b'{"schema_version": 1}'
    assert "submission: Field required" in dead.headers()["dlq_reason"]
