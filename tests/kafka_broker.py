"""Where the tests' real Kafka broker comes from, and who the tests are on it. In this order:

1. KAFKA_BOOTSTRAP_SERVERS, when set: a broker someone else runs. Its security comes from the
   same variables as any client's (KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_CAFILE) and the principals'
   passwords from KAFKA_CREDENTIALS_DIR, one file per principal as deploy/kafka/kafka.sh writes
   them (e.g. `make kafka-up`, then KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092
   KAFKA_CREDENTIALS_DIR=.data/kafka/credentials). With KAFKA_SECURITY_PROTOCOL=PLAINTEXT every
   principal is anonymous and the authorization tests are skipped, saying why.
2. testcontainers, when a Docker engine answers: the same `apache/kafka` image and entry script
   as compose.yaml (deploy/kafka/docker-entry.sh: SCRAM users formatted in, the authorizer on).
3. Otherwise the project's own broker from the Maven jars (deploy/kafka/kafka.sh), on its own
   ports and a fresh data folder, stopped at the end of the session. KAFKA_TLS=1 makes it SASL_SSL.

Each yields a `Cluster`: the address, and `access(principal)` for each principal of shared/acl.py.
The session's `kafka` fixture (tests/conftest.py) creates the topics and applies the ACLs as the
admin.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr

from signoff.devstack import PRINCIPALS_ALL, Cluster, free_port, local_cluster, passwords_in

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
DOCKER_ENTRY = ROOT / "deploy" / "kafka" / "docker-entry.sh"
IMAGE = "apache/kafka:4.1.1"  # keep in step with compose.yaml and deploy/kafka/pom.xml
PRINCIPALS = PRINCIPALS_ALL
__all__ = ["KAFKA_SH", "Cluster", "kafka_broker", "local_broker", "local_cluster", "local_env"]


@contextmanager
def kafka_broker() -> Iterator[Cluster]:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield _external(servers)
    elif docker_answers():
        with _container() as cluster:
            yield cluster
    else:
        with _local_jars() as cluster:
            yield cluster


def _external(servers: str) -> Cluster:
    protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    if protocol not in ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"):
        raise ValueError(f"KAFKA_SECURITY_PROTOCOL={protocol!r}: PLAINTEXT, SASL_PLAINTEXT or SASL_SSL")
    cafile = Path(os.environ["KAFKA_SSL_CAFILE"]) if os.environ.get("KAFKA_SSL_CAFILE") else None
    passwords: dict[str, SecretStr] = {}
    if protocol != "PLAINTEXT":
        folder = os.environ.get("KAFKA_CREDENTIALS_DIR")
        if not folder:
            raise ValueError("KAFKA_BOOTSTRAP_SERVERS is set: set KAFKA_CREDENTIALS_DIR to the folder of the "
                             "principals' password files (kafka.sh: <data dir>/credentials), or "
                             "KAFKA_SECURITY_PROTOCOL=PLAINTEXT")
        passwords = passwords_in(Path(folder))
    return Cluster(servers, protocol, passwords, cafile)  # type: ignore[arg-type]


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def local_env(port: int, controller: int, data_dir: Path, tls: bool = False) -> dict[str, str]:
    """kafka.sh's variables for a broker of a test's own."""
    return {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller),
            "KAFKA_DATA_DIR": str(data_dir), "KAFKA_TLS": "1" if tls else "0", "KAFKA_PLAINTEXT": "0"}


@contextmanager
def local_broker(data_dir: Path | None = None, tls: bool | None = None) -> Iterator[Cluster]:
    """A fresh kafka.sh broker on free ports (SASL_SSL when `tls`, default KAFKA_TLS=1)."""
    if tls is None:
        tls = os.environ.get("KAFKA_TLS") == "1"
    port, controller = free_port(), free_port()
    # A folder per broker: test sessions running side by side never share a log.
    data_dir = data_dir or ROOT / ".data" / "kafka-test" / str(port)
    env = local_env(port, controller, data_dir, tls)
    subprocess.run(["bash", str(KAFKA_SH), "reset"], env=env, check=True)
    subprocess.run(["bash", str(KAFKA_SH), "up"], env=env, check=True)
    try:
        yield local_cluster(port, data_dir, tls)
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "down"], env=env, check=False)
        subprocess.run(["bash", str(KAFKA_SH), "reset"], env=env, check=False)


_local_jars = local_broker


@contextmanager
def _container() -> Iterator[Cluster]:
    """The compose image with compose's entry script (deploy/kafka/docker-entry.sh), SASL_PLAINTEXT
    on the mapped port; the principals' passwords in a folder mounted as its secrets. (No Docker
    engine runs where this was written: the entry script was tried with the Maven jars' broker.)"""
    import secrets
    import tempfile
    import uuid

    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()  # fixed host port, so the broker can advertise it
    with tempfile.TemporaryDirectory() as tmp:
        creds = Path(tmp)
        creds.chmod(0o755)  # the container's user reads them; throw-away passwords of a throw-away broker
        for name in ("broker", "controller", *PRINCIPALS):
            (creds / name).write_text(secrets.token_hex(24))
            (creds / name).chmod(0o644)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        container = (
            DockerContainer(IMAGE)
            .with_bind_ports(9092, port)
            .with_volume_mapping(str(DOCKER_ENTRY), "/signoff/docker-entry.sh", "ro")
            .with_volume_mapping(str(creds), "/run/secrets/kafka", "ro")
            .with_kwargs(entrypoint=["sh", "/signoff/docker-entry.sh"])
            .with_env("SIGNOFF_KAFKA_SECRETS", "/run/secrets/kafka")
            .with_env("CLUSTER_ID", cluster_id)
            .with_env("KAFKA_NODE_ID", "1")
            .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
            .with_env("KAFKA_LISTENERS", "EXTERNAL://:9092,CONTROLLER://localhost:9093")
            .with_env("KAFKA_ADVERTISED_LISTENERS", f"EXTERNAL://127.0.0.1:{port}")
            .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "EXTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT")
            .with_env("KAFKA_INTER_BROKER_LISTENER_NAME", "EXTERNAL")
            .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
            .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
            .with_env("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs")
            .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        )
        with container:
            wait_for_logs(container, "Kafka Server started", timeout=120)
            yield Cluster(f"127.0.0.1:{port}", "SASL_PLAINTEXT", passwords_in(creds))
