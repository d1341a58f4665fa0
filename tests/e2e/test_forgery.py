"""Forgeries on the real broker, with the four services as processes: a client the ACLs let
write anything (here the admin, as on a cluster whose ACLs are open) publishes checks.passed,
review.decided, deployment.succeeded, rollback.requested and revocation.requested, unsigned. Each
is dead-lettered as unsigned (the deployment, read only by followers, is skipped), and nothing
deploys, rolls back, revokes or changes the production view; a signed submission deploys after."""

from __future__ import annotations

import pickle
import uuid

import pytest

from services.deployer.targets import _store_files as store_files
from shared import topics
from shared.events import (
    CheckResult,
    ChecksPassed,
    DeploymentSucceeded,
    PolicyRef,
    ReviewDecided,
    RevocationRequested,
    RollbackRequested,
)
from signoff import client
from tests import keys
from tests.e2e.conftest import Env
from tests.e2e.test_validator_checks import deploy, strict_submission
from tests.eventlog import EventLog

pytestmark = pytest.mark.kafka

FORGER = "/tests/forger"


async def test_forged_decisions_on_an_open_broker_are_dead_lettered_and_change_nothing(
        e2e: Env, events: EventLog, unique: str) -> None:
    model = f"strict-forged-{unique}"
    live = await deploy(e2e, events, model, "1", accuracy=0.95)

    victim = strict_submission(e2e, model, "2", pickle.dumps(["2"]), accuracy=0.5)  # would fail its checks
    candidate, digest = victim.submission.candidate, victim.submission.candidate.artifact_sha256
    passed = ChecksPassed.caused_by(victim, submission=victim.submission, results=(
        CheckResult(name="integrity", passed=True, measured=digest, threshold=digest),))
    approved = ReviewDecided.caused_by(
        passed, candidate=candidate, outcome="approved", mode="automatic", decided_by="policy:e2e-strict/checks",
        reason="forged", policy=PolicyRef(name="e2e-strict", rule="checks", digest="0" * 64),
        checks_event_id=passed.event_id)
    # A production of 0.99 accuracy: believed, it would fail the next submission's regression check.
    fake = DeploymentSucceeded.caused_by(approved, candidate=candidate.model_copy(update={"version": "9"}),
                                         target="model-store", location="/nowhere", metrics={"accuracy": 0.99})
    rollback = RollbackRequested(submission_id=uuid.uuid4(), model=model, requested_by="oncall", reason="forged")
    revoke = RevocationRequested(submission_id=live.submission_id, model=model, requested_by="security",
                                 reason="forged")
    await client.publish(e2e.admin, [passed, approved, fake, rollback, revoke], source=FORGER)

    def letters(log: EventLog) -> list | None:
        found = [s for s in log.records if s.topic.endswith(".dlq") and s.headers.get("ce_source") == FORGER
                 and s.subject in (str(victim.submission_id), str(rollback.submission_id),
                                   str(live.submission_id))]
        # checks.passed: the policy and the deployer; review.decided, rollback, revocation: the deployer.
        return found if len(found) >= 5 else None

    dead = await events.wait_for(letters, timeout=60, what="the forgeries' dead letters")
    assert sorted(s.topic for s in dead) == sorted([topics.dlq(topics.CHECKS_PASSED)] * 2 + [
        topics.dlq(topics.REVIEW_DECIDED), topics.dlq(topics.ROLLBACK_REQUESTED),
        topics.dlq(topics.REVOCATION_REQUESTED)])
    assert all(s.headers["dlq_reason"].startswith("untrusted event: unsigned: ") for s in dead), dead

    assert store_files.production(e2e.model_store, model) == "1"  # not rolled back, not revoked
    assert not events.about(rollback.submission_id, topics.DEPLOYMENT_ROLLED_BACK)
    assert not events.about(live.submission_id, topics.DEPLOYMENT_REVOKED)
    assert [s for s in events.records if s.subject == str(victim.submission_id)
            and s.headers.get("ce_source") != FORGER] == []  # nothing but the forgeries and their letters
    assert not (e2e.model_store / model / "2").exists()

    # A pipeline's signed submission: checked against the real production (1, 0.95), not the
    # forged 0.99, so its 0.95 passes the regression check, and it deploys.
    signed = strict_submission(e2e, model, "3", pickle.dumps(["3"]), accuracy=0.95)
    await client.publish(e2e.pipeline, [signed], signer=keys.signer("pipeline-test"))
    end = await events.wait_terminal(signed.submission_id, timeout=120)
    assert end.topic == topics.DEPLOYMENT_SUCCEEDED, end
    [checked] = [s.event for s in events.about(signed.submission_id, topics.CHECKS_PASSED)]
    regression = {r.name: r for r in checked.results}["regression:accuracy"]
    assert regression.passed and "vs production 1 0.95" in regression.message
    assert store_files.production(e2e.model_store, model) == "3"
