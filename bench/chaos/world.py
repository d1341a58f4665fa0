"""What a chaos run runs on: its own broker from the jars (deploy/kafka/kafka.sh, free ports, a data
folder in the run's folder), which it may SIGKILL and start again, and the four services as
processes (signoff.devstack.Stack) with their state, artifacts and model store in the same folder."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

from bench.chaos import GROUPS, WORKFLOW
from services.review_notifier.api_tokens import TokenFile, issue
from shared.acl import Table
from shared.admin import apply_acls, ensure_topics
from shared.events import utcnow
from shared.kafka import KafkaAccess
from signoff.devstack import Cluster, Stack, free_port, local_cluster

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
PARTITIONS = 3


class World:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.artifacts, self.store = workdir / "artifacts", workdir / "model-store"
        port, self.http_port = free_port(), free_port()
        self.tokens = _reviewer_tokens(workdir / "tokens.json")  # each reviewer's own API token
        self.bootstrap = f"127.0.0.1:{port}"
        self.review_url = f"http://127.0.0.1:{self.http_port}"
        self.kafka_data = workdir / "kafka"
        self.kafka_env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(free_port()),
                          "KAFKA_DATA_DIR": str(self.kafka_data), "KAFKA_TLS": "0", "KAFKA_PLAINTEXT": "0"}
        self.port = port
        self.cluster: Cluster | None = None  # once the broker is up: its passwords are made then
        self.stack = Stack(workdir, self._services_env())

    def _services_env(self) -> dict[str, str]:
        workflows = self.workdir / "workflows"
        workflows.mkdir(parents=True, exist_ok=True)
        (workflows / "default.yaml").write_text(WORKFLOW)
        (workflows / "groups.yaml").write_text(GROUPS)
        self.artifacts.mkdir(exist_ok=True)
        roots = json.dumps([str(self.artifacts)])
        return {
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SIGNOFF_WORKFLOWS": str(workflows),
            "VALIDATOR_ARTIFACT_ROOTS": roots,
            "VALIDATOR_DOWNLOAD_DIR": str(self.workdir / "downloads"),
            "DEPLOYER_ARTIFACT_ROOTS": roots,
            "DEPLOYER_MODEL_STORE": str(self.store),
            "DEPLOYER_STATE_DB": str(self.workdir / "deployer.db"),
            "POLICY_STATE_DB": str(self.workdir / "policy.db"),
            "REVIEW_NOTIFIER_STATE_DB": str(self.workdir / "reviews.db"),
            "REVIEW_NOTIFIER_HTTP_PORT": str(self.http_port),
            "SIGNOFF_TOKENS_FILE": str(self.workdir / "tokens.json"),
        }

    # --- the broker ---------------------------------------------------------------------------

    @property
    def access(self) -> KafkaAccess:
        """The driver's and the tail's access: the admin (the driver plays the pipelines and the
        operators, and the tail reads the dead-letter topics too)."""
        assert self.cluster is not None, "the broker is up (World.__enter__)"
        return self.cluster.admin

    def kafka(self, command: str) -> None:
        subprocess.run(["bash", str(KAFKA_SH), command], env=self.kafka_env, check=True,
                       stdout=subprocess.DEVNULL)

    def kill_broker(self, timeout: float = 30.0) -> int:
        """SIGKILL the broker's JVM (no controlled shutdown, no log flush); returns its pid once gone."""
        pid = int((self.kafka_data / "kafka.pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker pid {pid} still alive {timeout}s after SIGKILL")
            time.sleep(0.05)  # polling /proc for the process to go, bounded by the deadline
        return pid

    # --- the services -------------------------------------------------------------------------

    def running(self, service: str) -> bool:
        proc = self.stack.procs.get(service)
        return proc is not None and proc.poll() is None

    def store_snapshot(self) -> dict[str, dict]:
        """model -> {"production": the version PRODUCTION names, "versions": {version: manifest}}."""
        snapshot: dict[str, dict] = {}
        for folder in sorted(self.store.iterdir()) if self.store.exists() else ():
            if folder.name.startswith(".") or not folder.is_dir():
                continue  # .staging, .revoked
            pointer = folder / "PRODUCTION"
            snapshot[folder.name] = {
                "production": (pointer.read_text().strip() or None) if pointer.exists() else None,
                "versions": {v.name: json.loads((v / "manifest.json").read_text())
                             for v in sorted(folder.iterdir()) if (v / "manifest.json").is_file()}}
        return snapshot

    def __enter__(self) -> World:
        self.kafka("reset")
        self.kafka("up")
        try:
            self.cluster = local_cluster(self.port, self.kafka_data)
            asyncio.run(ensure_topics(self.cluster.admin, partitions=PARTITIONS))
            asyncio.run(apply_acls(self.cluster.admin, Table()))
            self.stack.service_env = self.cluster.services_env()  # each service as its own principal
            self.stack.start_all()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stack.stop_all()
        finally:
            subprocess.run(["bash", str(KAFKA_SH), "down"], env=self.kafka_env, check=False,
                           stdout=subprocess.DEVNULL)


def _alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (killed, not yet reaped by whoever adopted it) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # gone meanwhile (the next look says so), or no /proc (macOS)
        return True


def _reviewer_tokens(path: Path, reviewers: tuple[str, ...] = ("alice", "bob")) -> dict[str, str]:
    """An API token per reviewer of the scenarios (scenario.py), as `signoff token create` writes it."""
    tokens = {}
    for reviewer in reviewers:
        tokens[reviewer], record = issue(reviewer, "approver", timedelta(days=7), utcnow())
        TokenFile(path).add(record)
    return tokens
