"""A folder model in S3 (an MLflow-style prefix), or a local folder, through the services, on the
real S3 API server (moto, the `s3` fixture): the validator checks its tree digest and scans every file, the
deployer installs the folder beside its attestation and `signoff verify` accepts it; a folder that
changes between the check and the deployment is refused, and nothing is written."""

from __future__ import annotations

import hashlib
import pickle
import uuid

import pytest

from shared import signing, topics
from shared.events import ChecksFailed, ChecksPassed, DeploymentFailed, DeploymentSucceeded
from shared.sources import tree
from shared.sources.s3 import forget_clients
from signoff.verify import verify
from tests import keys
from tests.component.conftest import publish, running, sent
from tests.s3_server import REGION
from tests.unit import factories as f

FOLDER = {"MLmodel": b"flavors: {python_function: {}}\n", "model.pkl": pickle.dumps(None, protocol=4),
          "data/weights.bin": b"\x01" * 3000}


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("true",))


def digest_of(files: dict[str, bytes]) -> str:
    return tree.digest(tree.TreeFile(k, hashlib.sha256(v).hexdigest(), len(v)) for k, v in files.items())


@pytest.fixture
def bucket(s3, monkeypatch) -> str:
    for name, value in s3.env().items():  # the standard AWS chain: the services' settings hold no credential
        monkeypatch.setenv(name, value)
    forget_clients()
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


def upload(s3, bucket: str, prefix: str, files: dict[str, bytes]) -> str:
    for rel, data in files.items():
        s3.client().put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=data)
    return f"s3://{bucket}/{prefix}/"


def s3_fields(s3, bucket: str) -> dict:
    return {"artifact_s3_prefixes": (f"s3://{bucket}/teams/",), "s3_endpoint_url": s3.endpoint_url,
            "s3_region": REGION}


def submitted(uri: str, sha256: str):
    return f.submitted(f.submission(f.candidate(artifact_uri=uri, artifact_sha256=sha256)))


async def test_the_validator_checks_an_s3_folder_by_its_tree_digest_and_scans_every_file(build_app, s3, bucket):
    validator = build_app("validator", **s3_fields(s3, bucket))
    uri = upload(s3, bucket, "teams/risk/churn-model", FOLDER)
    event = submitted(uri, digest_of(FOLDER))
    async with running(validator.broker) as br:
        await publish(br, event)
        validator.emitter.publishers[ChecksFailed].mock.assert_not_called()
        out = sent(validator.emitter.publishers[ChecksPassed], topics.CHECKS_PASSED)
    results = {r.name: r for r in out.results}
    assert results["integrity"].passed and results["integrity"].measured == digest_of(FOLDER)
    assert results["security"].passed and results["security"].measured == "folder: 3 files, 1 with pickle content"
    assert "model.pkl: imports only allowed globals" in results["security"].message


async def test_a_pickle_deep_in_the_folder_fails_the_scan_naming_the_file(build_app, s3, bucket):
    validator = build_app("validator", **s3_fields(s3, bucket))
    files = {**FOLDER, "extra/hook.pkl": pickle.dumps(_Evil(), protocol=4)}
    event = submitted(upload(s3, bucket, "teams/risk/evil-model", files), digest_of(files))
    async with running(validator.broker) as br:
        await publish(br, event)
        validator.emitter.publishers[ChecksPassed].mock.assert_not_called()
        out = sent(validator.emitter.publishers[ChecksFailed], topics.CHECKS_FAILED)
    security = next(r for r in out.results if r.name == "security")
    assert not security.passed and "extra/hook.pkl: " in security.message
    assert "posix.system" in security.message or "os.system" in security.message


async def test_the_deployer_installs_the_folder_and_verify_accepts_it(build_app, s3, bucket, tmp_path):
    deployer = build_app("deployer", **s3_fields(s3, bucket))
    cause = submitted(upload(s3, bucket, "teams/risk/churn-model", FOLDER), digest_of(FOLDER))
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        await publish(br, f.decided(cause))
        deployer.emitter.publishers[DeploymentFailed].mock.assert_not_called()
        out = sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
    version = tmp_path / "store" / "fraud-detector" / "1.4.0"
    assert sorted(p.name for p in version.iterdir()) == ["attestation.intoto.json", "churn-model", "manifest.json"]
    assert {p.relative_to(version / "churn-model").as_posix(): p.read_bytes()
            for p in (version / "churn-model").rglob("*") if p.is_file()} == FOLDER
    assert out.attestation is not None
    verdict = verify(version, signing.load_trust(keys.keys().trust))
    assert verdict.ok, verdict.reason
    assert verdict.statement is not None and verdict.statement.artifact.name == "churn-model"
    assert verdict.statement.artifact.digest.sha256 == digest_of(FOLDER)
    named = verify(version / "churn-model", signing.load_trust(keys.keys().trust))  # the folder itself
    assert named.ok and named.artifact == (version / "churn-model").resolve(), named.reason
    (version / "churn-model" / "data" / "weights.bin").write_bytes(b"tampered")
    tampered = verify(version, signing.load_trust(keys.keys().trust))
    assert not tampered.ok and "changed" in tampered.reason
    downloads = tmp_path / "deployer" / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []  # the fetched copy was deleted


async def test_a_folder_changed_between_check_and_deploy_fails_and_nothing_is_written(build_app, s3, bucket, tmp_path):
    deployer = build_app("deployer", **s3_fields(s3, bucket))
    uri = upload(s3, bucket, "teams/risk/churn-model", FOLDER)
    cause = submitted(uri, digest_of(FOLDER))
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        s3.client().put_object(Bucket=bucket, Key="teams/risk/churn-model/data/weights.bin", Body=b"swapped")
        await publish(br, f.decided(cause))
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
        failed = sent(deployer.emitter.publishers[DeploymentFailed], topics.DEPLOYMENT_FAILED)
    assert "approved digest is " + digest_of(FOLDER) in failed.reason
    assert "the artifact changed since it was checked" in failed.reason
    assert not (tmp_path / "store" / "fraud-detector" / "1.4.0").exists()
    downloads = tmp_path / "deployer" / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []


async def test_a_local_folder_is_checked_the_same_way(build_app, artifact_root):
    validator = build_app("validator")
    folder = artifact_root / "churn-model"
    for rel, data in FOLDER.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    event = submitted(folder.as_uri(), digest_of(FOLDER))
    async with running(validator.broker) as br:
        await publish(br, event)
        validator.emitter.publishers[ChecksFailed].mock.assert_not_called()
        out = sent(validator.emitter.publishers[ChecksPassed], topics.CHECKS_PASSED)
    results = {r.name: r for r in out.results}
    assert results["integrity"].measured == digest_of(FOLDER)
    assert results["security"].measured == "folder: 3 files, 1 with pickle content"
