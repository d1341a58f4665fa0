"""The deployer, in memory: checks.* and review.decided in, deployment.* out, the model store on disk."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging

import pytest
import structlog
from faststream import FastStream
from structlog.testing import capture_logs

from services.deployer import app, deploying
from services.deployer.lifecycle import Lifecycle
from services.deployer.rollout import Release
from services.deployer.settings import DeployerSettings
from services.deployer.targets import TargetError, model_store
from shared import topics
from shared.events import (
    DeploymentFailed,
    DeploymentRevoked,
    DeploymentSucceeded,
    DeploymentSuperseded,
    RevocationRequested,
)
from shared.workflow.schema import DeployInputs
from tests import keys
from tests.component import modes
from tests.component.conftest import publish, running, sent, sent_all
from tests.unit import factories as f


@pytest.fixture
def deployer(build_app):
    return build_app("deployer")


@pytest.fixture
def cause(artifact):
    cand = f.candidate(artifact_uri=artifact.path.as_uri(), artifact_sha256=artifact.sha256)
    return f.submitted(f.submission(cand))


async def test_duplicated_approval_deploys_once(deployer, cause, tmp_path):
    approval = f.decided(cause)
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        await publish(br, approval)
        await publish(br, approval)  # redelivered
        await publish(br, f.checks_passed(cause))  # and this one too
        deployer.emitter.publishers[DeploymentFailed].mock.assert_not_called()
        out = sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
    version = tmp_path / "store" / "fraud-detector" / "1.4.0"
    assert out.location == str(version.resolve())
    assert (version / "fraud-1.4.0.onnx").read_bytes() == b"onnx weights"
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["approved_by"] == "alice" and manifest["approval_event_id"] == str(approval.event_id)
    assert deployer.store.load(cause.submission_id).status == "deployed"


async def test_a_direct_deployment_is_numbered_with_its_release_and_a_repeat_keeps_the_number(
        deployer, cause, monkeypatch):
    """deployment.succeeded of a one-stage rollout gets its production number in the transaction
    that records the release (not in a commit of its own); a crash before it is emitted repeats
    the step, which emits it with that same number."""
    approval = f.decided(cause)
    held = []  # the sequence row as the production pointer is being moved
    real = model_store.files.set_serving

    def crash_once(root, model, version, split, stage):
        held.append(deployer.store.db.execute("SELECT last, event_id FROM sequence WHERE model = ?",
                                              (model,)).fetchone())
        if len(held) == 1:
            raise RuntimeError("killed before deployment.succeeded was emitted")
        return real(root, model, version, split, stage)

    monkeypatch.setattr(model_store.files, "set_serving", crash_once)
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        with contextlib.suppress(RuntimeError):  # in memory it raises here; Kafka redelivers it itself
            await publish(br, approval)
        await publish(br, approval)  # in memory the redelivery; on Kafka a duplicate, which changes nothing
        out = sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
    assert held[0] is not None, "not numbered before the target was changed"
    assert held[0] == held[1] == (out.sequence, str(out.event_id))


def crash_after_the_pointer_moved(monkeypatch, version: str, meanwhile):
    """fraud-detector's pointer in the model store moves to `version`, then the deployer dies (before
    deployment.succeeded and its promotion were recorded); `meanwhile()` runs before the
    redelivery, as what the deployer learns while it is down. Returns the versions it crashed on."""
    real = model_store.files.set_serving
    crashed = []

    def moved_then_killed(root, model, to, split, stage):
        real(root, model, to, split, stage)
        if (model, to) == ("fraud-detector", version) and not crashed:
            crashed.append(to)
            meanwhile()
            raise RuntimeError("killed after the pointer moved")

    monkeypatch.setattr(model_store.files, "set_serving", moved_then_killed)
    return crashed


@pytest.fixture
def earlier(artifact_root):
    """fraud-detector 1.3.0, other bytes: in production before `cause` (1.4.0) is deployed."""
    (artifact_root / "earlier.onnx").write_bytes(b"earlier weights")
    return f.submitted(f.submission(f.candidate(
        version="1.3.0", artifact_uri=(artifact_root / "earlier.onnx").as_uri(),
        artifact_sha256=hashlib.sha256(b"earlier weights").hexdigest())))


async def deploy(br, cause) -> None:
    await publish(br, f.checks_passed(cause))
    await publish(br, f.decided(cause))


async def crash_mid_way(br, cause) -> None:
    """checks.passed and the approval of `cause`, whose handling dies after the pointer moved."""
    await publish(br, f.checks_passed(cause))
    with contextlib.suppress(RuntimeError):  # in memory it raises here; Kafka redelivers it itself
        await publish(br, f.decided(cause))


@pytest.mark.parametrize("refusal", ["rejected under another name", "its version revoked"])
async def test_a_deployment_refused_after_a_crash_mid_way_gives_the_target_back(
        deployer, cause, earlier, monkeypatch, tmp_path, refusal):
    """Killed after the target moved, the deployer learns that the digest was rejected (the same
    bytes under another model name) or its version banned before the approval comes back: the
    deployment fails, and the store points at what it pointed at before, never at refused bytes."""
    root = tmp_path / "store"
    other = f.submitted(f.submission(cause.submission.candidate.model_copy(update={"model": "other-name"})))

    def meanwhile():
        if refusal == "rejected under another name":
            deployer.rejections.apply(f.decided(other, outcome="rejected", reason="leaks PII"))
        else:  # as a revocation of another submission of fraud-detector 1.4.0 leaves it
            deployer.store.revoke("by oncall: leaks PII", other.submission_id, None, "fraud-detector", "1.4.0")

    crashed = crash_after_the_pointer_moved(monkeypatch, "1.4.0", meanwhile)
    async with running(deployer.broker) as br:
        await deploy(br, earlier)
        assert model_store.files.production(root, "fraud-detector") == "1.3.0"
        await crash_mid_way(br, cause)
        await publish(br, f.decided(cause))  # in memory the redelivery; on Kafka a duplicate
        failed = sent(deployer.emitter.publishers[DeploymentFailed], topics.DEPLOYMENT_FAILED)
    assert crashed == ["1.4.0"], "the pointer never moved to the refused version"
    assert failed.candidate.version == "1.4.0"
    assert model_store.files.production(root, "fraud-detector") == "1.3.0"
    assert deployer.store.load(cause.submission_id).status == "failed"
    assert deployer.store.unfinished("fraud-detector") == []


@pytest.mark.parametrize("in_production_before", [True, False])
async def test_revoking_the_same_bytes_elsewhere_takes_out_a_deployment_a_crash_stopped(
        deployer, cause, earlier, monkeypatch, tmp_path, in_production_before):
    """The same bytes serve as other-name; fraud-detector 1.4.0 (those bytes) dies after the
    pointer moved; other-name's release is revoked, which bans the bytes: fraud-detector goes
    back to 1.3.0 though 1.4.0 was never recorded in production, whatever comes first, the
    revocation or the approval's redelivery."""
    root = tmp_path / "store"
    other = f.submitted(f.submission(cause.submission.candidate.model_copy(update={"model": "other-name"})))
    crash_after_the_pointer_moved(monkeypatch, "1.4.0", lambda: None)
    async with running(deployer.broker) as br:
        if in_production_before:
            await deploy(br, earlier)
        await deploy(br, other)
        await crash_mid_way(br, cause)
        await publish(br, RevocationRequested(submission_id=other.submission_id, model="other-name",
                                              requested_by="oncall", reason="training data leak"))
        await publish(br, f.decided(cause))  # in memory the redelivery; on Kafka a duplicate
    assert model_store.files.production(root, "other-name") is None
    assert model_store.files.production(root, "fraud-detector") == ("1.3.0" if in_production_before else None)
    assert deployer.store.load(cause.submission_id).status == "revoked"


async def test_checks_failing_after_a_crash_mid_way_give_the_target_back(deployer, cause, earlier, monkeypatch,
                                                                        tmp_path):
    """Killed after the target moved, the deployer reads a checks.failed for that submission (a
    re-run that failed) before the approval comes back: rejected, and 1.3.0 serves again."""
    crash_after_the_pointer_moved(monkeypatch, "1.4.0", lambda: None)
    async with running(deployer.broker) as br:
        await deploy(br, earlier)
        await crash_mid_way(br, cause)
        if modes.MODE == "memory":  # on Kafka the approval is retried at once and deploys first
            await publish(br, f.checks_failed(cause))
            assert model_store.files.production(tmp_path / "store", "fraud-detector") == "1.3.0"
            assert deployer.store.load(cause.submission_id).status == "rejected"
        await publish(br, f.decided(cause))


async def test_a_redelivery_that_cannot_install_again_gives_the_target_back(
        deployer, cause, earlier, artifact, monkeypatch, tmp_path):
    """Killed after the target moved; by the redelivery the artifact's bytes changed, so the
    install step refuses them: the deployment fails, and 1.3.0 serves again."""
    crash_after_the_pointer_moved(monkeypatch, "1.4.0", lambda: artifact.path.write_bytes(b"swapped"))
    async with running(deployer.broker) as br:
        await deploy(br, earlier)
        await crash_mid_way(br, cause)
        await publish(br, f.decided(cause))
        failed = sent(deployer.emitter.publishers[DeploymentFailed], topics.DEPLOYMENT_FAILED)
    assert "changed since it was checked" in failed.reason
    assert model_store.files.production(tmp_path / "store", "fraud-detector") == "1.3.0"
    assert deployer.store.load(cause.submission_id).status == "failed"


async def test_revoking_a_deployment_a_crash_stopped_mid_way_gives_the_target_back(
        deployer, cause, earlier, monkeypatch, tmp_path):
    """Killed after the target moved, the deployer is asked to revoke that submission: the
    revocation takes the version out of the store though it was never recorded in production."""
    crash_after_the_pointer_moved(monkeypatch, "1.4.0", lambda: None)
    async with running(deployer.broker) as br:
        await deploy(br, earlier)
        await crash_mid_way(br, cause)
        await publish(br, RevocationRequested(submission_id=cause.submission_id, model="fraud-detector",
                                              requested_by="oncall", reason="training data leak"))
        await publish(br, f.decided(cause))  # the redelivery: revoked, it starts nothing
        [revoked] = [e for e in sent_all(deployer.emitter.publishers[DeploymentRevoked], topics.DEPLOYMENT_REVOKED)
                     if e.submission_id == cause.submission_id]
    assert model_store.files.production(tmp_path / "store", "fraud-detector") == "1.3.0"
    assert deployer.store.load(cause.submission_id).status == "revoked"


def test_faststreams_lines_per_record_are_debug_and_its_errors_are_not(deployer):
    """FastStream logs "Received" and "Processed" for every record and handler: at INFO, two lines
    per record saying what the handler's own lines (with LogContext's submission_id, event_id,
    topic and offset) say. They are DEBUG; a handler's error is still logged as an error."""
    faststream_log = deployer.broker.config.logger  # what the connected broker logs through
    faststream_log.logger = structlog.get_logger()  # make_broker's logger (set at connect)
    with capture_logs() as logs:
        faststream_log.log("Received")
        faststream_log.log("Processed")
        faststream_log.log("RuntimeError: boom", log_level=logging.ERROR)
    assert [(e["event"], e["log_level"]) for e in logs] == [("RuntimeError: boom", "error")]


async def test_approval_before_checks_waits_then_deploys(deployer, cause):
    async with running(deployer.broker) as br:
        await publish(br, f.decided(cause))
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
        await publish(br, f.checks_passed(cause))
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_called_once()


async def test_nothing_deploys_after_a_rejection(deployer, cause, tmp_path):
    async with running(deployer.broker) as br:
        await publish(br, f.decided(cause, outcome="rejected", salt="no"))
        await publish(br, f.checks_passed(cause))
        await publish(br, f.decided(cause))
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
        deployer.emitter.publishers[DeploymentFailed].mock.assert_not_called()
    assert not (tmp_path / "store" / "fraud-detector").exists()
    assert deployer.store.load(cause.submission_id).status == "rejected"
    assert deployer.store.is_rejected(cause.submission.candidate.artifact_sha256)


async def test_failed_checks_then_approval_never_deploys(deployer, cause, tmp_path):
    async with running(deployer.broker) as br:
        await publish(br, f.checks_failed(cause))
        await publish(br, f.decided(cause))
        # A checks.passed after the failure (a re-run, a misrouted event) completes the pair: the
        # failure must already have ended the lifecycle, or this would deploy.
        await publish(br, f.checks_passed(cause))
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
        deployer.emitter.publishers[DeploymentFailed].mock.assert_not_called()
    state = deployer.store.load(cause.submission_id)
    assert (state.status, state.note) == ("rejected", "checks failed")
    assert not (tmp_path / "store" / "fraud-detector").exists()


async def test_a_rejected_digest_is_refused_for_a_later_submission(deployer, cause):
    again = f.submitted(cause.submission)  # same artifact, new submission
    async with running(deployer.broker) as br:
        await publish(br, f.checks_failed(cause, scan=True))
        await publish(br, f.checks_passed(again))
        await publish(br, f.decided(again))
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
        out = sent(deployer.emitter.publishers[DeploymentFailed], topics.DEPLOYMENT_FAILED)
    assert "was rejected before" in out.reason


async def test_approval_for_another_digest_fails(deployer, cause):
    other = cause.submission.candidate.model_copy(update={"artifact_sha256": f.OTHER_SHA})
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        await publish(br, f.decided(cause, cand=other))
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
        out = sent(deployer.emitter.publishers[DeploymentFailed], topics.DEPLOYMENT_FAILED)
    assert f.OTHER_SHA in out.reason
    assert deployer.store.load(cause.submission_id).status == "failed"


async def test_artifact_changed_after_checks_fails_the_deployment(deployer, cause, artifact, tmp_path):
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        artifact.path.write_bytes(b"swapped")
        await publish(br, f.decided(cause))
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
        out = sent(deployer.emitter.publishers[DeploymentFailed], topics.DEPLOYMENT_FAILED)
    assert "changed since it was checked" in out.reason
    assert not (tmp_path / "store" / "fraud-detector" / "1.4.0").exists()
    assert deployer.store.load(cause.submission_id).status == "failed"


async def test_a_late_event_does_not_blacklist_a_digest_nobody_rejected(deployer, cause, artifact_root):
    """Only the event that rejects a submission marks its digest rejected; later events that the
    lifecycle ignores must not."""
    other_path = artifact_root / "other.onnx"
    other_path.write_bytes(b"other weights")
    other = cause.submission.candidate.model_copy(update={
        "artifact_uri": other_path.as_uri(), "artifact_sha256": hashlib.sha256(b"other weights").hexdigest()})
    fresh = f.submitted(f.submission(other))
    async with running(deployer.broker) as br:
        await publish(br, f.checks_failed(cause))            # rejects cause's digest
        await publish(br, f.decided(cause, cand=other))      # stray approval of `other` on that submission
        assert not deployer.store.is_rejected(other.artifact_sha256)
        await publish(br, f.checks_passed(fresh))            # `other`, properly checked and approved
        await publish(br, f.decided(fresh))
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_called_once()


def test_building_the_app_opens_nothing(tmp_path):
    """`build` only wires: no state file, no workflow read (the folder does not even exist), no
    folder created; the start-up hook opens them."""
    settings = DeployerSettings(workflows=tmp_path / "missing-workflows", state_db=tmp_path / "state" / "state.db",
                                model_store=tmp_path / "store", download_dir=tmp_path / "downloads",
                                **keys.service_fields("deployer"), **modes.kafka_fields())
    wiring = app.build(settings)
    assert isinstance(wiring.app, FastStream) and isinstance(app.create_app(settings), FastStream)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit, match="invalid workflows"):
        wiring.open()  # opening is what reads them


async def test_a_late_approval_of_an_older_submission_is_superseded(deployer, artifact_root, tmp_path):
    """1.2.0 waits for a person while 1.6.0, submitted later, is approved and deployed; then 1.2.0
    is approved: production stays at 1.6.0 and 1.2.0 ends superseded."""
    def submission(version: str):
        path = artifact_root / f"fraud-{version}.onnx"
        path.write_bytes(b"weights " + version.encode())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return f.submitted(f.submission(f.candidate(version=version, artifact_uri=path.as_uri(),
                                                    artifact_sha256=digest)))

    older, newer = submission("1.2.0"), submission("1.6.0")
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(older))  # checked first: submitted first
        await publish(br, f.checks_passed(newer))
        await publish(br, f.decided(newer))
        await publish(br, f.decided(older))  # the late human approval
        [deployed] = sent_all(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
        superseded = sent(deployer.emitter.publishers[DeploymentSuperseded], topics.DEPLOYMENT_SUPERSEDED)
    assert deployed.candidate.version == "1.6.0"
    assert (superseded.candidate.version, superseded.superseded_by) == ("1.2.0", newer.submission_id)
    assert superseded.superseded_by_version == "1.6.0"
    assert (tmp_path / "store" / "fraud-detector" / "PRODUCTION").read_text().strip() == "1.6.0"
    assert not (tmp_path / "store" / "fraud-detector" / "1.2.0").exists()
    assert deployer.store.load(older.submission_id).status == "superseded"


async def test_giving_back_under_another_rollout_hands_its_stage_to_the_target_again(deployer, cause):
    """What a crash left half-done is undone: while another rollout of the model is under way in
    the same place, by handing its current stage to the target again (restoring production would
    wipe its canary traffic); else by pointing the target at production."""
    calls = []

    class Recorder:
        def location(self, release):
            return "store"

        async def shift(self, release, step, previous, key):
            calls.append(("shift", release.version, step.traffic_percent))

        async def restore(self, model, release, key, why):
            calls.append(("restore", release.version if release else None))

    service = deployer.service
    service.target = lambda inputs: Recorder()
    approval = f.decided(cause)
    state = Lifecycle(submission_id=cause.submission_id, status="deploying", checked=approval.candidate,
                      approval=approval, deploy=DeployInputs())
    canary = DeployInputs(strategy="canary", stages=[{"name": "canary", "traffic_percent": 10, "bake": "1h"},
                                                     {"name": "full", "traffic_percent": 100}])
    older = f.submitted(f.submission(cause.submission.candidate.model_copy(update={"version": "1.3.9"})))
    service.store.save_release(Release(submission_id=older.submission_id, candidate=older.submission.candidate,
                                       approval=f.decided(older), deploy=canary, location="store"))
    service.store.save(Lifecycle(submission_id=older.submission_id, status="rolling_out", stage=0,
                                 approval=f.decided(older), deploy=canary))
    service.store.schedule(older.submission_id, "fraud-detector", 0.0)
    await deploying.give_back(service, state, {"operation": "abort"})
    assert calls == [("shift", "1.3.9", 10)]
    service.store.unschedule(older.submission_id)
    await deploying.give_back(service, state, {"operation": "abort"})
    assert calls[1:] == [("restore", None)]  # nothing in production

    live = f.submitted(f.submission(cause.submission.candidate.model_copy(update={"version": "1.3.0"})))
    for where, expected in (("store", "1.3.0"), ("another bucket", None)):  # production here; elsewhere
        service.store.save_release(Release(submission_id=live.submission_id, candidate=live.submission.candidate,
                                           approval=f.decided(live), deploy=DeployInputs(), location=where))
        service.store.promote("fraud-detector", live.submission_id)
        calls.clear()
        await deploying.give_back(service, state, {"operation": "abort"})
        assert calls == [("restore", expected)], where


async def test_a_target_that_refuses_to_give_back_fails_the_step_to_be_retried(deployer, cause):
    """Refused bytes must not keep serving behind a recorded failure: the error propagates, the
    handler is retried (and dead-lettered with the reason if the target stays down)."""

    class Down:
        def location(self, release):
            return "store"

        async def restore(self, model, release, key, why):
            raise TargetError("the store is down", transient=True)

    deployer.service.target = lambda inputs: Down()
    approval = f.decided(cause)
    state = Lifecycle(submission_id=cause.submission_id, status="deploying", checked=approval.candidate,
                      approval=approval, deploy=DeployInputs())
    with pytest.raises(TargetError, match="the store is down"):
        await deploying.give_back(deployer.service, state, {"operation": "abort"})
