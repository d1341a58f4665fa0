"""Wiring of the deployer: checks.*, review.decided, rollback.requested and revocation.requested
in; deployment.* out; a scheduler task moves canary rollouts on after their bake time, and a
drift task compares protected aliases with production (drift.py).

`build(settings)` wires everything and opens nothing; the app's start-up hook opens (workflows,
validated by the deploy targets; the SQLite state; the model store's staging; the download folder),
checks the topics (shared/topic_admin.py), and once the broker runs starts the scheduler. Run it with
`faststream run --factory services.deployer.app:create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib

from faststream import FastStream

from services.deployer import SERVICE, targets
from services.deployer import __doc__ as ABOUT
from services.deployer.service import Service
from services.deployer.settings import DeployerSettings
from services.deployer.state import StateStore
from services.deployer.targets import Deps, model_store, s3
from shared import observability, signing, topics
from shared.broker import Emitter, Refused, keys_of, make_app, make_broker, subscribe
from shared.events import (
    ChecksFailed,
    ChecksPassed,
    DeploymentDrifted,
    DeploymentFailed,
    DeploymentProgressed,
    DeploymentRevoked,
    DeploymentRolledBack,
    DeploymentSucceeded,
    DeploymentSuperseded,
    ReviewDecided,
    RevocationRequested,
    RollbackRequested,
)
from shared.facts import Facts
from shared.logging import configure
from shared.observability.http import HealthServer
from shared.observability.metrics import BytesHashed
from shared.rejections import Rejections
from shared.replay import open_snapshots
from shared.snapshot_store import SnapshotStore
from shared.topic_admin import check_topics
from shared.workflow.loading import load_or_exit
from shared.workflow.watch import FolderWatch


class Deployer:
    def __init__(self, settings: DeployerSettings) -> None:
        self.settings = settings
        self.log = configure(settings.log_level)
        self.broker = make_broker(settings, SERVICE)
        self.emitter = Emitter(self.broker, f"/signoff/{SERVICE}", DeploymentSucceeded, DeploymentFailed,
                               DeploymentProgressed, DeploymentRolledBack, DeploymentRevoked,
                               DeploymentSuperseded, DeploymentDrifted)
        self._service: Service | None = None
        self._deps: Deps | None = None  # set by open()
        self._scheduler: asyncio.Task | None = None
        self._drift: asyncio.Task | None = None  # the drift check of protected aliases (drift.py)
        self.watch: FolderWatch | None = None  # the folder is read at start; changes apply at restart
        self.rejections = Rejections()
        self.facts = Facts(self.broker, topics.REVIEW_DECIDED, self.rejections.apply,
                           settings.kafka, view=self.rejections, name=f"{SERVICE}.rejections")
        self.snapshots: SnapshotStore | None = None  # opened at start (shared/replay.py)

        @subscribe(self.broker, topics.CHECKS_PASSED, SERVICE)
        async def on_checks_passed(event: ChecksPassed) -> None:
            await self.service.on_submission_event(event)

        @subscribe(self.broker, topics.CHECKS_FAILED, SERVICE)
        async def on_checks_failed(event: ChecksFailed) -> None:
            await self.service.on_submission_event(event)

        @subscribe(self.broker, topics.REVIEW_DECIDED, SERVICE)
        async def on_review_decided(event: ReviewDecided) -> None:
            if why := signing.approval_refusal(event.outcome, event.mode, signing.verified_signer()):
                raise Refused(why)
            await self.service.on_submission_event(event)

        @subscribe(self.broker, topics.ROLLBACK_REQUESTED, SERVICE)
        async def on_rollback_requested(event: RollbackRequested) -> None:
            await self.service.on_rollback(event)

        @subscribe(self.broker, topics.REVOCATION_REQUESTED, SERVICE)
        async def on_revocation_requested(event: RevocationRequested) -> None:
            await self.service.on_revocation(event)

        self.handlers = (on_checks_passed, on_checks_failed, on_review_decided, on_rollback_requested,
                         on_revocation_requested)
        # /healthz, /readyz, /metrics (shared/observability), served from the first start-up hook on.
        self.obs = observability.required(self.broker)
        self.obs.ready_when("state", lambda: None if self._service is not None else "state store not open yet")
        self.obs.collect(BytesHashed(lambda: dict(self._deps.source.hashed) if self._deps else {}))
        self.http = HealthServer(self.obs, settings.http_host, settings.http_port, "DEPLOYER_")
        self.app = make_app(self.broker, SERVICE, ABOUT, on_startup=[self.http.start, self.start],
                            after_startup=[self.start_scheduler], on_shutdown=[self.stop_scheduler],
                            after_shutdown=[self.close, self.obs.close, self.http.stop])

    @property
    def service(self) -> Service:
        assert self._service is not None, "opened by open(), at start-up"
        return self._service

    @property
    def store(self) -> StateStore:
        return self.service.store

    def open(self) -> None:
        keys_of(self.broker).open()  # no key or trust file: the service does not start
        settings = self.settings
        workflows = load_or_exit(settings.workflows, self.log, targets=targets.INPUTS)
        if unready := targets.problems(workflows, settings):
            # Started anyway, every approved model of such a workflow would end in deployment.failed.
            for problem in unready:
                self.log.error("target_not_ready", problem=problem)
            raise SystemExit("refusing to start: workflows the deployer cannot carry out (`signoff workflow "
                             "validate` says the same):\n" + "\n".join(unready))
        self.watch = FolderWatch(settings.workflows, workflows, self.log, targets.INPUTS)
        url = settings.database_url  # shared by the replicas; unset: this one's SQLite file
        store = StateStore(url.get_secret_value() if url is not None else settings.state_db)
        model_store.clean_staging(settings)
        s3.clean_staging(settings)  # private copies a crash left before their upload
        settings.download_dir.mkdir(parents=True, exist_ok=True)
        deps = self._deps = Deps.from_settings(settings, store)
        self._service = Service(store, workflows, lambda inputs: targets.build(inputs, deps), self.emitter.emit,
                                rejections=self.rejections, caught_up=self.facts.caught_up,
                                signer=keys_of(self.broker).signer)  # also signs the attestations

    async def start(self) -> None:
        self.open()
        await check_topics(self.settings.kafka, self.settings.topic_layout, self.log)
        # The rejections from their snapshot and what was written since; the follower goes on
        # from there once the broker runs (shared.replay.Kept.attach), not from offset 0.
        url = self.settings.database_url
        self.snapshots = open_snapshots(url.get_secret_value() if url is not None else self.settings.state_db)
        await self.facts.restore(keys_of(self.broker).keyring, self.snapshots)

    async def start_scheduler(self) -> None:
        self._scheduler = asyncio.create_task(self.service.run_scheduler(self.settings.schedule_poll_seconds))
        if self.settings.drift_check_seconds > 0:
            self._drift = asyncio.create_task(self.service.run_drift_watch(self.settings.drift_check_seconds))
        if self.watch is not None:
            self.watch.start(self.settings.workflows_check_seconds)

    async def stop_scheduler(self) -> None:
        for task in (self._scheduler, self._drift):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._scheduler = self._drift = None

    async def close(self) -> None:
        await self.stop_scheduler()  # a start-up that failed half-way never reached on_shutdown
        if self.watch is not None:
            await self.watch.stop()
        await self.facts.close()  # saves its snapshot
        if self.snapshots is not None:
            self.snapshots.close()
            self.snapshots = None
        if self._service is not None:  # after the broker stopped: no handler is using the store any more
            self._service.store.close()
            self._service = None


def build(settings: DeployerSettings) -> Deployer:
    return Deployer(settings)


def create_app(settings: DeployerSettings | None = None) -> FastStream:
    """The app factory: `faststream run --factory services.deployer.app:create_app`."""
    return build(settings or DeployerSettings()).app
