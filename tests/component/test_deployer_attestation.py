"""The deployer attests each release it deploys: the model store holds the attestation beside the
artifact, the webhook body carries it, deployment.succeeded carries it, and `signoff verify`
accepts what was deployed and refuses it once revoked."""

from __future__ import annotations

import json
import time

import pytest

from shared import attestation, signing, topics
from shared.attestation import ATTESTATION_FILE
from shared.events import DeploymentFailed, DeploymentRevoked, DeploymentSucceeded, RevocationRequested
from signoff.verify import verify, verify_envelope
from tests import keys
from tests.component.conftest import publish, running, sent, settle
from tests.unit import factories as f
from tests.webhook_receiver import Receiver

SECRET = "hook-secret-for-tests"
HOOK = """\
name: hook-models
match: ["hook-*"]
steps:
  - {{name: checks, type: checks, inputs: {{min: {{accuracy: 0.8}}}}}}
  - {{name: deploy, type: deploy, inputs: {{target: webhook, url: "{url}", secret_env: HOOK_SECRET}}}}
"""
CANARY = """\
name: canary-models
match: ["canary-*"]
steps:
  - {name: checks, type: checks, inputs: {min: {accuracy: 0.8}}}
  - name: deploy
    type: deploy
    inputs:
      target: model-store
      strategy: canary
      stages: [{name: canary, traffic_percent: 10, bake: 1s}, {name: full, traffic_percent: 100}]
"""


@pytest.fixture(scope="module")
def keyring() -> signing.Keyring:
    return signing.load_trust(keys.keys().trust)


@pytest.fixture
def deployer(build_app):
    return build_app("deployer")


def submitted(artifact, model: str = "fraud-detector"):
    return f.submitted(f.submission(f.candidate(model=model, artifact_uri=artifact.path.as_uri(),
                                                artifact_sha256=artifact.sha256)))


async def test_the_model_store_holds_a_verifiable_attestation_and_the_event_carries_it(
        deployer, artifact, keyring, tmp_path):
    cause = submitted(artifact)
    checks = f.checks_passed(cause).model_copy(update={"submitted_by": f.PIPELINE})
    approval = f.decided(cause)
    async with running(deployer.broker) as br:
        await publish(br, checks)
        await publish(br, approval)
        await publish(br, approval)  # redelivered: installs nothing new
        deployer.emitter.publishers[DeploymentFailed].mock.assert_not_called()
        out = sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
    assert isinstance(out, DeploymentSucceeded) and out.attestation is not None
    folder = tmp_path / "store" / "fraud-detector" / "1.4.0"
    assert sorted(p.name for p in folder.iterdir()) == [ATTESTATION_FILE, "fraud-1.4.0.onnx", "manifest.json"]
    assert (folder / ATTESTATION_FILE).read_bytes() == attestation.file_bytes(out.attestation)
    verdict = verify(folder, keyring)
    assert verdict.ok, verdict.reason
    assert verdict.signer is not None and verdict.signer.name == "deployer"
    assert verdict.statement is not None
    p = verdict.statement.predicate
    assert (p.submission_id, p.submitter, p.claimed_submitter) == (cause.submission_id, f.PIPELINE, "pipeline")
    assert (p.chain.model_submitted, p.chain.checks_passed, p.chain.review_decided) == (
        cause.event_id, checks.event_id, approval.event_id)
    assert (p.deployer.target, p.deployer.location) == ("model-store", out.location)
    assert [c.name for c in p.checks] == [r.name for r in checks.results]
    assert json.loads((folder / "manifest.json").read_text())["attestation"] == ATTESTATION_FILE


async def test_a_revoked_release_no_longer_verifies(deployer, artifact, keyring, tmp_path):
    cause = submitted(artifact)
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        await publish(br, f.decided(cause))
        folder = tmp_path / "store" / "fraud-detector" / "1.4.0"
        assert verify(folder, keyring).ok
        await publish(br, RevocationRequested(submission_id=cause.submission_id, model="fraud-detector",
                                              requested_by="oncall", reason="training data leak"))
        sent(deployer.emitter.publishers[DeploymentRevoked], topics.DEPLOYMENT_REVOKED)
    [kept] = (tmp_path / "store" / ".revoked" / "fraud-detector").iterdir()
    verdict = verify(kept, keyring)
    assert not verdict.ok and "was revoked" in verdict.reason
    assert json.loads((kept / "REVOKED").read_text())["requested_by"] == "oncall"


@pytest.fixture
def receiver():
    r = Receiver(SECRET.encode()).start()
    yield r
    r.stop()


async def test_the_webhook_body_carries_the_attestation(build_app, workflows, receiver, monkeypatch, artifact,
                                                        keyring):
    (workflows / "hook.yaml").write_text(HOOK.format(url=receiver.url))
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    deployer = build_app("deployer", webhook_secret_envs=("HOOK_SECRET",), webhook_allow_http_loopback=True)
    cause = submitted(artifact, model="hook-model")
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        await publish(br, f.decided(cause))
        out = sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
    [request] = receiver.accepted
    body = request.body
    assert request.signed and body["action"] == "deploy"
    assert isinstance(out, DeploymentSucceeded) and out.attestation is not None
    assert body["attestation"] == out.attestation.model_dump(mode="json")
    verdict = verify_envelope(body["attestation"], artifact.path, keyring)
    assert verdict.ok, verdict.reason
    assert verdict.statement is not None and verdict.statement.predicate.deployer.location == receiver.url
    changed = artifact.path.parent / "changed.onnx"
    changed.write_bytes(artifact.path.read_bytes() + b"!")
    assert not verify_envelope(body["attestation"], changed, keyring).ok


async def test_a_canary_finished_by_the_scheduler_carries_the_attestation_it_started_with(
        build_app, workflows, artifact, keyring, tmp_path):
    """The attestation is signed when the rollout starts and stored with the release, so the last
    stage (run later by the scheduler, from the stored release) announces the same one."""
    (workflows / "canary.yaml").write_text(CANARY)
    deployer = build_app("deployer")
    cause = submitted(artifact, model="canary-model")
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        await publish(br, f.decided(cause))
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()  # baking
        deployer.service.clock = lambda: time.time() + 5
        assert await deployer.service.run_due() == 1
        await settle(deployer.broker)
        out = sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
    folder = tmp_path / "store" / "canary-model" / "1.4.0"
    assert isinstance(out, DeploymentSucceeded) and out.attestation is not None
    assert (folder / ATTESTATION_FILE).read_bytes() == attestation.file_bytes(out.attestation)
    assert verify(folder, keyring).ok
