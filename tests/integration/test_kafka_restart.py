"""Stopping and starting Kafka loses no event: on a broker of this test's own (the jars from
deploy/kafka), with the four services running through the restart."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from shared.acl import Table
from shared.admin import apply_acls, ensure_topics
from shared.events import Candidate, ModelSubmitted, Submission
from signoff import client
from signoff.devstack import SERVICES, Stack, free_port
from tests.eventlog import EventLog
from tests.kafka_broker import KAFKA_SH, local_cluster, local_env

pytestmark = pytest.mark.kafka


def kafka(env: dict[str, str], command: str) -> None:
    subprocess.run(["bash", str(KAFKA_SH), command], env=env, check=True)


def submission(artifacts: Path, i: int) -> ModelSubmitted:
    path = artifacts / f"m{i}.bin"
    path.write_bytes(b"weights\n" + os.urandom(1024))  # a fixed first byte: never pickle magic
    return ModelSubmitted(submission_id=uuid.uuid4(), submission=Submission(
        candidate=Candidate(model="restart", version=str(i), artifact_uri=path.as_uri(),
                            artifact_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                            data_version="d1", code_commit="abcdef1"),
        metrics={"accuracy": 0.95}, submitter="carol"))


async def test_kafka_stop_and_start_loses_no_event(tmp_path: Path) -> None:
    port = free_port()
    broker = local_env(port, free_port(), tmp_path / "kafka")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    kafka(broker, "up")
    try:
        cluster = local_cluster(port, tmp_path / "kafka")
        await ensure_topics(cluster.admin, partitions=3)
        await apply_acls(cluster.admin, Table())
        services = {
            "VALIDATOR_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
            "DEPLOYER_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
            "DEPLOYER_MODEL_STORE": str(tmp_path / "store"),
            "DEPLOYER_STATE_DB": str(tmp_path / "deployer.db"),
            "REVIEW_NOTIFIER_STATE_DB": str(tmp_path / "reviews.db"),
            "POLICY_STATE_DB": str(tmp_path / "policy.db"),
            "SIGNOFF_WORKFLOWS": str(Path(__file__).resolve().parents[2] / "workflows"),
            "REVIEW_NOTIFIER_HTTP_PORT": str(free_port()),
        }
        with Stack(tmp_path / "run", services,
                   service_env={m: cluster.service_env(m) for m in SERVICES}) as stack:
            stack.start_all()
            batch = [submission(artifacts, i) for i in range(20)]
            await client.publish(cluster.access("pipeline"), batch)
            kafka(broker, "down")  # mid-stream: the services are still working on the batch
            kafka(broker, "up")
            later = [submission(artifacts, i) for i in range(20, 30)]
            await client.publish(cluster.access("pipeline"), later)

            log = EventLog(cluster.admin)
            await log.start()
            try:
                for event in batch + later:
                    end = await log.wait_terminal(event.submission_id, timeout=120)
                    assert end.topic == "deployment.succeeded"
                # Every event published before the restart is still on the broker.
                for event in batch:
                    assert [s.topic for s in log.about(event.submission_id)][:1] == ["model.submitted"]
            finally:
                await log.stop()
        versions = sorted(int(p.name) for p in (tmp_path / "store" / "restart").iterdir() if p.is_dir())
        assert versions == list(range(30))
    finally:
        kafka(broker, "down")
