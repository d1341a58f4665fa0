"""The validator, in memory: model.submitted in, checks.passed / checks.failed (or a dead letter) out."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from shared import codec, topics
from shared.broker import DeadLetters
from shared.events import ChecksFailed, ChecksPassed, DeploymentRolledBack, DeploymentSucceeded, PolicyRef
from shared.values import policy_digest
from tests.component.conftest import DLQ, Artifact, capture, publish, publish_raw, running, sent, write_workflows
from tests.unit import factories as f


def policy_digest_of(path) -> str:
    return policy_digest(path.read_text(), (path.parent / "groups.yaml").read_text())


@pytest.fixture
def validator(build_app):
    return build_app("validator")


def submitted_for(artifact, **candidate):
    cand = f.candidate(artifact_uri=artifact.path.as_uri(), artifact_sha256=artifact.sha256, **candidate)
    return f.submitted(f.submission(cand))


async def test_good_artifact_passes(validator, artifact):
    event = submitted_for(artifact)
    async with running(validator.broker) as br:
        await publish(br, event)
        validator.emitter.publishers[ChecksFailed].mock.assert_not_called()
        out = sent(validator.emitter.publishers[ChecksPassed], topics.CHECKS_PASSED)
    assert out.causation_id == event.event_id and out.submission == event.submission
    integrity = next(r for r in out.results if r.name == "integrity")
    assert integrity.passed and integrity.measured == artifact.sha256
    assert {r.name for r in out.results} == {"integrity", "security", "lineage", "metric:accuracy"}
    assert next(r for r in out.results if r.name == "security").passed


async def test_emitted_record_has_key_and_cloudevents_headers(validator, artifact):
    event = submitted_for(artifact)
    passed = capture(validator.broker, topics.CHECKS_PASSED)
    async with running(validator.broker) as br:
        await publish(br, event)
    [record] = passed.records
    assert record.key == b"fraud-detector"
    headers = passed.headers()
    assert headers["ce_type"] == "signoff.checks.passed"
    assert headers["ce_source"] == "/signoff/validator"
    assert headers["ce_subject"] == str(event.submission_id)
    [out] = passed.events()
    assert headers["ce_id"] == str(out.event_id)


async def test_digest_mismatch_fails(validator, artifact):
    event = f.submitted(f.submission(f.candidate(artifact_uri=artifact.path.as_uri(), artifact_sha256=f.OTHER_SHA)))
    failed = capture(validator.broker, topics.CHECKS_FAILED)
    async with running(validator.broker) as br:
        await publish(br, event)
        validator.emitter.publishers[ChecksPassed].mock.assert_not_called()
    [out] = failed.events()
    integrity = next(r for r in out.results if r.name == "integrity")
    assert not integrity.passed
    assert integrity.measured == artifact.sha256 and integrity.threshold == f.OTHER_SHA


async def test_artifact_outside_the_roots_fails(validator, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    outside.write_bytes(b"onnx weights")
    event = submitted_for(Artifact(outside, hashlib.sha256(b"onnx weights").hexdigest()))
    failed = capture(validator.broker, topics.CHECKS_FAILED)
    async with running(validator.broker) as br:
        await publish(br, event)
        validator.emitter.publishers[ChecksPassed].mock.assert_not_called()
    [out] = failed.events()
    integrity = next(r for r in out.results if r.name == "integrity")
    assert not integrity.passed and "outside the allowed roots" in integrity.message


async def test_low_metric_fails(validator, artifact):
    cand = f.candidate(artifact_uri=artifact.path.as_uri(), artifact_sha256=artifact.sha256)
    event = f.submitted(f.submission(cand, metrics={"accuracy": 0.5}))
    failed = capture(validator.broker, topics.CHECKS_FAILED)
    async with running(validator.broker) as br:
        await publish(br, event)
    [out] = failed.events()
    assert [r.name for r in out.results if not r.passed] == ["metric:accuracy"]


def _body(event) -> dict:
    return json.loads(codec.encode(event, "/test").value)


def _bad_bodies(event) -> dict[str, tuple[bytes, str]]:
    missing = _body(event)
    del missing["submission"]["submitter"]
    newer = _body(event) | {"schema_version": 2}
    return {
        "malformed": (b'{"event_id": ', "not JSON"),
        "not-object": (b"[1, 2, 3]", "expected a JSON object"),
        "missing-field": (json.dumps(missing).encode(), "submission.submitter: Field required"),
        "newer-schema": (json.dumps(newer).encode(), "schema_version 2 is newer"),
    }


@pytest.mark.parametrize("case", ["malformed", "not-object", "missing-field", "newer-schema"])
async def test_bad_event_is_dead_lettered_and_the_next_one_is_processed(validator, artifact, case):
    good = submitted_for(artifact)
    value, reason = _bad_bodies(good)[case]
    dead = capture(validator.broker, DLQ(topics.MODEL_SUBMITTED))
    passed = capture(validator.broker, topics.CHECKS_PASSED)
    async with running(validator.broker) as br:
        await publish_raw(br, topics.MODEL_SUBMITTED, value)
        await publish(br, good)
    [record] = dead.records
    assert record.value == value  # the original bytes
    assert record.key == b"fraud-detector"
    headers = dead.headers()
    assert headers["dlq_reason"].startswith("invalid event: ") and reason in headers["dlq_reason"]
    assert headers["dlq_topic"] == topics.MODEL_SUBMITTED
    assert headers["ce_id"] == "raw-1"  # original headers kept
    [out] = passed.events()
    assert out.causation_id == good.event_id


FRAUD = """\
name: fraud-models
match: ["fraud-*"]
steps:
  - name: automated_checks
    type: checks
    inputs:
      min: {accuracy: 0.85, recall: 0.7}
      max: {latency_ms: 50}
      fairness: {min_parity_ratio: 0.8}
      lineage: [data_version, code_commit, training_run_id]
"""


@pytest.fixture
def fraud_validator(build_app, tmp_path):
    folder = write_workflows(tmp_path / "fraud", fraud=FRAUD)
    return build_app("validator", workflows=folder), folder / "fraud.yaml"


async def test_thresholds_lineage_and_fairness_come_from_the_workflow(fraud_validator, artifact):
    validator, path = fraud_validator
    cand = f.candidate(artifact_uri=artifact.path.as_uri(), artifact_sha256=artifact.sha256)
    event = f.submitted(f.submission(
        cand, metrics={"accuracy": 0.9, "recall": 0.75, "latency_ms": 20}, training_run_id=None,
        group_metrics={"group_a": {"selection_rate": 0.30}, "group_b": {"selection_rate": 0.20}}))
    failed = capture(validator.broker, topics.CHECKS_FAILED)
    async with running(validator.broker) as br:
        await publish(br, event)
        validator.emitter.publishers[ChecksPassed].mock.assert_not_called()
    [out] = failed.events()
    by_name = {r.name: r for r in out.results}
    assert set(by_name) == {"integrity", "security", "lineage", "metric:accuracy", "metric:recall",
                            "metric:latency_ms", "fairness:parity_ratio"}
    assert sorted(n for n, r in by_name.items() if not r.passed) == ["fairness:parity_ratio", "lineage"]
    assert by_name["fairness:parity_ratio"].measured == 0.666667
    assert by_name["lineage"].message == "missing lineage: training_run_id"
    assert by_name["metric:accuracy"].threshold == 0.85
    assert out.workflow == PolicyRef(name="fraud-models", rule="automated_checks", digest=policy_digest_of(path))


async def test_a_model_no_workflow_is_for_fails_its_checks(fraud_validator, artifact):
    validator, _ = fraud_validator
    cand = f.candidate(model="churn-model", artifact_uri=artifact.path.as_uri(), artifact_sha256=artifact.sha256)
    failed = capture(validator.broker, topics.CHECKS_FAILED)
    async with running(validator.broker) as br:
        await publish(br, f.submitted(f.submission(cand)))
    [out] = failed.events()
    assert [(r.name, r.passed) for r in out.results] == [("integrity", True), ("workflow", False)]
    assert out.results[1].message == ("no workflow matches model 'churn-model' and no default workflow "
                                      "is configured")
    assert out.workflow is None


async def test_the_default_workflow_ref_is_on_the_outcome(validator, artifact, workflows):
    async with running(validator.broker) as br:
        await publish(br, submitted_for(artifact))
        out = sent(validator.emitter.publishers[ChecksPassed], topics.CHECKS_PASSED)
    # The policy digest (the file and groups.yaml); checks events name it without carrying the texts.
    assert out.workflow == PolicyRef(name="test-policy", rule="automated_checks",
                                     digest=policy_digest_of(workflows / "default.yaml"))
    assert out.workflow.documents is None


REGRESSION = """\
name: fraud-models
match: ["fraud-*"]
steps:
  - name: automated_checks
    type: checks
    inputs: {regression: {higher_is_better: {accuracy: 0.01}}}
"""


def deployed(version: str, accuracy: float) -> DeploymentSucceeded:
    approval = f.decided(f.submitted(f.submission(f.candidate(version=version))))
    return DeploymentSucceeded.caused_by(approval, candidate=approval.candidate, target="model-store",
                                         location=f"/store/fraud-detector/{version}",
                                         metrics={"accuracy": accuracy})


@pytest.mark.parametrize(("rollback", "passed", "threshold"), [(True, True, 0.94), (False, False, 0.96)])
async def test_the_regression_check_compares_with_the_release_rolled_back_to(
        build_app, tmp_path, artifact, rollback, passed, threshold):
    validator = build_app("validator", workflows=write_workflows(tmp_path / "r", fraud=REGRESSION))
    v1, v2 = deployed("1", 0.95), deployed("2", 0.97)
    back = DeploymentRolledBack(submission_id=uuid.uuid4(), model="fraud-detector", from_version="2",
                                to_version="1", to_submission_id=v1.submission_id, target="model-store",
                                requested_by="oncall", reason="p99 latency doubled")
    cand = f.candidate(version="3", artifact_uri=artifact.path.as_uri(), artifact_sha256=artifact.sha256)
    outcome = capture(validator.broker, topics.CHECKS_PASSED if passed else topics.CHECKS_FAILED)
    async with running(validator.broker) as br:
        for event in (v1, v2, back) if rollback else (v1, v2):
            await publish(br, event)
        await publish(br, f.submitted(f.submission(cand, metrics={"accuracy": 0.955})))
    [out] = outcome.events()
    [check] = [r for r in out.results if r.name == "regression:accuracy"]
    assert (check.passed, check.threshold) == (passed, threshold)
    assert f"production {'1' if rollback else '2'} " in check.message


def poison(shape: str) -> bytes:
    """Records that once stopped a service at start (ValueError, RecursionError) or never decode."""
    good = codec.encode(deployed("1", 0.9), "/test").value.decode()
    return {
        "not JSON": "{not json",
        "5,000-digit integer": good.replace('"accuracy":0.9', '"accuracy":' + "9" * 5000),
        "10,000-deep nesting": good.replace('"target":"model-store"', '"target":' + "[" * 10_000 + "]" * 10_000),
        "huge string": good.replace('"target":"model-store"', '"target":"' + "t" * 900_000 + '"'),
    }[shape].encode()


@pytest.mark.parametrize("shape", ["not JSON", "5,000-digit integer", "10,000-deep nesting", "huge string"])
async def test_a_bad_record_on_a_followed_topic_is_skipped_not_dead_lettered(build_app, tmp_path, artifact, shape):
    """Followers re-read their topics at every start: a bad record is logged, counted and skipped,
    never dead-lettered again and again, and the next good record still counts."""
    validator = build_app("validator", workflows=write_workflows(tmp_path / "r", fraud=REGRESSION))
    letters = capture(validator.broker, topics.dlq(topics.DEPLOYMENT_SUCCEEDED))
    cand = f.candidate(version="3", artifact_uri=artifact.path.as_uri(), artifact_sha256=artifact.sha256)
    failed = capture(validator.broker, topics.CHECKS_FAILED)
    [dead_letters] = [m for m in validator.broker.middlewares if isinstance(m, DeadLetters)]
    async with running(validator.broker) as br:
        await publish_raw(br, topics.DEPLOYMENT_SUCCEEDED, poison(shape))
        await publish(br, deployed("2", 0.97))
        await publish(br, f.submitted(f.submission(cand, metrics={"accuracy": 0.955})))
    assert letters.values == []
    assert dead_letters.skipped == {topics.DEPLOYMENT_SUCCEEDED: 1}
    [out] = failed.events()
    assert "production 2 " in next(r for r in out.results if r.name == "regression:accuracy").message


async def test_production_rolled_back_to_a_release_never_seen_is_unknown_and_a_person_decides(
        build_app, tmp_path, artifact):
    """Retention dropped the deployment of the release production was rolled back to: the
    regression check cannot compare, and must not pass as if nothing were in production."""
    validator = build_app("validator", workflows=write_workflows(tmp_path / "r", fraud=REGRESSION))
    unseen, v2 = uuid.uuid4(), deployed("2", 0.97)
    back = DeploymentRolledBack(submission_id=uuid.uuid4(), model="fraud-detector", from_version="2",
                                to_version="0.9", to_submission_id=unseen, target="model-store",
                                requested_by="oncall", reason="p99 latency doubled")
    cand = f.candidate(version="3", artifact_uri=artifact.path.as_uri(), artifact_sha256=artifact.sha256)
    passed = capture(validator.broker, topics.CHECKS_PASSED)
    async with running(validator.broker) as br:
        for event in (v2, back):
            await publish(br, event)
        await publish(br, f.submitted(f.submission(cand, metrics={"accuracy": 0.5})))
    [out] = passed.events()  # nothing blocking failed: the policy routes it to a person
    [check] = [r for r in out.results if r.name.startswith("regression")]
    assert (check.name, check.passed, check.blocking) == ("regression", False, False)
    assert check.message.startswith("production of fraud-detector is unknown: it was rolled back to version 0.9 "
                                    f"(submission {unseen})")


CARD = """\
name: carded-models
default: true
steps:
  - name: automated_checks
    type: checks
    inputs: {model_card: true}
"""


@pytest.mark.parametrize(("card_bytes", "passed"), [(16, True), (17, False)])
async def test_documents_are_capped_at_max_document_bytes_and_the_artifact_is_not(
        build_app, tmp_path, artifact_root, card_bytes, passed):
    validator = build_app("validator", workflows=write_workflows(tmp_path / "c", default=CARD), max_document_bytes=16)
    weights, card = artifact_root / "m.onnx", artifact_root / "m.md"
    weights.write_bytes(b"w" * 64)  # four times the document cap: the artifact has its own
    card.write_bytes(b"#" * card_bytes)
    cand = f.candidate(artifact_uri=weights.as_uri(), artifact_sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    outcome = capture(validator.broker, topics.CHECKS_PASSED if passed else topics.CHECKS_FAILED)
    async with running(validator.broker) as br:
        await publish(br, f.submitted(f.submission(cand, model_card_uri=card.as_uri())))
    [out] = outcome.events()
    by_name = {r.name: r for r in out.results}
    assert by_name["integrity"].passed and by_name["model_card"].passed is passed
    if not passed:
        assert f"is {card_bytes} bytes, over the limit of 16 bytes" in by_name["model_card"].message
