"""Decisions on signed facts (issue 11), through the services: who submitted is the key that signed
the submission; an approval deploys only the checks it cites; production is ordered by the
deployer's own sequence. The same bodies run in memory and on the real broker (`--broker=kafka`)."""

from __future__ import annotations

import functools
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.review_notifier.reviews import Refused
from shared import codec, signing, topics
from shared.events import (
    ChecksFailed,
    ChecksPassed,
    DeploymentFailed,
    DeploymentRolledBack,
    DeploymentSucceeded,
    ReviewDecided,
    RollbackRequested,
    Submitter,
    Vote,
)
from tests import keys
from tests.component.conftest import WORKFLOW, publish, publish_record, running, sent, sent_all, write_workflows
from tests.unit import factories as f

ALICES_PIPELINE = Submitter(name="fraud-ci", owner="alice", team="risk")


@functools.cache
def alices_pipeline() -> tuple[signing.Signer, Path]:
    """A pipeline key owned by alice, and a trust file listing it beside the tests' keys."""
    private = Ed25519PrivateKey.generate()
    trust = signing.read_trust(keys.keys().trust)
    trust.keys.append(signing.new_entry(private, ALICES_PIPELINE.name, "pipeline", owner="alice", team="risk"))
    path = Path(tempfile.mkdtemp(prefix="signoff-s2-trust-")) / "trusted-keys.yaml"
    signing.write_trust(path, trust)
    return signing.Signer(private), path


def submitted_for(artifact, submitter: str = "pipeline", version: str = "1.4.0"):
    cand = f.candidate(artifact_uri=artifact.path.as_uri(), artifact_sha256=artifact.sha256, version=version)
    return f.submitted(f.submission(cand, submitter=submitter))


# --- the validator: submitted_by is the verified signer -------------------------------------------

async def test_the_checks_record_the_pipeline_key_that_signed_the_submission(build_app, artifact):
    signer, trust = alices_pipeline()
    validator = build_app("validator", trusted_keys=trust)
    signed_event, unsigned_event = submitted_for(artifact, submitter="bob"), submitted_for(artifact)
    async with running(validator.broker) as br:
        await publish_record(br, signer.sign(codec.encode(signed_event, "/pipeline")))
        await publish_record(br, codec.encode(unsigned_event, "/pipeline"))  # accepted unsigned (the default)
        out = sent_all(validator.emitter.publishers[ChecksPassed], topics.CHECKS_PASSED)
    by_cause = {e.causation_id: e for e in out}
    assert by_cause[signed_event.event_id].submitted_by == ALICES_PIPELINE  # not the claimed "bob"
    assert by_cause[unsigned_event.event_id].submitted_by is None


async def test_a_workflow_requiring_signatures_fails_an_unsigned_submission_unread(build_app, artifact, tmp_path):
    signer, trust = alices_pipeline()
    required = WORKFLOW.replace("default: true\n", "default: true\nrequire_signed_submission: true\n")
    folder = write_workflows(tmp_path / "signed-workflows", default=required)
    validator = build_app("validator", trusted_keys=trust, workflows=folder)
    unsigned, signed_event = submitted_for(artifact), submitted_for(artifact)
    async with running(validator.broker) as br:
        await publish_record(br, codec.encode(unsigned, "/pipeline"))
        await publish_record(br, signer.sign(codec.encode(signed_event, "/pipeline")))
        failed = sent(validator.emitter.publishers[ChecksFailed], topics.CHECKS_FAILED)
        passed = sent(validator.emitter.publishers[ChecksPassed], topics.CHECKS_PASSED)
    assert failed.causation_id == unsigned.event_id and not failed.artifact_verified
    assert [r.name for r in failed.results] == ["signed_submission"]
    assert passed.causation_id == signed_event.event_id and passed.submitted_by == ALICES_PIPELINE


# --- the policy: decisions cite their checks; requests carry the verified submitter ---------------

async def test_the_policys_decisions_cite_the_checks_and_carry_the_submitter(build_app):
    policy = build_app("policy")
    high = f.checks_passed(f.submitted(f.submission(metrics={"accuracy": 0.95})))
    low = f.checks_passed(f.submitted(f.submission(metrics={"accuracy": 0.85})))
    low = low.model_copy(update={"submitted_by": ALICES_PIPELINE})
    async with running(policy.broker) as br:
        await publish(br, high)
        await publish(br, low)
        approved = sent(policy.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
        requested = sent(policy.emitter.publishers[type(f.review_requested())], topics.REVIEW_REQUESTED)
    assert approved.checks_event_id == high.event_id and approved.outcome == "approved"
    assert requested.causation_id == low.event_id and requested.submitted_by == ALICES_PIPELINE


# --- the review-notifier: separation of duties on who proved they submitted -----------------------

def vote(approver: str) -> Vote:
    return Vote(approver=approver, decision="approve", reason="fine", channel="http", at=datetime.now(UTC))


async def test_alice_cannot_approve_what_her_pipeline_signed_whatever_it_claims(build_app):
    notifier = build_app("review_notifier")
    request = f.review_requested(f.submitted(f.submission(submitter="pipeline")), approvers=("alice", "bob"),
                                 submitted_by=ALICES_PIPELINE)
    async with running(notifier.broker) as br:
        await publish(br, request)
        with pytest.raises(Refused, match="alice owns the key fraud-ci"):
            await notifier.reviewer.vote(request.submission_id, vote("alice"))
        _, decision = await notifier.reviewer.vote(request.submission_id, vote("bob"))
    assert decision is not None and decision.outcome == "approved"
    assert decision.checks_event_id == request.causation_id


@pytest.mark.parametrize("claimed", ["аlice", "pipeline@ci"])
async def test_a_look_alike_or_unknown_claimed_submitter_lets_nobody_approve(build_app, claimed):
    """Unsigned, claiming `аlice` (Cyrillic а) or `pipeline@ci`: alice cannot approve her own
    model under either name, and since nothing shows who did submit it, nor can anyone else."""
    notifier = build_app("review_notifier")
    request = f.review_requested(f.submitted(f.submission(submitter=claimed)), approvers=("alice", "bob"),
                                 submitted_by=None)
    async with running(notifier.broker) as br:
        await publish(br, request)
        for approver in ("alice", "bob"):
            with pytest.raises(Refused) as info:
                await notifier.reviewer.vote(request.submission_id, vote(approver))
            assert info.value.status == 403 and "sign its submissions" in info.value.message
    assert notifier.store.get(request.submission_id).decision is None


# --- the deployer: the chain, and the sequence -----------------------------------------------------

@pytest.fixture
def deployer(build_app):
    return build_app("deployer")


async def test_a_forged_pair_published_before_the_submission_does_not_deploy(deployer, artifact, tmp_path):
    """A checks.passed and an approval citing it, published before model.submitted by someone
    without the validator's or the policy's key; then the validator fails the real submission."""
    cause = submitted_for(artifact)
    forged_checks = f.checks_passed(cause)
    forged_approval = f.decided(cause, mode="automatic", decided_by="policy:test-policy/x")
    async with running(deployer.broker) as br:
        await publish(br, forged_checks, by="pipeline-test")  # a key, but not the validator's
        await publish_record(br, codec.encode(forged_approval, "/signoff/policy"))  # unsigned
        await publish(br, f.checks_failed(cause))  # the validator's verdict
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
    assert deployer.store.load(cause.submission_id).status == "rejected"
    assert not (tmp_path / "store" / "fraud-detector").exists()


@pytest.mark.parametrize("order", ["checks-first", "approval-first"])
async def test_an_approval_citing_other_checks_is_refused(deployer, artifact, tmp_path, order):
    """Signed by the policy, same candidate, but it follows checks the deployer does not hold for
    the submission: deployment.failed saying so, nothing deployed, and a later good approval
    changes nothing."""
    cause = submitted_for(artifact)
    stray = f.decided(cause, checks_event_id=uuid.uuid4(), salt="stray")
    async with running(deployer.broker) as br:
        for event in ((f.checks_passed(cause), stray) if order == "checks-first" else (stray, f.checks_passed(cause))):
            await publish(br, event)
        await publish(br, f.decided(cause))
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
        failed = sent(deployer.emitter.publishers[DeploymentFailed], topics.DEPLOYMENT_FAILED)
    assert failed.causation_id == stray.event_id and f"cites checks event {stray.checks_event_id}" in failed.reason
    assert deployer.store.load(cause.submission_id).status == "failed"
    assert not (tmp_path / "store" / "fraud-detector").exists()


async def test_well_formed_submissions_deploy_and_each_production_change_is_numbered(deployer, artifact,
                                                                                      artifact_root):
    second = artifact_root / "fraud-1.5.0.onnx"
    second.write_bytes(b"better weights")
    v1 = submitted_for(artifact)
    v2 = f.submitted(f.submission(f.candidate(version="1.5.0", artifact_uri=second.as_uri(),
                                              artifact_sha256=f.hashlib.sha256(b"better weights").hexdigest())))
    rollback = RollbackRequested(submission_id=uuid.uuid4(), model="fraud-detector", requested_by="oncall",
                                 reason="p99 latency doubled")
    async with running(deployer.broker) as br:
        for cause in (v1, v2):
            await publish(br, f.checks_passed(cause))
            await publish(br, f.decided(cause))
        await publish(br, f.decided(v1))  # redelivered: nothing new
        await publish(br, rollback)
        succeeded = sent_all(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
        rolled = sent(deployer.emitter.publishers[DeploymentRolledBack], topics.DEPLOYMENT_ROLLED_BACK)
    assert [e.candidate.version for e in succeeded] == ["1.4.0", "1.5.0"]
    numbers = [succeeded[0].sequence, succeeded[1].sequence, rolled.sequence]
    assert rolled.to_version == "1.4.0" and None not in numbers and numbers == sorted(set(numbers))


# --- the production view: only the deployer, in its order ------------------------------------------

async def test_production_follows_the_deployers_sequence_not_the_dates(build_app):
    """A release dated 2099 (signed by the deployer: say its clock jumped) does not stay
    production after the deployer's next change; one not signed by the deployer never counts."""
    policy = build_app("policy")
    far = datetime(2099, 1, 1, tzinfo=UTC)

    def release(version: str, accuracy: float, sequence: int | None, at: datetime | None = None):
        approval = f.decided(f.submitted(f.submission(f.candidate(version=version))))
        event = DeploymentSucceeded.caused_by(approval, candidate=approval.candidate, target="model-store",
                                              location=f"/store/fraud-detector/{version}",
                                              metrics={"accuracy": accuracy}, sequence=sequence)
        return event.model_copy(update={"occurred_at": at}) if at else event

    async with running(policy.broker) as br:
        await publish(br, release("1.0.0", 0.5, 1, far))
        await publish(br, release("1.1.0", 0.95, 2))
        await publish(br, release("6.6.6", 0.1, 3, far), by="pipeline-test")  # not the deployer's key
        await publish_record(br, codec.encode(release("6.6.7", 0.1, 4, far), "/signoff/deployer"))  # unsigned
    production = policy.production.known("fraud-detector")
    assert production is not None and production.candidate.version == "1.1.0"
    assert production.metrics == {"accuracy": 0.95}
