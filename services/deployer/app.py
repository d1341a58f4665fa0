"""Wiring of the deployer: checks.*, review.decided, rollback.requested and revocation.requested
in; deployment.* out; a scheduler task moves canary rollouts on after their bake time."""

from __future__ import annotations

import asyncio
import contextlib

from services.deployer import SERVICE, target
from services.deployer import __doc__ as ABOUT
from services.deployer.service import Deployer, webhook_problems
from services.deployer.settings import DeployerSettings
from services.deployer.state import StateStore
from services.deployer.targets import ArtifactSource, ModelStore, RetryPolicy, Targets
from services.deployer.webhook import Webhook
from shared import topics
from shared.admin import ensure_topics
from shared.broker import Emitter, make_app, make_broker, subscribe
from shared.events import (
    ChecksFailed, ChecksPassed, DeploymentFailed, DeploymentProgressed, DeploymentRevoked,
    DeploymentRolledBack, DeploymentSucceeded, ReviewDecided, RevocationRequested, RollbackRequested,
)
from shared.logging import configure
from shared.workflows import load_or_exit

settings = DeployerSettings()
log = configure(settings.log_level)
workflows = load_or_exit(settings.workflows, log)
broker = make_broker(settings, SERVICE)
emitter = Emitter(broker, f"/signoff/{SERVICE}", DeploymentSucceeded, DeploymentFailed,
                  DeploymentProgressed, DeploymentRolledBack, DeploymentRevoked)
store = StateStore(settings.state_db)
retry = RetryPolicy(settings.retry_attempts, settings.retry_backoff_seconds, settings.retry_max_backoff_seconds)
source = ArtifactSource(settings.artifact_roots, settings.artifact_url_prefixes, settings.max_artifact_bytes,
                        settings.fetch_timeout, settings.download_dir, retry)
targets = Targets(
    ModelStore(settings.model_store, source, retry),
    lambda inputs: Webhook(inputs, settings.secret, store, source, retry, settings.webhook_timeout_seconds),
)
service = Deployer(store, workflows, targets, emitter.emit)


@subscribe(broker, topics.CHECKS_PASSED, SERVICE)
async def on_checks_passed(event: ChecksPassed) -> None:
    await service.on_submission_event(event)


@subscribe(broker, topics.CHECKS_FAILED, SERVICE)
async def on_checks_failed(event: ChecksFailed) -> None:
    await service.on_submission_event(event)


@subscribe(broker, topics.REVIEW_DECIDED, SERVICE)
async def on_review_decided(event: ReviewDecided) -> None:
    await service.on_submission_event(event)


@subscribe(broker, topics.ROLLBACK_REQUESTED, SERVICE)
async def on_rollback_requested(event: RollbackRequested) -> None:
    await service.on_rollback(event)


@subscribe(broker, topics.REVOCATION_REQUESTED, SERVICE)
async def on_revocation_requested(event: RevocationRequested) -> None:
    await service.on_revocation(event)


scheduler: list[asyncio.Task] = []


async def _start() -> None:
    target.clean_staging(settings.model_store)
    settings.download_dir.mkdir(parents=True, exist_ok=True)
    for problem in webhook_problems(workflows, settings.secret):
        log.warning("webhook_not_ready", problem=problem)  # its deployments will fail, saying so
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)


async def _start_scheduler() -> None:
    scheduler.append(asyncio.create_task(service.run_scheduler(settings.schedule_poll_seconds)))


async def _stop_scheduler() -> None:
    for task in scheduler:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    scheduler.clear()


async def _close() -> None:
    store.close()  # after the broker stopped: no handler is using the store any more


app = make_app(broker, SERVICE, ABOUT, on_startup=[_start], after_startup=[_start_scheduler],
               on_shutdown=[_stop_scheduler], after_shutdown=[_close])
