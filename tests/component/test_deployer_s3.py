"""The deployer with the s3 target, on the broker of the run (memory by default) and a real S3 API
server (moto): an approval ends with the version, its attestation and the pointer in the bucket,
`signoff verify s3://...` accepts it, a revocation marks it and takes the pointer away; bytes that
changed since the checks fail the deployment and write nothing."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from typer.testing import CliRunner

from shared import attestation, signing, topics
from shared.attestation import ATTESTATION_FILE
from shared.events import DeploymentFailed, DeploymentRevoked, DeploymentSucceeded, RevocationRequested
from shared.sources import tree
from signoff import cli
from signoff.verify_s3 import verify_s3
from tests import keys
from tests.component.conftest import publish, running, sent
from tests.unit import factories as f

WORKFLOW = """\
name: served-models
match: ["served-*"]
steps:
  - {{name: checks, type: checks, inputs: {{min: {{accuracy: 0.8}}}}}}
  - {{name: deploy, type: deploy, inputs: {{target: s3, bucket: {bucket}, prefix: serving/prod}}}}
"""
MODEL = "served-model"


@pytest.fixture
def bucket(s3, monkeypatch) -> str:
    for name, value in s3.env().items():  # the standard AWS chain, as the deployer would have it
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    name = f"serving-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def deployer(build_app, workflows, s3, bucket):
    (workflows / "served.yaml").write_text(WORKFLOW.format(bucket=bucket))
    return build_app("deployer", s3_endpoint_url=s3.endpoint_url, s3_target_prefixes=(f"s3://{bucket}/serving/",))


def submitted(artifact):
    return f.submitted(f.submission(f.candidate(model=MODEL, artifact_uri=artifact.path.as_uri(),
                                                artifact_sha256=artifact.sha256)))


async def test_an_approval_ends_in_the_bucket_verifiable_and_a_revocation_marks_it(deployer, artifact, s3, bucket):
    keyring = signing.load_trust(keys.keys().trust)
    cause = submitted(artifact)
    base, client = f"serving/prod/{MODEL}", s3.client()
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        await publish(br, f.decided(cause))
        deployer.emitter.publishers[DeploymentFailed].mock.assert_not_called()
        out = sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
        assert isinstance(out, DeploymentSucceeded) and out.attestation is not None
        assert out.location == f"s3://{bucket}/{base}/1.4.0/"
        attested = client.get_object(Bucket=bucket, Key=f"{base}/1.4.0/{ATTESTATION_FILE}")["Body"].read()
        assert attested == attestation.file_bytes(out.attestation)
        assert client.get_object(Bucket=bucket, Key=f"{base}/1.4.0/fraud-1.4.0.onnx")["Body"].read() == b"onnx weights"
        pointer = json.loads(client.get_object(Bucket=bucket, Key=f"{base}/PRODUCTION")["Body"].read())
        assert (pointer["version"], pointer["sha256"], pointer["attestation"]) == (
            "1.4.0", artifact.sha256, f"s3://{bucket}/{base}/1.4.0/{ATTESTATION_FILE}")
        verdict = verify_s3(out.location, keyring, s3=client)
        assert verdict.ok, verdict.reason
        assert verdict.statement is not None and verdict.statement.predicate.deployer.location == out.location
        # The command line, with the standard AWS variables (AWS_ENDPOINT_URL_S3: the test server).
        shown = CliRunner().invoke(cli.app, ["verify", out.location],
                                   env={"SIGNOFF_TRUSTED_KEYS": str(keys.keys().trust)})
        assert shown.exit_code == 0 and f"{MODEL} 1.4.0 sha256 {artifact.sha256}" in shown.output, shown.output

        await publish(br, RevocationRequested(submission_id=cause.submission_id, model=MODEL,
                                              requested_by="oncall", reason="training data leak"))
        sent(deployer.emitter.publishers[DeploymentRevoked], topics.DEPLOYMENT_REVOKED)
    keys_now = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert f"{base}/PRODUCTION" not in keys_now and f"{base}/1.4.0/REVOKED" in keys_now
    verdict = verify_s3(out.location, keyring, s3=client)
    assert not verdict.ok and "was revoked" in verdict.reason
    shown = CliRunner().invoke(cli.app, ["verify", out.location], env={"SIGNOFF_TRUSTED_KEYS": str(keys.keys().trust)})
    assert shown.exit_code == 1 and "was revoked" in shown.output


async def test_bytes_changed_since_the_checks_fail_the_deployment_and_write_nothing(deployer, artifact, s3, bucket):
    cause = submitted(artifact)
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        artifact.path.write_bytes(b"swapped")
        await publish(br, f.decided(cause))
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
        out = sent(deployer.emitter.publishers[DeploymentFailed], topics.DEPLOYMENT_FAILED)
    assert "changed since it was checked" in out.reason
    assert "Contents" not in s3.client().list_objects_v2(Bucket=bucket)
    assert deployer.store.load(cause.submission_id).status == "failed"


async def test_a_folder_model_goes_up_under_its_name_and_verify_accepts_it(deployer, artifact_root, s3, bucket):
    """A folder is `<version>/<name>/...` in the bucket, as in the model store: the layout `signoff
    verify s3://...` reads (the folder's files at the top of the version would be files the
    attestation does not cover)."""
    files = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x04N.", "data/weights.bin": b"\x01" * 300}
    folder = artifact_root / "churn-model"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    digest = tree.digest(tree.TreeFile(rel, hashlib.sha256(data).hexdigest(), len(data)) for rel, data in files.items())
    cause = f.submitted(f.submission(f.candidate(model=MODEL, artifact_uri=folder.as_uri() + "/",
                                                 artifact_sha256=digest)))
    base, client, keyring = f"serving/prod/{MODEL}/1.4.0", s3.client(), signing.load_trust(keys.keys().trust)
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        await publish(br, f.decided(cause))
        deployer.emitter.publishers[DeploymentFailed].mock.assert_not_called()
        out = sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
    listed = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    beside = [f"{base}/{ATTESTATION_FILE}", f"{base}/manifest.json", f"serving/prod/{MODEL}/PRODUCTION",
              f"serving/prod/{MODEL}/traffic.json"]
    assert listed == sorted([f"{base}/churn-model/{rel}" for rel in files] + beside)
    verdict = verify_s3(out.location, keyring, s3=client)
    assert verdict.ok, verdict.reason
    assert verdict.statement is not None and verdict.statement.artifact.name == "churn-model"
    client.put_object(Bucket=bucket, Key=f"{base}/churn-model/data/weights.bin", Body=b"tampered")
    tampered = verify_s3(out.location, keyring, s3=client)
    assert not tampered.ok and "changed" in tampered.reason
