"""The deployer in memory (TestKafkaBroker) with an approved artifact on a local http registry:
installed in the model store with its exact bytes, or refused with the reason when it changed."""

from __future__ import annotations

import hashlib
import json

import pytest

from shared import topics
from shared.events import DeploymentFailed, DeploymentSucceeded
from tests.component.conftest import publish, running, sent
from tests.unit import factories as f
from tests.unit.test_deployer_fetch import Registry
from tests.webhook_receiver import Receiver

WEIGHTS = b"onnx-weights\n" + bytes(range(256)) * 16
SECRET = "hook-secret-for-tests"
HOOK = """\
name: hook-models
match: ["hook-*"]
steps:
  - {{name: checks, type: checks, inputs: {{min: {{accuracy: 0.8}}}}}}
  - {{name: deploy, type: deploy, inputs: {{target: webhook, url: "{url}", secret_env: HOOK_SECRET}}}}
"""


@pytest.fixture
def registry():
    server = Registry()
    yield server
    server.stop()


@pytest.fixture
def receiver():
    r = Receiver(SECRET.encode()).start()
    yield r
    r.stop()


@pytest.fixture
def deployer(build_app, workflows, registry, receiver, monkeypatch, tmp_path):
    (workflows / "hook.yaml").write_text(HOOK.format(url=receiver.url))
    monkeypatch.setenv("HOOK_SECRET", SECRET)  # the secret itself stays in the environment
    return build_app("deployer", artifact_url_prefixes=(registry.prefix,), download_dir=tmp_path / "downloads",
                     webhook_secret_envs=("HOOK_SECRET",), retry_backoff_seconds=0.01,
                     webhook_allow_http_loopback=True)  # the test receiver is http://127.0.0.1


def approved(uri: str, sha256: str, model: str = "fraud-detector"):
    cause = f.submitted(f.submission(f.candidate(model=model, artifact_uri=uri, artifact_sha256=sha256)))
    return cause, f.checks_passed(cause), f.decided(cause)


async def test_an_approved_http_artifact_is_deployed_with_its_exact_bytes(deployer, registry, tmp_path):
    uri, sha = registry.publish("fraud/fraud-1.4.0.onnx", WEIGHTS)
    cause, *events = approved(uri, sha)
    async with running(deployer.broker) as br:
        for event in events:
            await publish(br, event)
        deployer.emitter.publishers[DeploymentFailed].mock.assert_not_called()
        out = sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
    version = tmp_path / "store" / "fraud-detector" / "1.4.0"
    assert out.location == str(version.resolve()) and out.candidate.artifact_uri == uri
    assert (version / "fraud-1.4.0.onnx").read_bytes() == WEIGHTS
    assert json.loads((version / "manifest.json").read_text())["artifact_sha256"] == sha
    assert list((tmp_path / "downloads").iterdir()) == []
    assert deployer.store.load(cause.submission_id).status == "deployed"


async def test_an_http_artifact_changed_after_approval_fails_and_nothing_is_written(deployer, registry, tmp_path):
    uri, approved_sha = registry.publish("m.onnx", WEIGHTS)
    registry.publish("m.onnx", WEIGHTS + b"!")
    cause, *events = approved(uri, approved_sha)
    async with running(deployer.broker) as br:
        for event in events:
            await publish(br, event)
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
        failed = sent(deployer.emitter.publishers[DeploymentFailed], topics.DEPLOYMENT_FAILED)
    assert f"approved digest is {approved_sha}: the artifact changed since it was checked" in failed.reason
    assert not (tmp_path / "store" / "fraud-detector").exists()
    assert list((tmp_path / "downloads").iterdir()) == []
    assert deployer.store.load(cause.submission_id).status == "failed"


async def test_an_http_artifact_outside_the_prefixes_is_refused_without_a_request(deployer, registry, tmp_path):
    registry.files["/elsewhere/m.onnx"] = WEIGHTS
    uri = f"http://127.0.0.1:{registry.server_port}/elsewhere/m.onnx"
    _, *events = approved(uri, hashlib.sha256(WEIGHTS).hexdigest())
    async with running(deployer.broker) as br:
        for event in events:
            await publish(br, event)
        failed = sent(deployer.emitter.publishers[DeploymentFailed], topics.DEPLOYMENT_FAILED)
    assert "not under an allowed URL prefix" in failed.reason
    assert registry.requests == [] and not (tmp_path / "store" / "fraud-detector").exists()


async def test_the_webhook_is_not_called_for_an_http_artifact_whose_digest_changed(deployer, registry, receiver):
    uri, approved_sha = registry.publish("hook.onnx", WEIGHTS)
    registry.publish("hook.onnx", b"replaced")
    _, *events = approved(uri, approved_sha, model="hook-a")
    async with running(deployer.broker) as br:
        for event in events:
            await publish(br, event)
        failed = sent(deployer.emitter.publishers[DeploymentFailed], topics.DEPLOYMENT_FAILED)
    assert failed.target == "webhook" and "the artifact changed since it was checked" in failed.reason
    assert receiver.requests == []


async def test_the_webhook_gets_a_verified_http_artifact(deployer, registry, receiver):
    uri, sha = registry.publish("hook.onnx", WEIGHTS)
    _, *events = approved(uri, sha, model="hook-b")
    async with running(deployer.broker) as br:
        for event in events:
            await publish(br, event)
        sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
    [request] = receiver.accepted
    assert request.signed and (request.body["artifact_uri"], request.body["artifact_sha256"]) == (uri, sha)
    assert registry.requests == ["/registry/hook.onnx"]  # fetched and hashed before it was sent
