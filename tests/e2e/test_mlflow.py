"""MLflow end to end, on the real broker with the real servers: a model logged and registered with the
MLflow client is submitted by the bridge (`signoff mlflow bridge`, polling), checked, approved, and
ends with the `champion` alias on that version and the attestation beside it in S3 (the run's
artifacts); a version whose checks fail never gets the alias; an alias moved by hand is reported
(`deployment.drifted`) and put back (`on_drift: revert`).

The session's stack (tests/e2e/conftest.py) is restarted with MLflow's and S3's settings and one
more workflow, for models named mlflow-*; the other tests' models are not affected."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared import attestation, topics
from shared.events import DeploymentDrifted, ModelSubmitted
from signoff.devstack import free_port
from tests import keys
from tests.e2e.conftest import Env
from tests.eventlog import EventLog
from tests.mlflow_server import MlflowServer

pytestmark = pytest.mark.kafka
# The one MLflow model the bridge submits (SIGNOFF_MLFLOW_MODEL_NAMES: only listed models are).
MODEL = f"mlflow-{uuid.uuid4().hex[:10]}"

WORKFLOW = """
name: e2e-mlflow
match: ["mlflow-*"]
steps:
  - name: checks
    type: checks
    inputs: {min: {accuracy: 0.80}}
  - name: deploy
    type: deploy
    inputs: {target: mlflow, alias: champion, on_drift: revert}
"""


@dataclass
class Registry:
    server: MlflowServer

    @property
    def client(self):  # noqa: ANN201 - MlflowClient, imported where MLflow is used
        from mlflow import MlflowClient

        return MlflowClient(self.server.tracking_uri)

    def log_and_register(self, name: str, accuracy: float) -> str:
        """What a training job does: a run with its metric, lineage tags and model files, then the
        model registered from the run's artifacts. Returns the new version."""
        client = self.client
        run = client.create_run("0", tags={"data_version": "2026-11-01", "mlflow.source.git.commit": "3f2c9ab0",
                                           "mlflow.user": "carol"})
        client.log_metric(run.info.run_id, "accuracy", accuracy)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "MLmodel").write_text(f"flavors: {{}}\nrun_id: {run.info.run_id}\n")
            (Path(tmp) / "model.bin").write_bytes(hashlib.sha256(run.info.run_id.encode()).digest() * 512)
            client.log_artifacts(run.info.run_id, tmp, "model")
        client.set_terminated(run.info.run_id)
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            client.create_registered_model(name)
        return str(client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id).version)

    def alias(self, name: str) -> str | None:
        return self.client.get_registered_model(name).aliases.get("champion")


@pytest.fixture(scope="module")
async def registry(e2e: Env, mlflow: MlflowServer) -> AsyncIterator[Registry]:
    """The stack's validator, policy and deployer restarted to read S3 and use MLflow, and the
    bridge running as a pipeline (polling every second). Set up in a thread: the session's event
    loop keeps reading the topics (`events`) meanwhile."""
    started = await asyncio.to_thread(_restarted, e2e, mlflow)
    yield Registry(mlflow)
    await asyncio.to_thread(_stopped, *started)


def _restarted(e2e: Env, mlflow: MlflowServer) -> tuple[subprocess.Popen, pytest.MonkeyPatch]:
    bucket = f"s3://{mlflow.bucket}/"
    (e2e.workdir / "workflows" / "mlflow.yaml").write_text(WORKFLOW)
    e2e.stack.env.update({
        **mlflow.s3.env(),
        "VALIDATOR_ARTIFACT_S3_PREFIXES": json.dumps([bucket]), "VALIDATOR_S3_ENDPOINT_URL": mlflow.s3.endpoint_url,
        "DEPLOYER_ARTIFACT_S3_PREFIXES": json.dumps([bucket]), "DEPLOYER_S3_ENDPOINT_URL": mlflow.s3.endpoint_url,
        "DEPLOYER_MLFLOW_TRACKING_URI": mlflow.tracking_uri, "DEPLOYER_MLFLOW_ALLOW_HTTP_LOOPBACK": "true",
        "DEPLOYER_DRIFT_CHECK_SECONDS": "1",
    })
    for service in ("validator", "policy", "deployer"):
        e2e.stack.stop(service)
        e2e.stack.start(service)
    port = free_port()
    env = {**e2e.stack.env, **e2e.pipeline.env(), **mlflow.env(),
           "MLFLOW_BRIDGE_MODE": "poll", "MLFLOW_BRIDGE_POLL_SECONDS": "1", "MLFLOW_BRIDGE_HTTP_PORT": str(port),
           "MLFLOW_BRIDGE_STATE_DB": str(e2e.workdir / "bridge.db"),
           "MLFLOW_BRIDGE_DOWNLOAD_DIR": str(e2e.workdir / "bridge-downloads"),
           "MLFLOW_BRIDGE_ARTIFACT_S3_PREFIXES": json.dumps([bucket]),
           "MLFLOW_BRIDGE_S3_ENDPOINT_URL": mlflow.s3.endpoint_url,
           "MLFLOW_BRIDGE_SIGNING_KEY_FILE": str(keys.keys().files["pipeline-test"]),
           "SIGNOFF_MLFLOW_MODEL_NAMES": json.dumps({MODEL: MODEL})}
    patch = pytest.MonkeyPatch()  # the test's own MLflow client writes model files to S3: the AWS chain
    for key, value in mlflow.s3.env().items():
        patch.setenv(key, value)
    with open(e2e.stack.log_path("mlflow-bridge"), "ab") as log:
        bridge = subprocess.Popen([sys.executable, "-m", "signoff.cli", "mlflow", "bridge"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:  # polling a starting process, bounded by the deadline
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return bridge, patch
        except httpx.TransportError:
            pass
        if bridge.poll() is not None or time.monotonic() > deadline:
            _stopped(bridge, patch)
            raise RuntimeError("the bridge did not start; see "
                               + e2e.stack.log_path("mlflow-bridge").read_text()[-3000:])
        time.sleep(0.2)


def _stopped(bridge: subprocess.Popen, patch: pytest.MonkeyPatch) -> None:
    patch.undo()
    bridge.terminate()
    try:
        bridge.wait(15)
    except subprocess.TimeoutExpired:
        bridge.kill()
        bridge.wait()


async def submitted(events: EventLog, name: str, version: str) -> str:
    """The submission id the bridge gave the version (its model.submitted)."""
    def found(log: EventLog) -> str | None:
        for s in log.records:
            if s.topic == topics.MODEL_SUBMITTED and isinstance(s.event, ModelSubmitted):
                c = s.event.submission.candidate
                if (c.model, c.version) == (name, version):
                    return str(s.event.submission_id)
        return None

    return await events.wait_for(found, 90, f"the bridge to submit {name} {version}")  # type: ignore[return-value]


async def test_registered_checked_approved_and_the_alias_moved_rejected_never_drift_put_back(
        e2e: Env, events: EventLog, registry: Registry) -> None:
    name = MODEL
    first = await asyncio.to_thread(registry.log_and_register, name, 0.95)
    sid = await submitted(events, name, first)
    end = await events.wait_terminal(sid, timeout=90)
    assert end.topic == topics.DEPLOYMENT_SUCCEEDED, end.event
    assert [s.topic for s in events.about(sid)] == [topics.MODEL_SUBMITTED, topics.CHECKS_PASSED,
                                                    topics.REVIEW_DECIDED, topics.DEPLOYMENT_SUCCEEDED]
    assert registry.alias(name) == first
    tags = registry.client.get_model_version(name, first).tags
    decision = events.about(sid, topics.REVIEW_DECIDED)[0].event
    assert tags["signoff.decision_id"] == str(decision.event_id)
    # The attestation beside the model in S3 (the run's artifacts), the one deployment.succeeded carries.
    uri = tags["signoff.attestation_uri"]
    assert uri.startswith(f"s3://{registry.server.bucket}/") and uri.endswith("/attestation.intoto.json")
    key = uri.removeprefix(f"s3://{registry.server.bucket}/")
    stored = registry.server.s3.client().get_object(Bucket=registry.server.bucket, Key=key)["Body"].read()
    assert stored == attestation.file_bytes(end.event.attestation)

    # A version whose checks fail never gets the alias.
    second = await asyncio.to_thread(registry.log_and_register, name, 0.5)
    rejected = await submitted(events, name, second)
    assert (await events.wait_terminal(rejected, timeout=90)).topic == topics.REVIEW_DECIDED
    assert events.about(rejected, topics.DEPLOYMENT_SUCCEEDED) == []
    assert registry.alias(name) == first

    # Moved by hand to the rejected version: reported, and put back.
    await asyncio.to_thread(registry.client.set_registered_model_alias, name, "champion", second)
    drifted = await events.wait_for(
        lambda log: next((s.event for s in log.records if isinstance(s.event, DeploymentDrifted)
                          and s.event.model == name), None), 60, "deployment.drifted")
    assert isinstance(drifted, DeploymentDrifted)
    assert (drifted.found_version, drifted.expected_version, drifted.action) == (second, first, "reverted")
    assert drifted.submission_id == end.event.submission_id
    assert registry.alias(name) == first
