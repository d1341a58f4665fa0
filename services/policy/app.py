"""Wiring of the policy service: checks.* in, review.* out; review.decided in, to remember
rejections; deployment.succeeded / .rolled_back / .revoked followed from the beginning, to know
each model in production."""

from __future__ import annotations

from services.policy import SERVICE, rules
from services.policy import __doc__ as ABOUT
from services.policy.settings import PolicySettings
from services.policy.state import PolicyStore
from shared import topics
from shared.admin import ensure_topics
from shared.broker import Emitter, make_app, make_broker, subscribe
from shared.events import ChecksFailed, ChecksPassed, ReviewDecided, ReviewRequested
from shared.logging import configure
from shared.production import EVENTS, ProductionBook
from shared.replay import follow_into, rebuild
from shared.workflows import load_or_exit

settings = PolicySettings()
log = configure(settings.log_level)
workflows = load_or_exit(settings.workflows, log)
broker = make_broker(settings, SERVICE)
emitter = Emitter(broker, f"/signoff/{SERVICE}", ReviewDecided, ReviewRequested)
store = PolicyStore(settings.state_db)
production = ProductionBook()
followers = follow_into(broker, production.apply, *EVENTS)


def _match(model: str) -> rules.Match:
    workflow, no_match = workflows.match(model)
    return rules.Match(workflow, no_match, workflows.digest)


@subscribe(broker, topics.CHECKS_PASSED, SERVICE)
async def on_checks_passed(event: ChecksPassed) -> None:
    if store.has_decided(event.submission_id):
        return  # a redelivered checks event: the decision was made and emitted already
    candidate = event.submission.candidate
    decision = rules.on_checks_passed(event, _match(candidate.model),
                                      store.rejection(candidate.artifact_sha256),
                                      production.get(candidate.model))
    await _emit(decision)


@subscribe(broker, topics.CHECKS_FAILED, SERVICE)
async def on_checks_failed(event: ChecksFailed) -> None:
    if not store.has_decided(event.submission_id):
        await _emit(rules.on_checks_failed(event, _match(event.submission.candidate.model)))


@subscribe(broker, topics.REVIEW_DECIDED, SERVICE)
async def on_review_decided(event: ReviewDecided) -> None:
    """Every rejection, automatic or human, makes its digest rejected for good (unless the bytes
    were never verified to have that digest)."""
    if event.outcome == "rejected" and event.final_for_artifact:
        store.record_rejection(event)


async def _emit(decision: ReviewDecided | ReviewRequested) -> None:
    # Emit, then remember: a crash in between re-decides on redelivery with the same event_id.
    await emitter.emit(decision)
    store.record_decision(decision.submission_id, decision.event_id)
    if isinstance(decision, ReviewDecided) and decision.outcome == "rejected" and decision.final_for_artifact:
        store.record_rejection(decision)
    log.info("policy_decided", outcome=getattr(decision, "outcome", "review_requested"),
             workflow=decision.policy.name, rule=decision.policy.rule)


async def _start() -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)
    # Know what is in production before the first checks event is decided; the followers then
    # read the topics again from the start (applying an event twice changes nothing).
    events = await rebuild(settings.kafka_bootstrap_servers, production.apply, *EVENTS)
    log.info("production_rebuilt", events=events, models=len(production))


async def _close() -> None:
    store.close()  # after the broker stopped: no handler is using the store any more


app = make_app(broker, SERVICE, ABOUT, on_startup=[_start], after_shutdown=[_close])
