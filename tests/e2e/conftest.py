"""The four services as real processes on the real broker, shared by the end-to-end tests.
Each test uses its own model names, so tests never see each other's submissions."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from services.review_notifier.api_tokens import TokenFile, issue
from shared.events import utcnow
from shared.kafka import KafkaAccess
from shared.values import policy_digest
from signoff.devstack import SERVICES, Stack, free_port
from tests import keys
from tests.eventlog import EventLog
from tests.kafka_broker import Cluster

pytestmark = pytest.mark.kafka


@dataclass
class Env:
    cluster: Cluster  # the broker; `cluster.access(principal)` for any principal of shared/acl.py
    workdir: Path
    artifacts: Path
    model_store: Path
    review_url: str
    tokens: dict[str, str]  # person -> their own API token for the review API (`signoff token create`)
    stack: Stack
    workflow_digest: str

    @property
    def pipeline(self) -> KafkaAccess:
        """As a training pipeline: submits (model.submitted) and watches."""
        return self.cluster.access("pipeline")

    @property
    def operator(self) -> KafkaAccess:
        """As an operator: rollbacks and revocations."""
        return self.cluster.access("operator")

    @property
    def admin(self) -> KafkaAccess:
        """As the admin (a super user): for records no other principal may write, such as a forged
        approval or a redelivered event, when the test is about a consumer's own defence."""
        return self.cluster.admin

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
                response = await http.get(f"/reviews/{submission_id}", headers=self.auth("dave"))
                if response.status_code == 200:
                    return response.json()
                await asyncio.sleep(0.05)
        raise AssertionError(f"review of {submission_id} not opened within {timeout}s")

    def auth(self, person: str) -> dict[str, str]:
        """The Authorization header of `person`'s own API token."""
        return {"Authorization": f"Bearer {self.tokens[person]}"}

    def cli(self, *args: str, check: bool = True, timeout: float = 120, principal: str | None = None,
            signer: str | None = None, person: str | None = None) -> subprocess.CompletedProcess:
        """`signoff ARGS` as the principal who runs that command: an operator for rollback and
        revoke, the admin for topics and acl, a pipeline for the rest (or `principal`). It
        signs with the test key of `signer` (tests/keys.py; rollback and revoke need an
        operator's, "oncall" unless told) and believes the tests' trust file. With `person`, it
        holds that person's API token (`signoff review` votes as them)."""
        principal = principal or CLI_PRINCIPALS.get(args[0] if args else "", "pipeline")
        signer = signer or ("oncall" if args and args[0] in ("rollback", "revoke") else None)
        env = {**_without_kafka(os.environ), **self.cluster.access(principal).env(),
               "SIGNOFF_REVIEW_URL": self.review_url,
               **({"SIGNOFF_API_TOKEN": self.tokens[person]} if person else {}),
               "SIGNOFF_TRUSTED_KEYS": str(keys.keys().trust),
               # history and revoke answer from the audit index: this stack's own, not the checkout's
               "SIGNOFF_AUDIT_INDEX": str(self.workdir / "signoff" / "audit.sqlite"),
               **({"SIGNOFF_SIGNING_KEY_FILE": str(keys.keys().files[signer])} if signer else {})}
        result = subprocess.run([sys.executable, "-m", "signoff.cli", *args], env=env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"signoff {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result



CLI_PRINCIPALS = {"rollback": "operator", "revoke": "operator", "topics": "admin", "acl": "admin"}


def _without_kafka(env: Mapping[str, str]) -> dict[str, str]:
    """The environment without any KAFKA_* variable: a child is given its own principal only."""
    return {k: v for k, v in env.items() if not k.startswith("KAFKA_")}


def service_env(cluster: Cluster) -> dict[str, dict[str, str]]:
    """Each service's KAFKA_* variables: the cluster as its own principal."""
    return {module: cluster.service_env(module) for module in SERVICES}


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


# Everyone the tests vote or read as; each has an API token in the stack's token file.
PEOPLE = ("alice", "bob", "carol", "dave", "erin", "oncall")


def people_tokens(path: Path) -> dict[str, str]:
    """An approver token per person in PEOPLE, written to `path` as `signoff token create` does."""
    tokens = {}
    for person in PEOPLE:
        tokens[person], record = issue(person, "approver", timedelta(days=1), utcnow())
        TokenFile(path).add(record)
    return tokens


def write_workflows(folder: Path) -> Path:
    folder.mkdir()
    (folder / "default.yaml").write_text(WORKFLOW)
    (folder / "strict.yaml").write_text(STRICT)
    (folder / "groups.yaml").write_text("leads: [bob]\n")
    return folder


@pytest.fixture(scope="session")
def e2e(kafka_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("stack")
    artifacts, store = workdir / "artifacts", workdir / "model-store"
    artifacts.mkdir()
    port, tokens = free_port(), people_tokens(workdir / "tokens.json")
    env = {
        "VALIDATOR_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
        "DEPLOYER_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
        "DEPLOYER_MODEL_STORE": str(store),
        "DEPLOYER_STATE_DB": str(workdir / "deployer.db"),
        "REVIEW_NOTIFIER_STATE_DB": str(workdir / "reviews.db"),
        "REVIEW_NOTIFIER_HTTP_PORT": str(port),
        "SIGNOFF_TOKENS_FILE": str(workdir / "tokens.json"),  # the review API's people (auth.py)
        "SIGNOFF_KNOWN_USERS": json.dumps(PEOPLE),
        "POLICY_STATE_DB": str(workdir / "policy.db"),
        "SIGNOFF_WORKFLOWS": str(write_workflows(workdir / "workflows")),
        **keys.env(),  # each service's signing key and the trust file (tests/keys.py)
    }
    with Stack(workdir, env, service_env=service_env(kafka_cluster)) as stack:
        stack.start_all()
        folder = workdir / "workflows"  # the policy digest: the workflow file and groups.yaml beside it
        digest = policy_digest((folder / "default.yaml").read_text(), (folder / "groups.yaml").read_text())
        yield Env(kafka_cluster, workdir, artifacts, store, f"http://127.0.0.1:{port}", tokens, stack, digest)


@pytest.fixture(scope="session")
async def events(kafka: KafkaAccess) -> AsyncIterator[EventLog]:
    """Every record, read as the admin (it reads the dead-letter topics too)."""
    log = EventLog(kafka)
    await log.start()
    yield log
    await log.stop()
