"""A rejection is final for its artifact, whatever crashes and lag: the targeted probes, on the real
broker with the services as processes. The rejection is made while the services that must honour
it are down; they then face the same bytes under other model names (other partitions), all at
once after their restart, with their consumer groups lagging."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from shared import topics
from shared.events import (
    Candidate,
    CheckResult,
    ChecksPassed,
    ModelSubmitted,
    PolicyRef,
    ReviewDecided,
    Submission,
)
from signoff import client
from tests import keys
from tests.e2e.conftest import Env
from tests.e2e.test_paths import submit
from tests.eventlog import EventLog

pytestmark = pytest.mark.kafka

COPIES = 20


async def reject_while_down(e2e: Env, events: EventLog, model: str,
                            down: tuple[str, ...]) -> tuple[ReviewDecided, bytes]:
    """A submission a reviewer rejects while `down` are killed; its decision and its bytes."""
    first = submit(e2e, model, "1.0.0", accuracy=0.85)  # below the bar: a person decides
    await e2e.review_open(first)
    for service in down:
        e2e.stack.kill(service)
    e2e.cli("review", first, "reject", "--reason", "trained on leaked labels", person="bob")
    rejection = (await events.wait_terminal(first)).event
    assert rejection.outcome == "rejected" and rejection.final_for_artifact
    return rejection, (e2e.artifacts / f"{model}-1.0.0.bin").read_bytes()


def copy_of(e2e: Env, model: str, content: bytes, accuracy: float = 0.99) -> Submission:
    path, digest = e2e.artifact(f"{model}.bin", content)
    return Submission(candidate=Candidate(model=model, version="2.0.0", artifact_uri=path.as_uri(),
                                          artifact_sha256=digest, data_version="2026-11-01",
                                          code_commit="3f2c9ab"),
                      metrics={"accuracy": accuracy}, submitter="carol")


async def test_the_policy_rejects_every_copy_at_once_after_a_rejection_it_slept_through(
        e2e: Env, events: EventLog, unique: str) -> None:
    model = f"probe-{unique}"
    try:
        rejection, content = await reject_while_down(e2e, events, model, ("policy", "deployer"))
        copies = [await client.submit(e2e.pipeline, copy_of(e2e, f"{model}-{i}", content)) for i in range(COPIES)]
        sids = [str(c.submission_id) for c in copies]
        await events.wait_for(lambda log: all(log.about(s, topics.CHECKS_PASSED) for s in sids), 120,
                              "the copies' checks to pass")
    finally:  # both come back to a backlog: checks.passed of every copy, and the rejection
        for service in ("policy", "deployer"):
            if service not in e2e.stack.procs:
                e2e.stack.start(service)
    ends = [await events.wait_terminal(s, timeout=120) for s in sids]

    assert [(e.topic, e.event.outcome) for e in ends] == [(topics.REVIEW_DECIDED, "rejected")] * COPIES
    assert {e.event.cites for e in ends} == {rejection.event_id}
    assert {e.event.policy.rule for e in ends} == {"rejected_before"}
    assert not any(events.about(s, topics.REVIEW_REQUESTED) for s in sids)
    assert not any(events.about(s, topics.DEPLOYMENT_SUCCEEDED) for s in sids)


async def test_the_deployer_deploys_no_copy_approved_after_a_rejection_it_slept_through(
        e2e: Env, events: EventLog, unique: str) -> None:
    """Approvals of the rejected bytes under other names (forged here, as a policy that missed the
    rejection would have made them) wait on other partitions than the rejection: none deploys."""
    model = f"backstop-{unique}"
    try:
        rejection, content = await reject_while_down(e2e, events, model, ("policy", "deployer"))
        forged = []
        for i in range(COPIES):
            submitted = ModelSubmitted(submission_id=uuid.uuid4(), submission=copy_of(e2e, f"{model}-{i}", content))
            digest = submitted.submission.candidate.artifact_sha256
            passed = ChecksPassed.caused_by(submitted, submission=submitted.submission, results=(
                CheckResult(name="integrity", passed=True, measured=digest, threshold=digest),))
            approved = ReviewDecided.caused_by(
                passed, candidate=submitted.submission.candidate, outcome="approved", mode="automatic",
                decided_by="policy:e2e-default/manual_approval.when", reason="above the bar",
                policy=PolicyRef(name="e2e-default", rule="manual_approval.when",
                                 digest=hashlib.sha256(b"forged").hexdigest()), checks_event_id=passed.event_id)
            forged += [passed, approved]
        # As the admin (no pipeline may write them), signed by the validator's and the policy's keys:
        # a policy that approves anyway (a bug, or its key stolen) meets the deployer's backstop.
        await client.publish(e2e.admin, forged[::2], signer=keys.signer("validator"))
        await client.publish(e2e.admin, forged[1::2], signer=keys.signer("policy"))
        e2e.stack.start("deployer")  # the policy stays down: only the deployer's backstop is at work
        sids = [str(e.submission_id) for e in forged[::2]]
        ends = [await events.wait_terminal(s, timeout=120) for s in sids]
    finally:
        for service in ("policy", "deployer"):
            if service not in e2e.stack.procs:
                e2e.stack.start(service)

    assert [e.topic for e in ends] == [topics.DEPLOYMENT_FAILED] * COPIES
    assert all("was rejected before; a rejection is final" in e.event.reason for e in ends)
    assert not any(events.about(s, topics.DEPLOYMENT_SUCCEEDED) for s in sids)
    assert not any((e2e.model_store / f"{model}-{i}").exists() for i in range(COPIES))
    assert rejection.candidate.artifact_sha256 == ends[0].event.candidate.artifact_sha256
