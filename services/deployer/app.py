"""Wiring of the deployer: checks.* and review.decided in, deployment.* out."""

from __future__ import annotations

import asyncio

from services.deployer import SERVICE, lifecycle, target
from services.deployer import __doc__ as ABOUT
from services.deployer.settings import DeployerSettings
from services.deployer.state import StateStore
from shared import artifacts, topics
from shared.admin import ensure_topics
from shared.broker import Emitter, make_app, make_broker, subscribe
from shared.events import (
    ChecksFailed, ChecksPassed, DeploymentFailed, DeploymentSucceeded, ReviewDecided, utcnow,
)
from shared.logging import configure

TARGET = "model-store"

settings = DeployerSettings()
log = configure(settings.log_level)
broker = make_broker(settings, SERVICE)
emitter = Emitter(broker, f"/signoff/{SERVICE}", DeploymentSucceeded, DeploymentFailed)
store = StateStore(settings.state_db)


@subscribe(broker, topics.CHECKS_PASSED, SERVICE)
async def on_checks_passed(event: ChecksPassed) -> None:
    await _advance(event)


@subscribe(broker, topics.CHECKS_FAILED, SERVICE)
async def on_checks_failed(event: ChecksFailed) -> None:
    await _advance(event)


@subscribe(broker, topics.REVIEW_DECIDED, SERVICE)
async def on_review_decided(event: ReviewDecided) -> None:
    await _advance(event)


async def _advance(event: ChecksPassed | ChecksFailed | ReviewDecided) -> None:
    before = store.load(event.submission_id)
    digest = event.candidate.artifact_sha256 if isinstance(event, ReviewDecided) \
        else event.submission.candidate.artifact_sha256
    state, action = lifecycle.advance(before, event, store.is_rejected(digest))
    if isinstance(action, lifecycle.Fail):
        # Emit before saving the terminal state: a crash in between redelivers and fails again.
        await emitter.emit(lifecycle.failed_event(action.approval, TARGET, action.reason))
    newly_rejected = state.status == "rejected" and before.status != "rejected"
    store.save(state, rejected_digest=digest if newly_rejected and lifecycle.bans_digest(event) else None)
    if state.status != before.status:
        log.info("lifecycle", status=state.status, was=before.status, note=state.note)
    if isinstance(action, lifecycle.Deploy):
        await _deploy(state, action)


async def _deploy(state: lifecycle.Lifecycle, action: lifecycle.Deploy) -> None:
    candidate, approval = action.candidate, action.approval
    manifest = {
        **candidate.model_dump(),
        "submission_id": str(state.submission_id),
        "approved_by": approval.decided_by,
        "approval_mode": approval.mode,
        "approval_reason": approval.reason,
        "approval_event_id": str(approval.event_id),
        "policy": approval.policy.model_dump(),
        "metrics": state.metrics,
        "deployed_at": utcnow().isoformat(),
    }
    try:
        source = artifacts.resolve(candidate.artifact_uri, settings.artifact_roots)
        path = await asyncio.to_thread(target.install, settings.model_store, candidate, source, manifest)
    except (artifacts.ArtifactError, OSError) as exc:
        await emitter.emit(lifecycle.failed_event(approval, TARGET, str(exc)))
        store.save(lifecycle.failed(state, str(exc)))
        return
    # Emit before recording "deployed": a crash in between redelivers, and install() is idempotent.
    await emitter.emit(lifecycle.succeeded_event(state, TARGET, str(path)))
    store.save(lifecycle.deployed(state, str(path)))


async def _start() -> None:
    target.clean_staging(settings.model_store)
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)


async def _close() -> None:
    store.close()  # after the broker stopped: no handler is using the store any more


app = make_app(broker, SERVICE, ABOUT, on_startup=[_start], after_shutdown=[_close])
