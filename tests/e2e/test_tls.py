"""The stack over SASL_SSL: a broker of this module's own (kafka.sh with KAFKA_TLS=1, its CA and
certificate made by `kafka.sh certs`), the four services each as its own principal, a pipeline
submitting with the CLI and watching its model to production; and the broker's certificate is
checked: a client that does not trust the CA, or speaks no TLS, does not get in."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from shared import topics
from shared.acl import Table
from shared.admin import apply_acls, ensure_topics
from shared.kafka import KafkaAccess
from signoff.devstack import SERVICES, Stack, free_port
from tests import keys
from tests.e2e.conftest import write_workflows
from tests.kafka_broker import Cluster, local_broker

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[Cluster]:
    with local_broker(tls=True) as cluster:
        assert cluster.protocol == "SASL_SSL" and cluster.cafile is not None and cluster.cafile.is_file()
        yield cluster


@pytest.fixture(scope="module")
async def tls(tls_broker: Cluster) -> Cluster:
    await ensure_topics(tls_broker.admin, partitions=3)
    await apply_acls(tls_broker.admin, Table())
    return tls_broker


def cli(cluster: Cluster, principal: str, *args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}, **cluster.access(principal).env()}
    return subprocess.run([sys.executable, "-m", "signoff.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180)


async def test_a_model_reaches_production_over_sasl_ssl(tls: Cluster, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    env = {
        "VALIDATOR_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
        "DEPLOYER_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
        "DEPLOYER_MODEL_STORE": str(tmp_path / "store"),
        "DEPLOYER_STATE_DB": str(tmp_path / "deployer.db"),
        "REVIEW_NOTIFIER_STATE_DB": str(tmp_path / "reviews.db"),
        "REVIEW_NOTIFIER_HTTP_PORT": str(free_port()),
        "POLICY_STATE_DB": str(tmp_path / "policy.db"),
        "SIGNOFF_WORKFLOWS": str(write_workflows(tmp_path / "workflows")),
        **keys.env(),
    }
    path = artifacts / "tls-1.0.0.bin"
    path.write_bytes(b"weights\n" + os.urandom(2048))
    with Stack(tmp_path / "run", env, service_env={m: tls.service_env(m) for m in SERVICES}) as stack:
        stack.start_all()
        submitted = cli(tls, "pipeline", "submit", "--model", "tls", "--version", "1.0.0", "--artifact", str(path),
                        "--sha256", hashlib.sha256(path.read_bytes()).hexdigest(), "--metric", "accuracy=0.95",
                        "--data-version", "2026-11-01", "--code-commit", "3f2c9ab", "--submitter", "carol")
        assert submitted.returncode == 0, submitted.stderr
        sid = submitted.stdout.strip()
        watched = cli(tls, "pipeline", "watch", sid, "--timeout", "120")
        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert (tmp_path / "store" / "tls" / "1.0.0").is_dir()
        logs = "".join(stack.log_path(s).read_text() for s in SERVICES)
    for principal, password in tls.passwords.items():
        assert password.get_secret_value() not in logs + submitted.stderr + watched.stdout, principal


async def test_a_client_that_does_not_trust_the_ca_or_speaks_no_tls_is_refused(tls: Cluster) -> None:
    pipeline = tls.access("pipeline")
    untrusting = pipeline.model_copy(update={"ssl_cafile": None})  # the system's CAs: not ours
    no_tls = KafkaAccess(bootstrap_servers=tls.servers, security_protocol="SASL_PLAINTEXT",
                         sasl_username="pipeline", sasl_password=tls.passwords["pipeline"])
    for access in (untrusting, no_tls):
        producer = AIOKafkaProducer(**access.client_kwargs(), request_timeout_ms=5000)
        with pytest.raises(KafkaConnectionError):
            try:
                await producer.start()
            finally:
                await producer.stop()
    producer = AIOKafkaProducer(**pipeline.client_kwargs(), acks="all")  # the control: it does get in
    await producer.start()
    try:
        await producer.send_and_wait(topics.MODEL_SUBMITTED, b"tls-probe", key=b"tls-probe")
    finally:
        await producer.stop()
