"""What the benchmark starts and must stop: its own Kafka broker, the relay processes, the artifact.

Every piece is a context manager, so an error or Ctrl-C on the way out still stops it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import RELAY_HOPS
from bench.load import Artifact, BenchFailed
from bench.relay import READY_LINE
from shared.kafka import KafkaAccess
from signoff.devstack import Cluster, free_port, local_cluster

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"


@contextmanager
def kafka_broker(port: int, controller_port: int, data_dir: Path) -> Iterator[Cluster]:
    """A fresh single-node secured broker (SASL/SCRAM, ACLs: apply them with shared.admin.apply_acls);
    stopped and its data deleted on the way out."""
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller_port),
           "KAFKA_DATA_DIR": str(data_dir), "KAFKA_TLS": "0", "KAFKA_PLAINTEXT": "0"}
    subprocess.run(["bash", str(KAFKA_SH), "reset"], env=env, check=True)  # no leftovers of a crashed run
    try:
        if subprocess.run(["bash", str(KAFKA_SH), "up"], env=env).returncode != 0:
            raise BenchFailed(f"kafka.sh up failed on port {port}/{controller_port} (its message is above); "
                              "--kafka-port and --kafka-controller-port pick others")
        yield local_cluster(port, data_dir)
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "reset"], env=env, check=False)



def write_artifact(folder: Path, size: int = 64 * 1024) -> Artifact:
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / "model.onnx").resolve()
    data = b"weights\n" + os.urandom(size)  # a fixed first byte: never taken for a pickle
    path.write_bytes(data)
    return Artifact(path=path, uri=path.as_uri(), sha256=hashlib.sha256(data).hexdigest())


def service_env(bootstrap: str, tmp: Path, artifacts: Path, log_level: str | None) -> dict[str, str]:
    """Every path a service writes points into `tmp`. (Each service's own Kafka principal comes
    from `Stack(..., service_env=cluster.services_env())`.) The services also run with `tmp` as their
    working directory (see run.py), so a relative default this list misses lands there too,
    never in the developer's .data/; hence the explicit PYTHONPATH and workflows folder."""
    roots = json.dumps([str(artifacts)])
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        "SIGNOFF_WORKFLOWS": str(ROOT / "workflows"),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "VALIDATOR_ARTIFACT_ROOTS": roots,
        "DEPLOYER_ARTIFACT_ROOTS": roots,
        "DEPLOYER_MODEL_STORE": str(tmp / "model-store"),
        "DEPLOYER_STATE_DB": str(tmp / "deployer" / "state.db"),
        "POLICY_STATE_DB": str(tmp / "policy" / "state.db"),
        "REVIEW_NOTIFIER_STATE_DB": str(tmp / "review-notifier" / "reviews.db"),
        "REVIEW_NOTIFIER_HTTP_PORT": str(free_port()),
    }
    if log_level:
        env["SIGNOFF_LOG_LEVEL"] = log_level
    return env


class Relays:
    """The three relay hops as separate processes, like the services; `sizes` maps each sink
    topic to the (value bytes, header bytes) of the Signoff event it stands for."""

    def __init__(self, kafka: KafkaAccess, sizes: dict[str, tuple[int, int]], logs: Path) -> None:
        """The relays connect as `kafka` (the admin: a bare relay has no principal of its own)."""
        self.kafka, self.sizes, self.logs = kafka, sizes, logs
        self.procs: dict[str, subprocess.Popen] = {}

    def dead(self) -> list[str]:
        return [f"relay-{name}" for name, p in self.procs.items() if p.poll() is not None]

    def __enter__(self) -> Relays:
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            for name, source, sink in RELAY_HOPS:
                value_size, headers_size = self.sizes[sink]
                with open(self.logs / f"relay-{name}.log", "wb") as log:
                    self.procs[name] = subprocess.Popen(
                        [sys.executable, "-m", "bench.relay", self.kafka.bootstrap_servers, source, sink,
                         f"bench-relay-{name}", str(value_size), str(headers_size)],
                        env={**os.environ, **self.kafka.env()}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True)
            for name in self.procs:
                self._wait_ready(name)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _wait_ready(self, name: str, timeout: float = 60.0) -> None:
        log = self.logs / f"relay-{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_LINE in log.read_text(errors="replace"):
                return
            if self.procs[name].poll() is not None:
                break
            time.sleep(0.1)  # polling a log file for a line, bounded by the deadline
        raise BenchFailed(f"relay-{name} did not start; log tail:\n{log.read_text(errors='replace')[-2000:]}")
