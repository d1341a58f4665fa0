"""Wiring of the validator: model.submitted in, checks.passed / checks.failed out;
deployment.succeeded / .rolled_back / .revoked followed, to know each model in production.

`build(settings)` wires everything and opens nothing; the app's start-up hook opens (workflows,
download folder, the snapshot store), checks the topics and restores production from its snapshot
and what was written since (shared/replay.py); once the broker runs, the followers go on from
there. Run it with
`faststream run --factory services.validator.app:create_app`.
"""

from __future__ import annotations

from faststream import FastStream

from services.validator import SERVICE, checks
from services.validator import __doc__ as ABOUT
from services.validator.run_checks import refuses_unsigned, run_checks, signed, submitter_of
from services.validator.settings import ValidatorSettings
from shared import observability, topics
from shared.broker import Emitter, keys_of, make_app, make_broker, subscribe
from shared.events import ChecksFailed, ChecksPassed, ModelSubmitted, PolicyRef
from shared.logging import configure
from shared.observability.http import HealthServer
from shared.observability.metrics import BytesHashed
from shared.production import EVENTS, ProductionBook
from shared.replay import keep, open_snapshots
from shared.signing import verified_signer
from shared.snapshot_store import SnapshotStore
from shared.sources import ArtifactSource
from shared.topic_admin import check_topics
from shared.workflow.loading import load_or_exit
from shared.workflow.matching import WorkflowSet
from shared.workflow.watch import FolderWatch


class Validator:
    def __init__(self, settings: ValidatorSettings) -> None:
        self.settings = settings
        self.log = configure(settings.log_level)
        self.broker = make_broker(settings, SERVICE)
        self.emitter = Emitter(self.broker, f"/signoff/{SERVICE}", ChecksPassed, ChecksFailed)
        self.production = ProductionBook()
        self.kept, self.followers = keep(self.broker, f"{SERVICE}.production", self.production,
                                         self.production.apply, *EVENTS)
        self.snapshots: SnapshotStore | None = None  # opened at start
        self.sources = ArtifactSource.from_settings(settings, settings.download_dir)
        self.workflows = WorkflowSet(())
        self.watch: FolderWatch | None = None  # the folder is read at start; changes apply at restart

        # One consumer per partition: a large artifact being hashed holds up only its own partition.
        @subscribe(self.broker, topics.MODEL_SUBMITTED, SERVICE, max_workers=settings.topic_partitions)
        async def on_model_submitted(event: ModelSubmitted) -> None:
            await self.check(event)

        self.on_model_submitted = on_model_submitted
        # /healthz, /readyz, /metrics (shared/observability), served from the first start-up hook on.
        self.obs = observability.required(self.broker)
        self.obs.ready_when("workflows", lambda: None if self.watch is not None else "workflows not loaded yet")
        self.obs.collect(BytesHashed(lambda: dict(self.sources.hashed)))
        self.http = HealthServer(self.obs, settings.http_host, settings.http_port, "VALIDATOR_")
        self.app = make_app(self.broker, SERVICE, ABOUT, on_startup=[self.http.start, self.start],
                            after_shutdown=[self.close, self.obs.close, self.http.stop])

    def open(self) -> None:
        keys_of(self.broker).open()  # no key or trust file: the service does not start
        self.workflows = load_or_exit(self.settings.workflows, self.log)
        self.watch = FolderWatch(self.settings.workflows, self.workflows, self.log)
        self.settings.download_dir.mkdir(parents=True, exist_ok=True)

    async def start(self) -> None:
        self.open()
        await check_topics(self.settings.kafka, self.settings.topic_layout, self.log)
        # Know what is in production before the first submission is checked: the snapshot and
        # what was written since; the followers go on from there (shared.replay.Kept.attach).
        url = self.settings.database_url
        self.snapshots = open_snapshots(url.get_secret_value() if url is not None else self.settings.state_db)
        events = await self.kept.restore(self.settings.kafka, keys_of(self.broker).keyring, self.snapshots)
        self.log.info("production_rebuilt", events=events, records_read=self.kept.read_at_start,
                      models=len(self.production))
        if self.watch is not None:
            self.watch.start(self.settings.workflows_check_seconds)

    async def close(self) -> None:
        # Only the folder watch runs between events: artifacts are read and released per submission.
        if self.watch is not None:
            await self.watch.stop()
        self.kept.save()  # after the broker stopped: the followers' last records are in
        if self.snapshots is not None:
            self.snapshots.close()
            self.snapshots = self.kept.store = None

    async def check(self, event: ModelSubmitted) -> None:
        model = event.submission.candidate.model
        loaded, no_match = self.workflows.match(model)
        step = loaded.workflow.checks if loaded else None
        submitted_by = submitter_of(verified_signer())  # who the signature proved, None if unsigned
        results = await run_checks(event.submission, step, no_match, self.production.get(model), self.sources,
                                   self.settings.max_document_bytes,
                                   unsigned_refused_by=refuses_unsigned(loaded, submitted_by))
        ref = PolicyRef(name=loaded.workflow.name, rule=loaded.workflow.checks.name,
                        digest=loaded.digest) if loaded else None
        outcome = signed(checks.verdict(event, results, ref), submitted_by)
        self.log.info("checks_completed", outcome=outcome.type, failed=[r.name for r in results if not r.passed])
        await self.emitter.emit(outcome)


def build(settings: ValidatorSettings) -> Validator:
    return Validator(settings)


def create_app(settings: ValidatorSettings | None = None) -> FastStream:
    """The app factory: `faststream run --factory services.validator.app:create_app`."""
    return build(settings or ValidatorSettings()).app
