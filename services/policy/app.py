"""Wiring of the policy service: checks.* in, review.* out; review.decided followed and read to
its end before each decision, so no acknowledged rejection is missed; deployment.succeeded /
.rolled_back / .revoked followed, to know each model in production.

`build(settings)` wires everything and opens nothing; the app's start-up hook loads the workflows
(once: changes apply at restart, and a changed folder is reported, `shared.workflow.watch`),
opens the state, checks the topics and restores production and the rejections from their
snapshots and what was written since (shared/replay.py); once the broker runs, the followers go
on from there. Run it with
`faststream run --factory services.policy.app:create_app`.
"""

from __future__ import annotations

from faststream import FastStream

from services.policy import SERVICE, rules
from services.policy import __doc__ as ABOUT
from services.policy.settings import PolicySettings
from services.policy.state import PolicyStore
from shared import observability, topics
from shared.broker import Emitter, keys_of, make_app, make_broker, subscribe
from shared.events import ChecksFailed, ChecksPassed, Event, ReviewDecided, ReviewRequested
from shared.facts import Facts
from shared.logging import configure
from shared.observability.http import HealthServer
from shared.production import EVENTS, ProductionBook
from shared.rejections import Rejections, bans
from shared.replay import keep, open_snapshots
from shared.snapshot_store import SnapshotStore
from shared.topic_admin import check_topics
from shared.workflow.loading import load_or_exit
from shared.workflow.matching import WorkflowSet
from shared.workflow.watch import FolderWatch


class Policy:
    def __init__(self, settings: PolicySettings) -> None:
        self.settings = settings
        self.log = configure(settings.log_level)
        self.broker = make_broker(settings, SERVICE)
        self.emitter = Emitter(self.broker, f"/signoff/{SERVICE}", ReviewDecided, ReviewRequested)
        self.production = ProductionBook()
        self.kept, self.followers = keep(self.broker, f"{SERVICE}.production", self.production,
                                         self.production.apply, *EVENTS)
        self.snapshots: SnapshotStore | None = None  # opened at start
        self.workflows = WorkflowSet(())
        self.watch: FolderWatch | None = None  # the folder is read at start; changes apply at restart
        self._store: PolicyStore | None = None
        # Every final rejection on review.decided, read to its end before each decision: a
        # rejection Kafka acknowledged is never missed, whatever partition it is on.
        self.rejections = Rejections()
        self.facts = Facts(self.broker, topics.REVIEW_DECIDED, self._learn, settings.kafka,
                           view=self.rejections, name=f"{SERVICE}.rejections")

        @subscribe(self.broker, topics.CHECKS_PASSED, SERVICE)
        async def on_checks_passed(event: ChecksPassed) -> None:
            if self.store.has_decided(event.submission_id):
                return  # a redelivered checks event: the decision was made and emitted already
            # Decided once across replicas: another one handling the same event waits, then finds
            # it decided (PolicyStore.deciding).
            async with self.store.deciding(event.submission_id) as undecided:
                if not undecided:
                    return
                candidate = event.submission.candidate
                await self.facts.caught_up()
                digest = candidate.artifact_sha256
                rejection = self.store.rejection(digest) or self.rejections.get(digest)
                await self._emit(rules.on_checks_passed(event, self._match(candidate.model), rejection,
                                                        self.production.known(candidate.model),
                                                        self.production.anchor(candidate.model)))

        @subscribe(self.broker, topics.CHECKS_FAILED, SERVICE)
        async def on_checks_failed(event: ChecksFailed) -> None:
            async with self.store.deciding(event.submission_id) as undecided:
                if undecided:
                    await self._emit(rules.on_checks_failed(event, self._match(event.submission.candidate.model)))

        self.on_checks_passed, self.on_checks_failed = on_checks_passed, on_checks_failed
        # /healthz, /readyz, /metrics (shared/observability), served from the first start-up hook on.
        self.obs = observability.required(self.broker)
        self.obs.ready_when("state", lambda: None if self._store is not None else "state store not open yet")
        self.http = HealthServer(self.obs, settings.http_host, settings.http_port, "POLICY_")
        self.app = make_app(self.broker, SERVICE, ABOUT, on_startup=[self.http.start, self.start],
                            after_shutdown=[self.close, self.obs.close, self.http.stop])

    @property
    def store(self) -> PolicyStore:
        assert self._store is not None, "opened by open(), at start-up"
        return self._store

    def open(self) -> None:
        keys_of(self.broker).open()  # no key or trust file: the service does not start
        self.workflows = load_or_exit(self.settings.workflows, self.log)
        self.watch = FolderWatch(self.settings.workflows, self.workflows, self.log)
        url = self.settings.database_url  # shared by the replicas; unset: this one's SQLite file
        self._store = PolicyStore(url.get_secret_value() if url is not None else self.settings.state_db)

    async def start(self) -> None:
        self.open()
        await check_topics(self.settings.kafka, self.settings.topic_layout, self.log)
        # Know what is in production, and every rejection, before the first checks event is
        # decided: the snapshots and what was written since; the followers go on from there.
        url, keyring = self.settings.database_url, keys_of(self.broker).keyring
        self.snapshots = open_snapshots(url.get_secret_value() if url is not None else self.settings.state_db)
        events = await self.kept.restore(self.settings.kafka, keyring, self.snapshots)
        self.log.info("production_rebuilt", events=events, records_read=self.kept.read_at_start,
                      models=len(self.production))
        await self.facts.restore(keyring, self.snapshots)
        if self.watch is not None:
            self.watch.start(self.settings.workflows_check_seconds)

    def _learn(self, event: Event) -> bool:
        """Every rejection, automatic or human, makes its digest rejected for good (unless the
        bytes were never verified to have that digest); remembered in the state too, so it
        outlives the topic's retention."""
        if bans(event) and self._store is not None:
            assert isinstance(event, ReviewDecided)
            self._store.record_rejection(event)
        return self.rejections.apply(event)

    async def close(self) -> None:
        if self.watch is not None:
            await self.watch.stop()
        await self.facts.close()
        self.kept.save()  # after the broker stopped: the followers' last records are in
        if self.snapshots is not None:
            self.snapshots.close()
            self.snapshots = self.kept.store = None
        if self._store is not None:  # after the broker stopped: no handler is using the store any more
            self._store.close()
            self._store = None

    def _match(self, model: str) -> rules.Match:
        workflow, no_match = self.workflows.match(model)
        return rules.Match(workflow, no_match, self.workflows.digest)

    async def _emit(self, decision: ReviewDecided | ReviewRequested) -> None:
        # Emit, then remember: a crash in between re-decides on redelivery with the same event_id.
        await self.emitter.emit(decision)
        self.store.record_decision(decision.submission_id, decision.event_id)
        if bans(decision):
            assert isinstance(decision, ReviewDecided)
            self.store.record_rejection(decision)
        self.log.info("policy_decided", outcome=getattr(decision, "outcome", "review_requested"),
                      workflow=decision.policy.name, rule=decision.policy.rule)


def build(settings: PolicySettings) -> Policy:
    return Policy(settings)


def create_app(settings: PolicySettings | None = None) -> FastStream:
    """The app factory: `faststream run --factory services.policy.app:create_app`."""
    return build(settings or PolicySettings()).app
