"""MLflow as a source, against a real `mlflow server` (SQLite, artifacts on the moto S3 server) and
the real broker: `signoff submit --mlflow` submits what the registry says, with the digest of the
model's files; the bridge submits each new version when MLflow calls its webhook, or when it polls,
and refuses deliveries that are not MLflow's."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from mlflow import MlflowClient
from mlflow.webhooks.delivery import _generate_hmac_signature

from services.mlflow_bridge.app import create_app
from services.mlflow_bridge.settings import MlflowBridgeSettings
from services.mlflow_bridge.state import BridgeState
from shared import reader, topics
from shared.events import ModelSubmitted
from signoff import mlflow_mapping
from signoff.devstack import free_port
from signoff.mlflow_source import MlflowSourceSettings
from tests import keys
from tests.kafka_broker import Cluster
from tests.mlflow_server import MlflowServer

pytestmark = pytest.mark.kafka

COMMIT = "3f2c9ab0d1e2"
SECRET = "bridge-secret-" + "x" * 30


def model_folder(root: Path) -> dict[str, bytes]:
    """An MLflow-model-like folder: what is logged, file by file."""
    files = {"MLmodel": b"flavors: {}\n", "model.pkl": os.urandom(2048), "data/weights.bin": os.urandom(4096)}
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return files


def tree_digest(files: dict[str, bytes]) -> str:
    """The documented folder digest (docs/sources.md), computed here from the bytes themselves."""
    listing = "".join(f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n"
                      for name in sorted(files, key=lambda n: n.encode()))
    return hashlib.sha256(listing.encode()).hexdigest()


def register(ml: MlflowServer, name: str, tmp: Path, *, commit: str | None = COMMIT) -> tuple[str, str, dict]:
    """Log a run (metrics, tags, the model folder) and register it as a new version of `name`:
    (version, the model's artifact URI, files). Blocking: async tests run it in a thread."""
    from mlflow.exceptions import MlflowException

    client = MlflowClient(ml.tracking_uri)
    folder = tmp / uuid.uuid4().hex[:8]
    folder.mkdir()
    files = model_folder(folder)
    run = client.create_run("0", tags={"data_version": "2026-11-01", "mlflow.user": "carol",
                                       **({mlflow_mapping.GIT_COMMIT_TAG: commit} if commit else {})})
    client.log_metric(run.info.run_id, "accuracy", 0.93)
    client.log_metric(run.info.run_id, "val_auc", 0.97)
    client.log_artifacts(run.info.run_id, str(folder), "model")
    client.set_terminated(run.info.run_id)
    try:
        client.create_registered_model(name)
    except MlflowException:
        pass  # registered by an earlier call
    source = f"{run.info.artifact_uri}/model"
    version = client.create_model_version(name, source, run_id=run.info.run_id)
    return str(version.version), source, files


async def submitted(cluster: Cluster, submission_id: uuid.UUID, timeout: float = 60.0) -> list[ModelSubmitted]:
    """Every model.submitted of `submission_id` on the broker, waiting up to `timeout` for one."""
    deadline = time.monotonic() + timeout
    wanted = str(submission_id).encode()
    while True:
        found = [e for e in await reader.read_events(
            cluster.admin, (topics.MODEL_SUBMITTED,), keep=lambda r: dict(r.headers).get("ce_subject") == wanted)
            if isinstance(e, ModelSubmitted)]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)  # re-reading the topic until the deadline


@pytest.fixture
def mlflow_env(mlflow: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> MlflowServer:
    """This process as an MLflow client of the test server (the model files go to its S3)."""
    for key, value in mlflow.env().items():
        monkeypatch.setenv(key, value)
    return mlflow


def test_submit_mlflow_publishes_what_the_registry_says(
        mlflow_env: MlflowServer, kafka_cluster: Cluster, unique: str, tmp_path: Path) -> None:
    name = f"Churn Model {unique}"
    version, source, files = register(mlflow_env, name, tmp_path)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
           **kafka_cluster.access("pipeline").env(), **mlflow_env.env(),
           "SIGNOFF_TRUSTED_KEYS": str(keys.keys().trust),
           "SIGNOFF_SIGNING_KEY_FILE": str(keys.keys().files["pipeline-test"]),
           "SIGNOFF_MLFLOW_METRICS": json.dumps({"accuracy": "accuracy", "val_auc": "auc"}),
           "SIGNOFF_MLFLOW_MODEL_NAMES": json.dumps({name: f"churn-model-{unique}"})}
    for ref in (f"models:/{name}/{version}", f"models:/{name}@champion"):
        if "@" in ref:
            MlflowClient(mlflow_env.tracking_uri).set_registered_model_alias(name, "champion", version)
        result = subprocess.run([sys.executable, "-m", "signoff.cli", "submit", "--mlflow", ref], env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        expected_id = mlflow_mapping.submission_id(mlflow_env.tracking_uri, name, version)
        assert result.stdout.strip() == str(expected_id)  # an alias names the same version: the same id

    events = asyncio.run(submitted(kafka_cluster, expected_id))
    assert {e.event_id for e in events} == {mlflow_mapping.event_id(mlflow_env.tracking_uri, name, version)}
    submission = events[0].submission
    assert submission.candidate.model == f"churn-model-{unique}"
    assert submission.candidate.version == version
    assert submission.candidate.artifact_uri == source and source.startswith(f"s3://{mlflow_env.bucket}/")
    assert submission.candidate.artifact_sha256 == tree_digest(files)
    assert (submission.candidate.code_commit, submission.candidate.data_version) == (COMMIT, "2026-11-01")
    assert submission.metrics == {"accuracy": 0.93, "auc": 0.97}
    assert submission.training_run_id and submission.training_run_id in source
    assert submission.submitter == f"carol (mlflow models:/{name}/{version})"


def test_submit_mlflow_refuses_a_missing_version_and_a_run_without_a_commit(
        mlflow_env: MlflowServer, kafka_cluster: Cluster, unique: str, tmp_path: Path) -> None:
    name = f"nocommit-{unique}"
    version, _, _ = register(mlflow_env, name, tmp_path, commit=None)
    env = {**os.environ, **kafka_cluster.access("pipeline").env(),
           "SIGNOFF_MLFLOW_MODEL_NAMES": json.dumps({name: name})}
    missing = subprocess.run([sys.executable, "-m", "signoff.cli", "submit", "--mlflow", f"models:/{name}/99"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and f"MLflow has no models:/{name}/99" in missing.stderr
    bare = subprocess.run([sys.executable, "-m", "signoff.cli", "submit", "--mlflow", f"models:/{name}/{version}"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert bare.returncode == 1 and "candidate.code_commit" in bare.stderr
    assert "mlflow.source.git.commit" in bare.stderr
    sid = mlflow_mapping.submission_id(mlflow_env.tracking_uri, name, version)
    assert asyncio.run(submitted(kafka_cluster, sid, timeout=0)) == []


@asynccontextmanager
async def running_bridge(ml: MlflowServer, cluster: Cluster, state: Path, names: dict[str, str],
                         **fields: object) -> AsyncIterator[str]:
    """The bridge's app, built from settings, served by uvicorn on a free port: its base URL.
    `names`: the MLflow models it submits (SIGNOFF_MLFLOW_MODEL_NAMES)."""
    port = free_port()
    settings = MlflowBridgeSettings(
        **{k.lower(): v for k, v in cluster.access("pipeline").env().items()},
        signing_key_file=keys.keys().files["pipeline-test"], state_db=state,
        artifact_s3_prefixes=(f"s3://{ml.bucket}/",), s3_endpoint_url=ml.s3.endpoint_url,
        public_url=f"http://127.0.0.1:{port}/mlflow/webhook", webhook_secret=SECRET,
        webhook_name=f"signoff-{uuid.uuid4().hex[:8]}", **fields)
    rules = MlflowSourceSettings(tracking_uri=ml.tracking_uri, model_names=names)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, rules), host="127.0.0.1", port=port,
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 60
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "the bridge did not start"
        await asyncio.sleep(0.05)  # waiting for uvicorn to bind, bounded by the deadline
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_the_bridge_submits_each_new_version_mlflow_announces_and_refuses_forgeries(
        mlflow_env: MlflowServer, kafka_cluster: Cluster, unique: str, tmp_path: Path) -> None:
    name = f"bridged-{unique}"
    async with running_bridge(mlflow_env, kafka_cluster, tmp_path / "bridge.db", {name: name},
                              poll_seconds=3600) as url:
        # Forgeries first: nothing of theirs may be submitted.
        body = json.dumps({"entity": "model_version", "action": "created", "data": {"name": name, "version": "1"}})
        now = str(int(time.time()))
        forged = {"X-MLflow-Delivery-Id": "forged-1", "X-MLflow-Timestamp": now,
                  "X-MLflow-Signature": _generate_hmac_signature("not-the-secret", "forged-1", now, body)}
        stale_at = str(int(time.time()) - 3600)
        stale = {"X-MLflow-Delivery-Id": "stale-1", "X-MLflow-Timestamp": stale_at,
                 "X-MLflow-Signature": _generate_hmac_signature(SECRET, "stale-1", stale_at, body)}
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.post("/mlflow/webhook", content=body, headers=forged)).status_code == 401
            assert (await http.post("/mlflow/webhook", content=body, headers=stale)).status_code == 401

        version, _, files = await asyncio.to_thread(register, mlflow_env, name, tmp_path)
        assert version == "1"
        sid = mlflow_mapping.submission_id(mlflow_env.tracking_uri, name, version)
        events = await submitted(kafka_cluster, sid, timeout=60)
        assert events, "MLflow's webhook did not lead to a submission"
        assert events[0].submission.candidate.artifact_sha256 == tree_digest(files)
        assert events[0].submission.candidate.model == name

        # A replay of a genuine delivery, and a second delivery of the same version: one submission.
        fresh = str(int(time.time()))
        genuine = {"X-MLflow-Delivery-Id": "again-1", "X-MLflow-Timestamp": fresh,
                   "X-MLflow-Signature": _generate_hmac_signature(SECRET, "again-1", fresh, body)}
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.post("/mlflow/webhook", content=body, headers=genuine)).status_code == 202
            assert (await http.post("/mlflow/webhook", content=body, headers=genuine)).status_code == 409
    assert {e.event_id for e in await submitted(kafka_cluster, sid)} == \
        {mlflow_mapping.event_id(mlflow_env.tracking_uri, name, version)}


async def test_the_bridge_polls_when_webhooks_are_off(
        mlflow_env: MlflowServer, kafka_cluster: Cluster, unique: str, tmp_path: Path) -> None:
    name = f"polled-{unique}"
    async with running_bridge(mlflow_env, kafka_cluster, tmp_path / "bridge.db", {name: name}, mode="poll",
                              poll_seconds=1):
        version, _, files = await asyncio.to_thread(register, mlflow_env, name, tmp_path)
        sid = mlflow_mapping.submission_id(mlflow_env.tracking_uri, name, version)
        events = await submitted(kafka_cluster, sid, timeout=60)
    assert events and events[0].submission.candidate.artifact_sha256 == tree_digest(files)


async def test_the_bridge_submits_only_listed_models_and_the_others_hold_up_nothing(
        mlflow_env: MlflowServer, kafka_cluster: Cluster, unique: str, tmp_path: Path) -> None:
    listed = f"Churn Model {unique}"
    target = f"churn-model-{unique}"
    others = [f"churn\u2010model-{unique}", f"churn-model-{unique}", f"--Churn Model {unique}.."]
    state = tmp_path / "bridge.db"
    async with running_bridge(mlflow_env, kafka_cluster, state, {listed: target}, mode="poll", poll_seconds=1):
        # Versions of names that are not listed, look-alikes of the listed one, come first.
        refused = [(other, (await asyncio.to_thread(register, mlflow_env, other, tmp_path))[0]) for other in others]
        version, _, files = await asyncio.to_thread(register, mlflow_env, listed, tmp_path)
        sid = mlflow_mapping.submission_id(mlflow_env.tracking_uri, listed, version)
        events = await submitted(kafka_cluster, sid, timeout=60)
    assert events and events[0].submission.candidate.model == target
    assert events[0].submission.candidate.artifact_sha256 == tree_digest(files)
    remembered = BridgeState(state)
    for other, other_version in refused:
        assert "not listed in SIGNOFF_MLFLOW_MODEL_NAMES" in (remembered.handled(other, other_version) or "")
        other_sid = mlflow_mapping.submission_id(mlflow_env.tracking_uri, other, other_version)
        assert await submitted(kafka_cluster, other_sid, timeout=0) == []
    remembered.close()
