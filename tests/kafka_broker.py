"""Where the tests' real Kafka broker comes from, in this order:

1. KAFKA_BOOTSTRAP_SERVERS, when set: a broker someone else runs.
2. testcontainers, when a Docker engine answers: the same `apache/kafka` image as compose.yaml.
3. Otherwise the project's own broker from the Maven jars (deploy/kafka/kafka.sh), on its own
   ports and a fresh data folder, stopped at the end of the session.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from signoff.devstack import free_port

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
IMAGE = "apache/kafka:4.1.1"  # keep in step with compose.yaml and deploy/kafka/pom.xml


@contextmanager
def kafka_broker() -> Iterator[str]:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield servers
    elif _docker_answers():
        with _container() as servers:
            yield servers
    else:
        with _local_jars() as servers:
            yield servers


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False



@contextmanager
def _local_jars() -> Iterator[str]:
    port, controller = free_port(), free_port()
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller),
           # A folder per broker: test sessions running side by side never share a log.
           "KAFKA_DATA_DIR": str(ROOT / ".data" / "kafka-test" / str(port))}
    subprocess.run(["bash", str(KAFKA_SH), "reset"], env=env, check=True)
    subprocess.run(["bash", str(KAFKA_SH), "up"], env=env, check=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "down"], env=env, check=False)
        subprocess.run(["bash", str(KAFKA_SH), "reset"], env=env, check=False)


@contextmanager
def _container() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()  # fixed host port, so the broker can advertise it
    container = (
        DockerContainer(IMAGE)
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield f"127.0.0.1:{port}"
