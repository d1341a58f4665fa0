"""compose.yaml's Kafka without Docker: its entry script (deploy/kafka/docker-entry.sh) run with the
Kafka service's own environment from compose.yaml, the secrets deploy/kafka/compose-init.sh makes,
and the Maven jars in place of the image's scripts (ports moved to free ones, `kafka` read as
localhost). The broker formats every principal in, takes SASL_SSL only, authorizes from the ACLs
`signoff acl apply` writes, and answers the healthcheck's admin client."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from shared import topics
from shared.acl import Table
from shared.admin import apply_acls, ensure_topics
from shared.kafka import KafkaAccess
from signoff.devstack import free_port
from tests.kafka_broker import ROOT

pytestmark = pytest.mark.kafka

LIB = Path(os.environ.get("KAFKA_CACHE_DIR", ROOT / ".cache" / "kafka")) / "lib"
LOG4J = ROOT / "deploy" / "kafka" / "log4j2.yaml"


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    return f"{home}/bin/java" if home and Path(home, "bin", "java").exists() else "java"


def fake_bin(folder: Path, logs: Path) -> Path:
    """kafka-storage.sh and kafka-server-start.sh as the image has them, on the cached jars."""
    folder.mkdir()
    common = f'-cp "{LIB}/*" -Dlog4j2.configurationFile={LOG4J}'
    (folder / "kafka-storage.sh").write_text(
        f"#!/bin/sh\nexec {java()} -Xmx256m {common} kafka.tools.StorageTool \"$@\"\n")
    (folder / "kafka-server-start.sh").write_text(
        f"#!/bin/sh\nexec {java()} -Xmx512m {common} -Dkafka.logs.dir={logs} kafka.Kafka \"$@\"\n")
    for script in folder.iterdir():
        script.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def compose_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    subprocess.run(["bash", str(ROOT / "deploy" / "kafka" / "kafka.sh"), "fetch"], check=True)
    tmp = tmp_path_factory.mktemp("compose-kafka")
    secrets = tmp / "secrets"
    subprocess.run(["bash", str(ROOT / "deploy" / "kafka" / "compose-init.sh"), str(secrets)], check=True,
                   capture_output=True)
    kafka = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["kafka"]
    ports = {"29092": str(free_port()), "9092": str(free_port()), "9093": str(free_port())}
    env = {}
    for key, value in kafka["environment"].items():
        value = str(value)
        for old, new in ports.items():
            value = value.replace(f":{old}", f":{new}")
        env[key] = value.replace("://kafka:", "://localhost:").replace("://:", "://127.0.0.1:")
    env["KAFKA_LOG_DIRS"] = str(tmp / "data")
    # Compose mounts each secret as /run/secrets/<name>: the same names in one folder here.
    mounted = tmp / "run-secrets"
    mounted.mkdir()
    for name, source in yaml.safe_load((ROOT / "compose.yaml").read_text())["secrets"].items():
        relative = Path(source["file"]).relative_to(".data/compose")
        (mounted / name).symlink_to(secrets / relative)
    env |= {"SIGNOFF_KAFKA_BIN": str(fake_bin(tmp / "bin", tmp / "logs")), "SIGNOFF_KAFKA_SECRETS": str(mounted),
            "SIGNOFF_KAFKA_CONF_DIR": str(tmp / "conf"), "PATH": os.environ["PATH"]}
    entry = kafka["entrypoint"]
    assert entry == ["sh", "/signoff/docker-entry.sh"]
    with open(tmp / "broker.log", "wb") as log:
        broker = subprocess.Popen(["sh", str(ROOT / "deploy" / "kafka" / "docker-entry.sh")], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield tmp, int(ports["9092"])
    finally:
        broker.terminate()
        try:
            broker.wait(60)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()


def healthcheck(tmp: Path, port: int) -> bool:
    """compose.yaml's healthcheck command, with the jars' class for the image's script."""
    kafka = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["kafka"]
    args = kafka["healthcheck"]["test"][2:]
    args = [a.replace("localhost:9092", f"localhost:{port}").replace("/tmp/signoff-kafka", str(tmp / "conf"))
            for a in args]
    return subprocess.run([java(), "-Xmx256m", "-cp", f"{LIB}/*", f"-Dlog4j2.configurationFile={LOG4J}",
                           "org.apache.kafka.tools.BrokerApiVersionsCommand", *args],
                          capture_output=True, timeout=60).returncode == 0


def access(tmp: Path, port: int, principal: str) -> KafkaAccess:
    return KafkaAccess(bootstrap_servers=f"localhost:{port}", security_protocol="SASL_SSL", sasl_username=principal,
                       sasl_password=(tmp / "secrets" / "credentials" / principal).read_text(),
                       ssl_cafile=tmp / "secrets" / "certs" / "ca.pem")


async def test_the_compose_broker_is_secured_and_authorizes_from_the_table(compose_broker) -> None:
    tmp, port = compose_broker
    deadline = time.monotonic() + 120
    while not healthcheck(tmp, port):  # each try is a full client round trip, bounded by the deadline
        assert time.monotonic() < deadline, (tmp / "broker.log").read_text()[-3000:]
    assert "formatting" in (tmp / "broker.log").read_text()
    admin = access(tmp, port, "admin")
    await ensure_topics(admin, partitions=1)
    await apply_acls(admin, Table())

    producer = AIOKafkaProducer(**access(tmp, port, "pipeline").client_kwargs(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.MODEL_SUBMITTED, b"compose-probe")
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(topics.CHECKS_PASSED, b"compose-probe")
    finally:
        await producer.stop()
    no_tls = KafkaAccess(bootstrap_servers=f"localhost:{port}", security_protocol="SASL_PLAINTEXT",
                         sasl_username="pipeline", sasl_password=access(tmp, port, "pipeline").sasl_password)
    producer = AIOKafkaProducer(**no_tls.client_kwargs(), request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        try:
            await producer.start()
        finally:
            await producer.stop()
