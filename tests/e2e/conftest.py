"""The four services as real processes on the real broker, shared by the end-to-end tests.
Each test uses its own model names, so tests never see each other's submissions."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from signoff.devstack import Stack, free_port
from tests.eventlog import EventLog

pytestmark = pytest.mark.kafka


@dataclass
class Env:
    bootstrap: str
    workdir: Path
    artifacts: Path
    model_store: Path
    review_url: str
    token: str
    stack: Stack
    workflow_digest: str

    def artifact(self, name: str, content: bytes | None = None) -> tuple[Path, str]:
        """A model file under the allowed root, and its sha256."""
        path = self.artifacts / name
        path.write_bytes(content if content is not None else b"weights\n" + os.urandom(4096))
        return path, hashlib.sha256(path.read_bytes()).hexdigest()

    async def review_open(self, submission_id: str, timeout: float = 30.0) -> dict:
        """Wait until the review-notifier has opened the review (what a reviewer is notified of)."""
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient(base_url=self.review_url) as http:
            while asyncio.get_running_loop().time() < deadline:
                response = await http.get(f"/reviews/{submission_id}")
                if response.status_code == 200:
                    return response.json()
                await asyncio.sleep(0.05)
        raise AssertionError(f"review of {submission_id} not opened within {timeout}s")

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
               "SIGNOFF_REVIEW_URL": self.review_url, "SIGNOFF_API_TOKEN": self.token}
        result = subprocess.run([sys.executable, "-m", "signoff.cli", *args], env=env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"signoff {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result



# Approve automatically above 90% accuracy, otherwise ask alice or bob.
WORKFLOW = """
name: e2e-default
default: true
steps:
  - name: automated_checks
    type: checks
    inputs: {min: {accuracy: 0.80}}
  - name: manual_approval
    type: approval
    when: "metrics.accuracy <= 0.90"
    inputs: {approvers: ['alice', 'group:leads'], quorum: 1, timeout: 1h}
    on_reject: fail_pipeline
  - name: deploy
    type: deploy
    inputs: {target: model-store}
"""


# Every automated check the validator has, for models named strict-*.
STRICT = """
name: e2e-strict
match: ["strict-*"]
steps:
  - name: automated_checks
    type: checks
    inputs:
      min: {accuracy: 0.80}
      fairness: {min_parity_ratio: 0.8, max_equalized_odds_difference: 0.1}
      lineage: [data_version, code_commit, training_run_id]
      security: {allowed_globals: ["collections.OrderedDict"]}
      regression: {higher_is_better: {accuracy: 0.01}}
      model_card: true
  - name: deploy
    type: deploy
"""


def write_workflows(folder: Path) -> Path:
    folder.mkdir()
    (folder / "default.yaml").write_text(WORKFLOW)
    (folder / "strict.yaml").write_text(STRICT)
    (folder / "groups.yaml").write_text("leads: [bob]\n")
    return folder


@pytest.fixture(scope="session")
def e2e(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("stack")
    artifacts, store = workdir / "artifacts", workdir / "model-store"
    artifacts.mkdir()
    port, token = free_port(), secrets.token_urlsafe(24)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "VALIDATOR_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
        "DEPLOYER_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
        "DEPLOYER_MODEL_STORE": str(store),
        "DEPLOYER_STATE_DB": str(workdir / "deployer.db"),
        "REVIEW_NOTIFIER_STATE_DB": str(workdir / "reviews.db"),
        "REVIEW_NOTIFIER_HTTP_PORT": str(port),
        "REVIEW_NOTIFIER_API_TOKEN": token,
        "POLICY_STATE_DB": str(workdir / "policy.db"),
        "SIGNOFF_WORKFLOWS": str(write_workflows(workdir / "workflows")),
    }
    with Stack(workdir, env) as stack:
        stack.start_all()
        digest = hashlib.sha256((workdir / "workflows" / "default.yaml").read_bytes()).hexdigest()
        yield Env(kafka, workdir, artifacts, store, f"http://127.0.0.1:{port}", token, stack, digest)


@pytest.fixture(scope="session")
async def events(kafka: str) -> AsyncIterator[EventLog]:
    log = EventLog(kafka)
    await log.start()
    yield log
    await log.stop()
