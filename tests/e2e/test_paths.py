"""The four paths through the choreography, with the four services as real processes."""

from __future__ import annotations

import json
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from shared import topics
from shared.events import ReviewDecided
from signoff import client
from tests import keys
from tests.e2e.conftest import Env
from tests.eventlog import EventLog

pytestmark = pytest.mark.kafka


def submit(e2e: Env, model: str, version: str, accuracy: float, sha256: str | None = None,
           artifact: str | None = None) -> str:
    if artifact is None:
        path, digest = e2e.artifact(f"{model}-{version}.bin")
        artifact, sha256 = str(path), sha256 or digest
    return e2e.cli(
        "submit", "--model", model, "--version", version, "--artifact", artifact,
        *(("--sha256", sha256) if sha256 else ()), "--metric", f"accuracy={accuracy}", "--data-version", "2026-11-01",
        "--code-commit", "3f2c9ab", "--submitter", "carol",
    ).stdout.strip()


def topics_of(events: EventLog, sid: str) -> list[str]:
    return [s.topic for s in events.about(sid)]


async def test_auto_approved_and_deployed(e2e: Env, events: EventLog, unique: str) -> None:
    model = f"auto-{unique}"
    sid = submit(e2e, model, "1.0.0", accuracy=0.95)

    end = await events.wait_terminal(sid)

    assert end.topic == topics.DEPLOYMENT_SUCCEEDED
    assert topics_of(events, sid) == [topics.MODEL_SUBMITTED, topics.CHECKS_PASSED,
                                      topics.REVIEW_DECIDED, topics.DEPLOYMENT_SUCCEEDED]
    decision = events.about(sid, topics.REVIEW_DECIDED)[0].event
    assert decision.mode == "automatic"
    assert decision.decided_by == "policy:e2e-default/manual_approval.when"
    assert (decision.policy.name, decision.policy.digest) == ("e2e-default", e2e.workflow_digest)
    version_dir = e2e.model_store / model / "1.0.0"
    manifest = json.loads((version_dir / "manifest.json").read_text())
    artifact = e2e.artifacts / f"{model}-1.0.0.bin"
    assert (version_dir / artifact.name).read_bytes() == artifact.read_bytes()
    assert manifest["artifact_sha256"] == decision.candidate.artifact_sha256
    assert manifest["data_version"] == "2026-11-01" and manifest["code_commit"] == "3f2c9ab"
    assert manifest["approved_by"] == "policy:e2e-default/manual_approval.when"
    assert manifest["policy"]["digest"] == e2e.workflow_digest


async def test_checks_failed_stops_the_submission(e2e: Env, events: EventLog, unique: str) -> None:
    model = f"mismatch-{unique}"
    sid = submit(e2e, model, "1.0.0", accuracy=0.95, sha256="0" * 64)

    end = await events.wait_terminal(sid)

    assert end.topic == topics.REVIEW_DECIDED and end.event.outcome == "rejected"
    failed = events.about(sid, topics.CHECKS_FAILED)[0].event
    integrity = next(r for r in failed.results if r.name == "integrity")
    assert not integrity.passed and "0" * 64 in integrity.message
    assert not (e2e.model_store / model).exists()


async def test_outside_allowed_root_fails_checks(e2e: Env, events: EventLog, unique: str) -> None:
    outside = e2e.workdir / f"outside-{unique}.bin"
    outside.write_bytes(b"not under the artifact root")
    sid = submit(e2e, f"outside-{unique}", "1.0.0", accuracy=0.95, artifact=str(outside))

    end = await events.wait_terminal(sid)

    assert end.event.outcome == "rejected"
    failed = events.about(sid, topics.CHECKS_FAILED)[0].event
    assert "outside the allowed roots" in next(r for r in failed.results if r.name == "integrity").message


async def test_reviewed_approved_and_deployed(e2e: Env, events: EventLog, unique: str) -> None:
    model = f"reviewed-{unique}"
    sid = submit(e2e, model, "2.0.0", accuracy=0.85)
    await e2e.review_open(sid)

    refused = e2e.cli("review", sid, "approve", "--reason", "mine", person="carol", check=False)
    assert refused.returncode == 1 and "not an approver" in refused.stderr
    e2e.cli("review", sid, "approve", "--reason", "metrics acceptable for v2", person="alice")

    watched = e2e.cli("watch", sid, "--timeout", "60")
    assert "deployment.succeeded" in watched.stdout and "=> deployed" in watched.stdout
    await events.wait_terminal(sid)
    decision = events.about(sid, topics.REVIEW_DECIDED)[0].event
    assert (decision.mode, decision.decided_by, decision.outcome) == ("human", "alice", "approved")
    assert (decision.policy.name, decision.policy.rule) == ("e2e-default", "manual_approval")
    assert decision.policy.digest == e2e.workflow_digest
    requested = events.about(sid, topics.REVIEW_REQUESTED)[0].event
    assert requested.approvers == ("alice", "bob")  # group:leads expanded
    assert (e2e.model_store / model / "2.0.0" / "manifest.json").exists()


async def test_reviewed_rejected_is_never_deployed(e2e: Env, events: EventLog, unique: str) -> None:
    model = f"rejected-{unique}"
    sid = submit(e2e, model, "1.0.0", accuracy=0.85)
    await e2e.review_open(sid)
    e2e.cli("review", sid, "reject", "--reason", "parity gap on group b", person="bob")
    await events.wait_terminal(sid)

    late = e2e.cli("review", sid, "approve", "--reason", "too late", person="alice", check=False)
    assert late.returncode == 1 and "already decided" in late.stderr

    # An approval that arrives anyway (forged, or replayed from elsewhere) deploys nothing.
    rejected = events.about(sid, topics.REVIEW_DECIDED)[0].event
    forged = ReviewDecided(submission_id=rejected.submission_id, candidate=rejected.candidate,
                           outcome="approved", mode="human", decided_by="alice", reason="forged",
                           policy=rejected.policy)
    # As the admin (no one else may write it), signed by a key trusted for decisions (a replay, a
    # stolen key): the rejection is final all the same. Unsigned, it is not even read (test_forgery).
    await client.publish(e2e.admin, [forged], source="/tests/forger", signer=keys.signer("review-notifier"))
    await _barrier(e2e, events, model)

    assert events.about(sid, topics.DEPLOYMENT_SUCCEEDED) == []
    assert not (e2e.model_store / model / "1.0.0").exists()
    watched = e2e.cli("watch", sid, "--timeout", "30", check=False)
    assert watched.returncode == 3 and "=> rejected" in watched.stdout


async def test_a_rejected_digest_resubmitted_is_rejected_at_once(
        e2e: Env, events: EventLog, unique: str) -> None:
    model = f"resubmit-{unique}"
    first = submit(e2e, model, "1.0.0", accuracy=0.85)
    await e2e.review_open(first)
    e2e.cli("review", first, "reject", "--reason", "leaks the label", person="bob")
    rejection = (await events.wait_terminal(first)).event

    # The same bytes under a new version, even with better metrics: no review, no deployment.
    again, _ = e2e.artifact(f"{model}-copy.bin", (e2e.artifacts / f"{model}-1.0.0.bin").read_bytes())
    second = submit(e2e, model, "1.0.1", accuracy=0.99, artifact=str(again))
    end = await events.wait_terminal(second)

    assert end.topic == topics.REVIEW_DECIDED and end.event.outcome == "rejected"
    assert end.event.cites == rejection.event_id
    assert end.event.policy.rule == "rejected_before" and "leaks the label" in end.event.reason
    assert str(rejection.submission_id) in end.event.reason
    assert events.about(second, topics.REVIEW_REQUESTED) == []
    assert not (e2e.model_store / model).exists()


async def test_redelivered_approval_deploys_once(e2e: Env, events: EventLog, unique: str) -> None:
    model = f"redelivered-{unique}"
    sid = submit(e2e, model, "1.0.0", accuracy=0.95)
    await events.wait_terminal(sid)
    approval = events.about(sid, topics.REVIEW_DECIDED)[0]

    # The very same record again, twice: what a redelivery looks like to the deployer.
    producer = AIOKafkaProducer(**e2e.admin.client_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait(topics.REVIEW_DECIDED, approval.value, key=approval.key,
                                         headers=[(k, v.encode()) for k, v in approval.headers.items()])
    finally:
        await producer.stop()
    await _barrier(e2e, events, model)

    assert len(events.about(sid, topics.DEPLOYMENT_SUCCEEDED)) == 1
    versions = [p.name for p in (e2e.model_store / model).iterdir()
                if p.is_dir() and not p.name.startswith("barrier-")]  # beside them: PRODUCTION, traffic.json
    assert versions == ["1.0.0"]


async def test_plain_kafka_client_follows_the_contract(e2e: Env, events: EventLog, unique: str) -> None:
    """A producer that knows only the documented contract (README), not Signoff's code."""
    model = f"plain-{unique}"
    path, digest = e2e.artifact(f"{model}.onnx")
    sid, eid = str(uuid.uuid4()), str(uuid.uuid4())
    body = {
        "event_id": eid, "submission_id": sid, "occurred_at": "2026-11-25T10:00:00Z",
        "schema_version": 1, "causation_id": None,
        "submission": {
            "candidate": {"model": model, "version": "7", "artifact_uri": path.as_uri(),
                          "artifact_sha256": digest, "data_version": "snap-42", "code_commit": "abc1234"},
            "metrics": {"accuracy": 0.97}, "submitter": "pipeline@ci",
        },
    }
    headers = {"ce_id": eid, "ce_type": "signoff.model.submitted", "ce_source": "/tests/plain",
               "ce_specversion": "1.0", "ce_time": "2026-11-25T10:00:00Z", "ce_subject": sid,
               "content-type": "application/json"}
    producer = AIOKafkaProducer(**e2e.pipeline.client_kwargs(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.MODEL_SUBMITTED, json.dumps(body).encode(), key=model.encode(),
                                     headers=[(k, v.encode()) for k, v in headers.items()])
    finally:
        await producer.stop()

    end = await events.wait_terminal(sid)

    assert end.topic == topics.DEPLOYMENT_SUCCEEDED
    assert (e2e.model_store / model / "7" / path.name).read_bytes() == path.read_bytes()
    checks = events.about(sid, topics.CHECKS_PASSED)[0]
    assert checks.headers["ce_type"] == "signoff.checks.passed"
    assert checks.headers["ce_subject"] == sid and checks.key == model.encode()
    assert checks.event.causation_id == uuid.UUID(eid)


async def _barrier(e2e: Env, events: EventLog, model: str) -> None:
    """Everything published for `model` before this call has been handled once a later
    submission of the same model (same key, so same partitions, in order) has been deployed."""
    sid = submit(e2e, model, f"barrier-{uuid.uuid4().hex[:8]}", accuracy=0.95)
    end = await events.wait_terminal(sid)
    assert end.topic == topics.DEPLOYMENT_SUCCEEDED
