"""Forged events on a broker whose ACLs let anyone write: each is dead-lettered (or, where only
followers read it, skipped) with the reason, and nothing deploys, rolls back, revokes or changes
the production view. A well-formed signed event still does its work afterwards.

Run in memory and, with `--broker=kafka`, on the real broker (the same bodies)."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faststream import Context

from services.deployer.targets import _store_files as store_files
from shared import codec, signing, topics
from shared.broker import make_broker, subscribe
from shared.events import (
    DeploymentRolledBack,
    DeploymentSucceeded,
    ModelSubmitted,
    ReviewDecided,
    RevocationRequested,
    RollbackRequested,
)
from shared.settings import ServiceSettings
from tests import keys
from tests.component import modes
from tests.component.conftest import DLQ, capture, publish, publish_record, running, sent_all, settle
from tests.unit import factories as f


def unsigned(event) -> codec.Record:
    return codec.encode(event, "/forger")


def by_stranger(event) -> codec.Record:
    """Signed, by a key nobody trusts."""
    return signing.Signer(Ed25519PrivateKey.generate()).sign(codec.encode(event, "/forger"))


def reasons(captured) -> list[str]:
    return [captured.headers(i)["dlq_reason"] for i in range(len(captured.records))]


def emitted(wiring, cls) -> list:
    """What the service emitted of `cls` (read inside `running`: the mocks go with the test broker)."""
    return sent_all(wiring.emitter.publishers[cls], cls.topic)


def cause(artifact_root, model: str, version: str) -> ModelSubmitted:
    content = f"{model} {version}".encode()
    path = artifact_root / f"{model}-{version}.bin"
    path.write_bytes(content)
    cand = f.candidate(model=model, version=version, artifact_uri=path.as_uri(),
                       artifact_sha256=hashlib.sha256(content).hexdigest())
    return f.submitted(f.submission(cand))


async def deploy(br, submitted: ModelSubmitted) -> None:
    """What the validator and the policy would emit for an approved submission, signed by them."""
    await publish(br, f.checks_passed(submitted))
    await publish(br, f.decided(submitted))


async def test_forged_checks_passed_is_dead_lettered_and_decides_nothing(build_app):
    policy = build_app("policy")
    dead = capture(policy.broker, DLQ(topics.CHECKS_PASSED))
    event = f.checks_passed()
    async with running(policy.broker) as br:
        await publish_record(br, unsigned(event))
        await publish_record(br, keys.signed(event, by="pipeline-test"))  # a real key, of the wrong role
        await publish_record(br, keys.signed(event, by="policy"))  # a service signing another's event
        assert emitted(policy, ReviewDecided) == []
        await publish(br, event)  # signed by the validator: decided
        assert len(emitted(policy, ReviewDecided)) == 1
    assert reasons(dead) == [
        "untrusted event: unsigned: signoff.checks.passed must be signed by the validator",
        "untrusted event: signed by pipeline-test (role pipeline), but signoff.checks.passed is decided "
        "by the validator",
        "untrusted event: signed by policy (role policy), but signoff.checks.passed is decided by the validator",
    ]


async def test_forged_approvals_deploy_nothing(build_app, artifact_root, tmp_path):
    deployer = build_app("deployer")
    dead = capture(deployer.broker, DLQ(topics.REVIEW_DECIDED))
    submitted = cause(artifact_root, "forged-a", "1")
    approval = f.decided(submitted)
    rejection = keys.signed(f.decided(submitted, outcome="rejected", salt="r"))
    tampered = rejection._replace(value=rejection.value.replace(b'"rejected"', b'"approved"'))
    assert tampered.value != rejection.value
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(submitted))
        await publish_record(br, unsigned(approval))
        await publish_record(br, by_stranger(approval))
        await publish_record(br, tampered)
        await publish_record(br, keys.signed(approval, by="validator"))
        assert emitted(deployer, DeploymentSucceeded) == []
        assert store_files.production(tmp_path / "store", "forged-a") is None
        await publish(br, approval)  # signed by its owner (a human approval: the review-notifier): deployed
        assert store_files.production(tmp_path / "store", "forged-a") == "1"
    first, second, third, fourth = reasons(dead)
    assert first == ("untrusted event: unsigned: signoff.review.decided must be signed by the policy or "
                     "the review-notifier")
    assert second.startswith("untrusted event: unknown key id ") and "not in the trust file" in second
    assert third.startswith("untrusted event: signature does not verify (key id ")
    assert fourth == ("untrusted event: signed by validator (role validator), but signoff.review.decided is "
                      "decided by the policy or the review-notifier")


async def test_a_signed_body_replayed_under_another_type_or_key_does_not_verify(build_app, artifact_root):
    deployer = build_app("deployer")
    dead = capture(deployer.broker, DLQ(topics.REVIEW_DECIDED))
    submitted = cause(artifact_root, "forged-b", "1")
    approval = keys.signed(f.decided(submitted))
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(submitted))
        # The policy's signed approval, re-keyed to another model and with another subject.
        await publish_record(br, approval._replace(key=b"other-model"))
        await publish_record(br, approval._replace(headers={**approval.headers, "ce_subject": str(uuid.uuid4())}))
        assert emitted(deployer, DeploymentSucceeded) == []
    assert [r.split(" (key id")[0] for r in reasons(dead)] == ["untrusted event: signature does not verify"] * 2


async def test_forged_deployments_never_enter_the_production_view(build_app):
    validator = build_app("validator")
    real = f.deployment_succeeded()
    model = real.candidate.model
    async with running(validator.broker) as br:
        await publish_record(br, unsigned(real))
        await publish_record(br, keys.signed(real, by="policy"))
        await publish_record(br, by_stranger(real))
        assert validator.production.get(model) is None
        await publish(br, real)  # signed by the deployer
        assert validator.production.get(model) is not None


async def test_forged_rollbacks_roll_nothing_back(build_app, artifact_root, tmp_path):
    deployer = build_app("deployer")
    dead = capture(deployer.broker, DLQ(topics.ROLLBACK_REQUESTED))
    request = RollbackRequested(submission_id=uuid.uuid4(), model="forged-c", requested_by="oncall",
                                reason="p99 latency doubled")
    claimed = request.model_copy(update={"requested_by": "security"})
    async with running(deployer.broker) as br:
        for version in ("1", "2"):
            await deploy(br, cause(artifact_root, "forged-c", version))
        await publish_record(br, unsigned(request))
        await publish_record(br, keys.signed(request, by="deployer"))  # a service is no operator
        await publish_record(br, by_stranger(request))
        await publish(br, claimed, by="oncall")  # oncall's key, claiming to be security
        assert emitted(deployer, DeploymentRolledBack) == []
        assert store_files.production(tmp_path / "store", "forged-c") == "2"
        await publish(br, request, by="oncall")
        assert store_files.production(tmp_path / "store", "forged-c") == "1"
        [rolled] = emitted(deployer, DeploymentRolledBack)
    assert rolled.requested_by == "oncall"
    first, second, third, fourth = reasons(dead)
    assert first == "untrusted event: unsigned: signoff.rollback.requested must be signed by the operator"
    assert second == ("untrusted event: signed by deployer (role deployer), but signoff.rollback.requested "
                      "is decided by the operator")
    assert third.startswith("untrusted event: unknown key id ")
    assert fourth == "refused: requested_by does not match the operator who signed the request (oncall)"


async def test_forged_revocations_revoke_nothing(build_app, artifact_root, tmp_path):
    deployer = build_app("deployer")
    dead = capture(deployer.broker, DLQ(topics.REVOCATION_REQUESTED))
    live = cause(artifact_root, "forged-d", "1")
    request = RevocationRequested(submission_id=live.submission_id, model="forged-d", requested_by="security",
                                  reason="trained on PII")
    async with running(deployer.broker) as br:
        await deploy(br, live)
        await publish_record(br, unsigned(request))
        await publish_record(br, keys.signed(request, by="validator"))
        await publish_record(br, by_stranger(request))
        await publish(br, request, by="oncall")  # requested_by says security
        digest = live.submission.candidate.artifact_sha256
        assert deployer.store.revocation(live.submission_id, digest, "forged-d", "1") is None
        assert store_files.production(tmp_path / "store", "forged-d") == "1"
        later = cause(artifact_root, "forged-d", "2")
        await deploy(br, later)  # a well-formed signed submission still deploys
        assert store_files.production(tmp_path / "store", "forged-d") == "2"
        await publish(br, request, by="security")
        assert deployer.store.revocation(live.submission_id, digest, "forged-d", "1") is not None
    assert [r.split(":")[0] for r in reasons(dead)] == ["untrusted event"] * 3 + ["refused"]


@pytest.fixture
def probe(broker_mode, unique):
    if broker_mode == "kafka":
        modes.truncate_now()
    settings = ServiceSettings(**modes.kafka_fields(), consumer_group_prefix=f"test-{unique}",
                               **keys.service_fields("validator"))
    return make_broker(settings, "probe")


async def test_each_handler_sees_the_signer_of_its_own_message(probe):
    """`verified_signer()` is the signer of the message being handled, also with several workers;
    an unsigned submission (accepted unsigned by default) has none."""
    seen: list[tuple[str, signing.Principal | None]] = []

    @subscribe(probe, topics.MODEL_SUBMITTED, "probe", max_workers=3)
    async def handle(event: ModelSubmitted, message=Context("message")) -> None:
        seen.append((dict(message.headers).get("ce_source", ""), signing.verified_signer()))

    signed, plain = f.submitted(), f.submitted()
    async with running(probe) as br:
        await publish_record(br, keys.signed(signed, source="/signed"))
        await publish_record(br, unsigned(plain))
        await publish_record(br, keys.signed(f.submitted(), source="/signed"))
    assert sorted(seen, key=lambda s: s[0]) == [("/forger", None), ("/signed", keys.principal("pipeline-test")),
                                                ("/signed", keys.principal("pipeline-test"))]


async def test_a_forged_rejection_is_no_fact_and_what_a_service_emits_is_signed(build_app):
    """The policy's rejections follower (shared.facts) believes only signed decisions: a forged
    final rejection of a digest does not make the next submission of it rejected; and the
    decision the policy emits verifies against the trust file as the policy's."""
    policy = build_app("policy")
    decided = capture(policy.broker, topics.REVIEW_DECIDED)
    checks = f.checks_passed()
    rejection = f.decided(f.submitted(checks.submission), outcome="rejected", salt="forged")
    async with running(policy.broker) as br:
        await publish_record(br, unsigned(rejection))
        await publish(br, checks)
    ours = [r for r in decided.records if dict(r.headers).get(signing.KID_HEADER)]
    [record] = ours
    event = codec.decode(record.topic, record.value)
    assert event.outcome == "approved" and event.policy.rule != "rejected_before"
    trusted = signing.load_trust(keys.keys().trust)
    assert trusted.verify(record.topic, record.key, record.headers, record.value) == keys.principal("policy")


async def test_an_approval_is_acted_on_only_from_its_owner(build_app, artifact_root, tmp_path):
    """Both the policy and the review-notifier may sign review.decided, but an automatic approval
    is the policy's and an approval by people the review-notifier's: a compromised policy key
    cannot forge a human sign-off, nor the review-notifier's an automatic one."""
    deployer = build_app("deployer")
    dead = capture(deployer.broker, DLQ(topics.REVIEW_DECIDED))
    submitted = cause(artifact_root, "forged-e", "1")
    human = f.decided(submitted, mode="human", decided_by="bob")
    automatic = f.decided(submitted, salt="auto", mode="automatic")
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(submitted))
        await publish(br, human, by="policy")
        await publish(br, automatic, by="review-notifier")
        assert store_files.production(tmp_path / "store", "forged-e") is None
        await publish(br, human)  # the review-notifier's own signature: deployed
        assert store_files.production(tmp_path / "store", "forged-e") == "1"
    assert reasons(dead) == [
        "refused: an approval of mode human is the review-notifier's to make, but it was signed by policy (role "
        "policy): only the owner of a decision can make it",
        "refused: an approval of mode automatic is the policy's to make, but it was signed by review-notifier (role "
        "review-notifier): only the owner of a decision can make it",
    ]


async def test_a_reply_to_header_makes_no_service_write_where_the_sender_says(build_app):
    """FastStream answers a record's `reply_to` header by publishing the handler's result there,
    with the consuming service's own producer: the sender would choose a topic the service then
    writes to (here checks.failed, which only the validator may write). No subscriber answers."""
    validator = build_app("validator")
    written = capture(validator.broker, topics.CHECKS_FAILED)
    record = keys.signed(f.submitted())
    async with running(validator.broker) as br:
        await br.publish(record.value, topic=record.topic, key=record.key,
                         headers={**record.headers, "reply_to": topics.CHECKS_FAILED})
        await settle(br)
    assert [r for r in written.records if not dict(r.headers).get(signing.KID_HEADER)] == []
