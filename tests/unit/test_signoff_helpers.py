"""The CLI's helpers: building a submission from a manifest, and reading events as a timeline."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from signoff import manifest, timeline
from signoff.manifest import ManifestError
from tests.unit import factories as f


def data(uri: str, **candidate) -> dict:
    return {"candidate": {"model": "fraud-detector", "version": "1.4.0", "artifact_uri": uri,
                          "data_version": "2026-11-01", "code_commit": "3f2c9ab", **candidate},
            "metrics": {"accuracy": 0.93}, "submitter": "pipeline"}


def test_artifact_uri_makes_paths_absolute_file_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert manifest.artifact_uri("m.onnx") == (tmp_path / "m.onnx").as_uri()
    assert manifest.artifact_uri("https://x/m.onnx") == "https://x/m.onnx"
    assert manifest.artifact_uri("file:///a/m.onnx") == "file:///a/m.onnx"


def test_parse_pairs():
    assert manifest.parse_pairs(["accuracy=0.93", " auc =1"], "metric") == {"accuracy": 0.93, "auc": 1.0}


@pytest.mark.parametrize("pair", ["accuracy", "=0.9", "accuracy=high", "accuracy="])
def test_parse_pairs_refuses_malformed(pair):
    with pytest.raises(ManifestError, match=rf"metric '{pair}': expected name=number"):
        manifest.parse_pairs([pair], "metric")


def test_build_fills_the_digest_from_a_local_artifact(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"weights")
    sub = manifest.build(data(str(path)))
    assert sub.candidate.artifact_sha256 == hashlib.sha256(b"weights").hexdigest()
    assert sub.candidate.artifact_uri == path.as_uri()


def test_build_fills_the_digest_for_a_path_with_a_space(tmp_path):
    """as_uri() writes a space as %20: the path must be unquoted before it is hashed."""
    path = tmp_path / "my model.onnx"
    path.write_bytes(b"weights")
    sub = manifest.build(data(str(path)))
    assert sub.candidate.artifact_sha256 == hashlib.sha256(b"weights").hexdigest()


def test_build_keeps_a_given_digest(tmp_path):
    sub = manifest.build(data("https://x/m.onnx", artifact_sha256=f.SHA))
    assert sub.candidate.artifact_sha256 == f.SHA


def test_build_needs_a_digest_for_remote_artifacts():
    with pytest.raises(ManifestError, match="artifact_sha256 is required for a remote artifact"):
        manifest.build(data("https://x/m.onnx"))


def test_build_reports_an_unreadable_artifact(tmp_path):
    with pytest.raises(ManifestError, match="candidate.artifact_uri: cannot read the artifact"):
        manifest.build(data(str(tmp_path / "absent.onnx")))


def test_build_names_the_invalid_field():
    with pytest.raises(ManifestError, match=r"candidate\.model: String should match pattern"):
        manifest.build(data("https://x/m.onnx", artifact_sha256=f.SHA, model="Fraud"))


def test_load_refuses_a_non_mapping(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ManifestError, match="expected a mapping"):
        manifest.load(path)
    path.write_text("candidate: {model: x\n")
    with pytest.raises(ManifestError, match=str(path)):
        manifest.load(path)
    with pytest.raises(ManifestError):
        manifest.load(Path(tmp_path / "absent.yaml"))


def test_terminal_and_outcome_of_each_event():
    cause = f.submitted()
    expected = {
        "ModelSubmitted": (False, "pending"), "ChecksPassed": (False, "pending"),
        "ChecksFailed": (False, "pending"), "ReviewRequested": (False, "pending"),
        "ReviewDecided": (False, "approved"), "DeploymentSucceeded": (True, "deployed"),
        "DeploymentFailed": (True, "deployment failed"), "ReviewEscalated": (False, "pending"),
        "RollbackRequested": (False, "pending"), "RevocationRequested": (False, "pending"),
        "DeploymentProgressed": (False, "pending"), "DeploymentRolledBack": (True, "rolled back"),
        "DeploymentRevoked": (True, "revoked"), "DeploymentSuperseded": (True, "superseded"),
        "DeploymentDrifted": (False, "pending"),  # an observation about production, not an end
    }
    for event in f.every_event(cause):
        assert (timeline.is_terminal(event), timeline.outcome(event)) == expected[type(event).__name__]
    rejected = f.decided(cause, outcome="rejected")
    assert timeline.is_terminal(rejected) and timeline.outcome(rejected) == "rejected"


def test_describe_and_line():
    cause = f.submitted(occurred_at=datetime(2026, 3, 1, 12, 0, 5, 123456, tzinfo=UTC))
    assert timeline.describe(cause) == (
        f"fraud-detector 1.4.0 by pipeline (sha256 {f.SHA[:12]}, data 2026-11-01, commit 3f2c9ab)")
    assert timeline.line(cause).startswith("2026-03-01T12:00:05.123Z  model.submitted ")
    failed = timeline.describe(f.checks_failed(cause))
    assert failed.startswith("integrity ok, metric:accuracy FAILED")
    assert "metric:accuracy: accuracy = 0.95" in failed
    assert timeline.describe(f.review_requested(cause)).startswith("asks alice, bob (quorum 1): ")
    assert timeline.describe(f.decided(cause)) == (
        "approved (human) by alice, workflow default@aaaaaaaaaaaa rule auto_approve: looks good")
    assert timeline.describe(f.deployment_succeeded(cause)) == "model-store: /store/fraud-detector/1.4.0"
    assert timeline.describe(f.deployment_failed(cause)) == "disk full"
    superseded = f.every_event(cause)[-1]
    assert timeline.describe(superseded) == (
        "not deployed, superseded by 1.6.0: 1.6.0, submitted later, is in production")
