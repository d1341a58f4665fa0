"""The mlflow target against a real MLflow tracking server (the session's `mlflow`,
tests/mlflow_server.py, its artifacts on the S3 server): the deployer, built as the app builds it
but without Kafka, deploys registered versions by moving an alias, tags them with the decision,
logs the attestation to the run, refuses files changed since they were checked, moves the alias on
rollback and revocation, and its drift check reports (and with on_drift: revert, puts back) an
alias moved by hand."""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.deployer import targets
from services.deployer.service import Service
from services.deployer.settings import DeployerSettings
from services.deployer.state import StateStore
from services.deployer.targets import Deps, TargetError
from shared import attestation, signing
from shared.events import (
    DeploymentDrifted,
    DeploymentFailed,
    DeploymentRevoked,
    DeploymentRolledBack,
    DeploymentSucceeded,
    Event,
    RevocationRequested,
    RollbackRequested,
)
from shared.sources.tree import TreeFile, digest
from shared.workflow.loading import load_folder
from tests import keys
from tests.mlflow_server import MlflowServer
from tests.unit import factories as f

WORKFLOWS = """
name: {name}
match: ["{name}-*"]
steps:
  - name: deploy
    type: deploy
    inputs: {{target: mlflow, alias: champion, on_drift: {name}}}
"""


@pytest.fixture(scope="module")
def server(mlflow: MlflowServer) -> Iterator[MlflowServer]:
    """The session's MLflow server, with the S3 variables set for boto3 and MLflow in this process
    (the AWS chain is read from the environment, as in the deployer)."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in mlflow.s3.env().items():
            env.setenv(key, value)
        yield mlflow


class Deployer:
    """The deployer's service on a state file, with the registry's client beside it."""

    def __init__(self, server: MlflowServer, workdir: Path) -> None:
        from mlflow import MlflowClient

        self.server, self.client = server, MlflowClient(server.tracking_uri)
        folder = workdir / "workflows"
        folder.mkdir()
        for name in ("report", "revert"):
            (folder / f"{name}.yaml").write_text(WORKFLOWS.format(name=name))
        self.settings = DeployerSettings(
            mlflow_tracking_uri=server.tracking_uri, mlflow_allow_http_loopback=True,
            artifact_s3_prefixes=(f"s3://{server.bucket}/",), s3_endpoint_url=server.s3.endpoint_url,
            state_db=workdir / "state.db", download_dir=workdir / "downloads", retry_attempts=2,
            retry_backoff_seconds=0.01)
        self.store = StateStore(self.settings.state_db)
        deps = Deps.from_settings(self.settings, self.store)
        self.emitted: list[Event] = []

        async def emit(event: Event) -> None:
            self.emitted.append(event)

        self.service = Service(self.store, load_folder(folder, targets.INPUTS),
                               lambda inputs: targets.build(inputs, deps), emit,
                               signer=keys.signer("deployer"))

    def register(self, name: str, files: dict[str, bytes]) -> tuple[str, str, str]:
        """A run logging `files` as its model, registered as a new version of `name`: the version,
        the folder's digest (tree digest, computed here from the bytes) and the run id."""
        if not self.client.search_registered_models(filter_string=f"name = '{name}'"):
            self.client.create_registered_model(name)
        run = self.client.create_run("0")
        with tempfile.TemporaryDirectory() as tmp:
            for rel, content in files.items():
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / rel).write_bytes(content)
            self.client.log_artifacts(run.info.run_id, tmp, "model")
        version = self.client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
        sha = digest([TreeFile(rel, hashlib.sha256(c).hexdigest(), len(c)) for rel, c in files.items()])
        return str(version.version), sha, run.info.run_id

    def overwrite(self, run_id: str, rel: str, content: bytes) -> None:
        """Change a file of a registered version behind Signoff's back."""
        key = f"{self.client.get_run(run_id).info.artifact_uri.split('/', 3)[3]}/model/{rel}"
        self.server.s3.client().put_object(Bucket=self.server.bucket, Key=key, Body=content)

    async def approve(self, name: str, version: str, sha: str) -> uuid.UUID:
        """Checks passed and an approval for the version, as the deployer receives them."""
        uri = self.client.get_model_version_download_uri(name, version)
        cause = f.submitted(f.submission(f.candidate(model=name, version=version, artifact_uri=uri,
                                                     artifact_sha256=sha)))
        await self.service.on_submission_event(f.checks_passed(cause))
        await self.service.on_submission_event(f.decided(cause))
        return cause.submission_id

    def alias(self, name: str) -> str | None:
        return self.client.get_registered_model(name).aliases.get("champion")

    def of(self, kind: type[Event]) -> list:
        return [e for e in self.emitted if isinstance(e, kind)]


@pytest.fixture
def deployer(server: MlflowServer, tmp_path: Path) -> Iterator[Deployer]:
    made = Deployer(server, tmp_path)
    yield made
    made.store.close()


def model_files(tag: str) -> dict[str, bytes]:
    return {"MLmodel": f"flavors: {{}}\nrun: {tag}\n".encode(), "data/model.bin": tag.encode() * 1000}


async def test_an_approved_version_gets_the_alias_the_decision_tags_and_the_attestation(deployer, unique):
    name = f"report-{unique}"
    version, sha, run_id = deployer.register(name, model_files("one"))
    await deployer.approve(name, version, sha)
    [done] = deployer.of(DeploymentSucceeded)
    assert (done.target, done.location) == ("mlflow", f"models:/{name}/{version}")
    assert deployer.alias(name) == version
    tags = deployer.client.get_model_version(name, version).tags
    approval = deployer.store.release(done.submission_id).approval
    written = attestation.file_bytes(done.attestation)
    assert tags["signoff.decision_id"] == str(approval.event_id)
    assert tags["signoff.approved_by"] == "alice" and tags["signoff.policy_digest"] == f.POLICY.digest
    assert tags["signoff.attestation_sha256"] == hashlib.sha256(written).hexdigest()
    # The attestation beside the model: in the run's artifacts, as the tag says, byte for byte.
    where = f"signoff/{name}/{version}/{attestation.ATTESTATION_FILE}"
    assert tags["signoff.attestation_uri"].endswith(f"/{run_id}/artifacts/{where}")
    key = tags["signoff.attestation_uri"].removeprefix(f"s3://{deployer.server.bucket}/")
    stored = deployer.server.s3.client().get_object(Bucket=deployer.server.bucket, Key=key)["Body"].read()
    assert stored == written
    assert attestation.read_envelope(stored) == done.attestation


async def test_a_version_changed_since_its_check_never_gets_the_alias(deployer, unique):
    name = f"report-{unique}"
    first, sha1, _ = deployer.register(name, model_files("one"))
    await deployer.approve(name, first, sha1)
    second, sha2, run2 = deployer.register(name, model_files("two"))
    deployer.overwrite(run2, "data/model.bin", b"swapped after the check")
    await deployer.approve(name, second, sha2)
    [failed] = deployer.of(DeploymentFailed)
    assert "changed since it was checked" in failed.reason and sha2 in failed.reason
    assert deployer.alias(name) == first
    assert "signoff.decision_id" not in deployer.client.get_model_version(name, second).tags


async def test_the_files_are_digested_again_right_before_the_alias_moves(deployer, unique):
    name = f"report-{unique}"
    version, sha, run_id = deployer.register(name, model_files("one"))
    cause_id = await deployer.approve(name, version, sha)
    release = deployer.store.release(cause_id)
    target = targets.build(release.deploy, Deps.from_settings(deployer.settings, deployer.store))
    await target.restore(name, None, "k", {})
    deployer.overwrite(run_id, "MLmodel", b"changed after prepare")
    with pytest.raises(TargetError, match="changed since it was checked"):
        await target.restore(name, release, "k2", {})
    assert deployer.alias(name) is None


async def test_rollback_and_revocation_move_the_alias(deployer, unique):
    name = f"report-{unique}"
    first, sha1, _ = deployer.register(name, model_files("one"))
    await deployer.approve(name, first, sha1)
    second, sha2, _ = deployer.register(name, model_files("two"))
    second_id = await deployer.approve(name, second, sha2)
    assert deployer.alias(name) == second
    signing.set_signer(keys.principal("oncall"))  # as the decoder sets it for an operator's request
    try:
        await deployer.service.on_rollback(RollbackRequested(submission_id=uuid.uuid4(), model=name,
                                                             requested_by="oncall", reason="p99 doubled"))
        assert [e.to_version for e in deployer.of(DeploymentRolledBack)] == [first]
        assert deployer.alias(name) == first
        first_id = deployer.store.production(name).submission_id
        await deployer.service.on_revocation(RevocationRequested(submission_id=first_id, model=name,
                                                                 requested_by="oncall", reason="data leak"))
    finally:
        signing.set_signer(None)
    [revoked] = deployer.of(DeploymentRevoked)
    assert revoked.was_in_production
    # second was rolled back from (not healthy): nothing is left to serve, so the alias is gone
    assert deployer.alias(name) is None
    assert deployer.client.get_model_version(name, first).tags["signoff.revoked"] == "by oncall: data leak"
    assert second_id != first_id


async def test_an_alias_moved_by_hand_is_reported_once_and_left_as_found(deployer, unique):
    name = f"report-{unique}"
    first, sha1, _ = deployer.register(name, model_files("one"))
    await deployer.approve(name, first, sha1)
    second, _, _ = deployer.register(name, model_files("two"))  # registered, never approved
    assert await deployer.service.check_drift() == []
    deployer.client.set_registered_model_alias(name, "champion", second)
    [drifted] = await deployer.service.check_drift()
    assert (drifted.model, drifted.where, drifted.action) == (name, f"models:/{name}@champion", "reported")
    assert (drifted.expected_version, drifted.found_version) == (first, second)
    assert deployer.alias(name) == second
    assert await deployer.service.check_drift() == []  # the same drift: not reported again
    deployer.client.delete_registered_model_alias(name, "champion")
    [gone] = await deployer.service.check_drift()
    assert (gone.found_version, gone.action) == (None, "reported")
    assert deployer.of(DeploymentDrifted) == [drifted, gone]


async def test_with_on_drift_revert_the_alias_is_put_back(deployer, unique):
    name = f"revert-{unique}"
    first, sha1, _ = deployer.register(name, model_files("one"))
    await deployer.approve(name, first, sha1)
    second, _, _ = deployer.register(name, model_files("two"))
    deployer.client.set_registered_model_alias(name, "champion", second)
    [reverted] = await deployer.service.check_drift()
    assert (reverted.action, reverted.found_version, reverted.expected_version) == ("reverted", second, first)
    assert deployer.alias(name) == first
    assert await deployer.service.check_drift() == []
    deployer.client.delete_registered_model_alias(name, "champion")  # deleted by hand: put back too
    [again] = await deployer.service.check_drift()
    assert (again.action, again.found_version) == ("reverted", None)
    assert deployer.alias(name) == first


async def test_a_revert_to_files_that_changed_fails_and_says_so(deployer, unique):
    name = f"revert-{unique}"
    first, sha1, run1 = deployer.register(name, model_files("one"))
    await deployer.approve(name, first, sha1)
    second, _, _ = deployer.register(name, model_files("two"))
    deployer.client.set_registered_model_alias(name, "champion", second)
    deployer.overwrite(run1, "data/model.bin", b"tampered")
    [failed] = await deployer.service.check_drift()
    assert failed.action == "revert_failed" and "changed since it was checked" in failed.reason
    assert deployer.alias(name) == second  # nothing unverified is put in production


async def test_files_replaced_after_the_alias_moved_are_found_and_lose_the_alias(deployer, unique):
    """An alias names a version, not bytes: the drift check digests the version in production again."""
    name = f"revert-{unique}"
    version, sha, run_id = deployer.register(name, model_files("one"))
    await deployer.approve(name, version, sha)
    assert await deployer.service.check_drift() == []  # digested: the approved bytes
    deployer.overwrite(run_id, "data/model.bin", b"swapped after the alias moved")
    deployer.service.drift.digested.clear()  # as if DEPLOYER_DRIFT_FILES_CHECK_SECONDS had passed
    [drifted] = await deployer.service.check_drift()
    assert (drifted.action, drifted.expected_version, drifted.found_version) == ("reverted", version, version)
    assert f"not the approved {sha}" in drifted.reason and deployer.alias(name) is None
    assert await deployer.service.check_drift() == []  # deleted on purpose: nothing to put back


async def test_a_version_mlflow_does_not_have_fails_the_deployment(deployer, unique):
    name = f"report-{unique}"
    version, sha, _ = deployer.register(name, model_files("one"))
    cause = f.submitted(f.submission(f.candidate(model=name, version="99", artifact_uri="s3://x/y",
                                                 artifact_sha256=sha)))
    await deployer.service.on_submission_event(f.checks_passed(cause))
    await deployer.service.on_submission_event(f.decided(cause))
    [failed] = deployer.of(DeploymentFailed)
    assert "MLflow has no such model or version" in failed.reason and "version 99" in failed.reason
    assert deployer.alias(name) is None and version == "1"
