"""Builders of valid events for tests: each takes overrides, so a test names only what it varies."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from pathlib import Path

from shared.events import (
    Candidate,
    CheckResult,
    ChecksFailed,
    ChecksPassed,
    DeploymentDrifted,
    DeploymentFailed,
    DeploymentProgressed,
    DeploymentRevoked,
    DeploymentRolledBack,
    DeploymentSucceeded,
    DeploymentSuperseded,
    ModelSubmitted,
    PolicyRef,
    ReviewDecided,
    ReviewEscalated,
    ReviewRequested,
    RevocationRequested,
    RollbackRequested,
    Submission,
    Submitter,
)
from shared.workflow.loading import load_file
from shared.workflow.matching import Loaded

SHA = hashlib.sha256(b"model bytes").hexdigest()
OTHER_SHA = hashlib.sha256(b"other bytes").hexdigest()
POLICY = PolicyRef(name="default", rule="auto_approve", digest="a" * 64)
PIPELINE = Submitter(name="pipeline-test")  # the pipeline key of tests/keys.py, owned by nobody


def candidate(**over: object) -> Candidate:
    fields = dict(model="fraud-detector", version="1.4.0",
                  artifact_uri="file:///models/incoming/fraud-1.4.0.onnx",
                  artifact_sha256=SHA, data_version="2026-11-01", code_commit="3f2c9ab")
    return Candidate(**{**fields, **over})


def submission(cand: Candidate | None = None, **over: object) -> Submission:
    fields = dict(candidate=cand or candidate(), metrics={"accuracy": 0.95, "auc": 0.97},
                  submitter="pipeline", training_run_id="run-7")
    return Submission(**{**fields, **over})


def submitted(sub: Submission | None = None, **over: object) -> ModelSubmitted:
    fields = dict(submission_id=uuid.uuid4(), submission=sub or submission())
    return ModelSubmitted(**{**fields, **over})


def results(passed: bool = True) -> tuple[CheckResult, ...]:
    return (CheckResult(name="integrity", passed=True, measured=SHA, threshold=SHA),
            CheckResult(name="metric:accuracy", passed=passed, measured=0.95, threshold=0.8,
                        message="accuracy = 0.95 (required >= 0.8)"))


def checks_passed(cause: ModelSubmitted | None = None) -> ChecksPassed:
    cause = cause or submitted()
    return ChecksPassed.caused_by(cause, submission=cause.submission, results=results())


def checks_failed(cause: ModelSubmitted | None = None, scan: bool = False) -> ChecksFailed:
    """Checks that failed on a declared metric; with `scan`, on the security scan of the bytes
    (what condemns the artifact for good: ChecksCompleted.condemns_artifact)."""
    cause = cause or submitted()
    found = (CheckResult(name="security", passed=False, message="pickle global os.system is not allowed"),)
    return ChecksFailed.caused_by(cause, submission=cause.submission,
                                  results=results(passed=not scan) + found if scan else results(passed=False))


def review_requested(cause: ModelSubmitted | None = None, **over: object) -> ReviewRequested:
    cause = cause or submitted()
    fields = dict(submission=cause.submission, results=results(), approvers=("alice", "bob"),
                  quorum=1, deadline=cause.occurred_at + timedelta(hours=24),
                  policy=POLICY.model_copy(update={"rule": "manual_approval"}),
                  reason="accuracy = 0.85 (auto-approve needs >= 0.9)",
                  submitted_by=PIPELINE)  # signed by the tests' pipeline key (tests/keys.py)
    return ReviewRequested.caused_by(cause, **{**fields, **over})


def decided(cause: ModelSubmitted | None = None, outcome: str = "approved",
            cand: Candidate | None = None, salt: str = "", **over: object) -> ReviewDecided:
    cause = cause or submitted()
    fields = dict(candidate=cand or cause.submission.candidate, outcome=outcome, mode="human",
                  decided_by="alice", reason="looks good", policy=POLICY,
                  checks_event_id=checks_passed(cause).event_id)  # the checks it follows
    return ReviewDecided.caused_by(cause, salt=salt, **{**fields, **over})


def deployment_succeeded(cause: ModelSubmitted | None = None) -> DeploymentSucceeded:
    approval = decided(cause)
    return DeploymentSucceeded.caused_by(approval, candidate=approval.candidate, target="model-store",
                                         location="/store/fraud-detector/1.4.0", metrics={"accuracy": 0.95})


def deployment_failed(cause: ModelSubmitted | None = None) -> DeploymentFailed:
    approval = decided(cause)
    return DeploymentFailed.caused_by(approval, candidate=approval.candidate, target="model-store",
                                      reason="disk full")


def every_event(cause: ModelSubmitted | None = None) -> list:
    cause = cause or submitted()
    cand = cause.submission.candidate
    return [cause, checks_passed(cause), checks_failed(cause), review_requested(cause),
            decided(cause), deployment_succeeded(cause), deployment_failed(cause),
            ReviewEscalated.caused_by(cause, candidate=cand, approvers=("dave",),
                                      deadline=cause.occurred_at + timedelta(hours=1), reason="timed out"),
            RollbackRequested(submission_id=uuid.uuid4(), model=cand.model, to_version="1.3.0",
                              requested_by="ops", reason="latency regression"),
            RevocationRequested(submission_id=cause.submission_id, model=cand.model, requested_by="sec",
                                reason="training data leak"),
            DeploymentProgressed.caused_by(cause, candidate=cand, target="model-store", stage="canary",
                                           traffic_percent=10),
            DeploymentRolledBack(submission_id=uuid.uuid4(), model=cand.model, from_version="1.4.0",
                                 to_version="1.3.0", to_submission_id=uuid.uuid4(), target="model-store",
                                 requested_by="ops", reason="latency regression"),
            DeploymentRevoked.caused_by(cause, candidate=cand, requested_by="sec", reason="leak",
                                        was_in_production=True),
            DeploymentDrifted(submission_id=cause.submission_id, model=cand.model, target="mlflow",
                              where=f"models:/{cand.model}@champion", expected_version="3", found_version="4",
                              action="reverted", reason="moved by hand; put back"),
            DeploymentSuperseded.caused_by(cause, candidate=cand, target="model-store",
                                           superseded_by=uuid.uuid4(), superseded_by_version="1.6.0",
                                           reason="1.6.0, submitted later, is in production")]


GROUPS = "leads: [bob, carol]\nrisk: [dave, erin]\n"


def workflow_folder(folder: Path, groups: str | None = GROUPS, **files: str) -> Path:
    """A workflow folder: `<name>.yaml` per keyword argument, and groups.yaml unless groups is None."""
    folder.mkdir(parents=True, exist_ok=True)
    if groups is not None:
        (folder / "groups.yaml").write_text(groups)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


def load_workflow(folder: Path, text: str, groups: str | None = GROUPS, name: str = "workflow") -> Loaded:
    """One workflow file written to `folder` and loaded as the services load it."""
    workflow_folder(folder, groups, **{name: text})
    return load_file(folder / f"{name}.yaml")
