"""Wiring of the policy service: checks.passed / checks.failed in, review.* out."""

from __future__ import annotations

from services.policy import SERVICE, rules
from services.policy import __doc__ as ABOUT
from services.policy.settings import PolicySettings
from shared import topics
from shared.admin import ensure_topics
from shared.broker import Emitter, make_app, make_broker, subscribe
from shared.events import ChecksFailed, ChecksPassed, ReviewDecided, ReviewRequested
from shared.logging import configure

settings = PolicySettings()
log = configure(settings.log_level)
policy = rules.Policy(settings.name, settings.auto_approve_min, settings.approvers, settings.quorum)
broker = make_broker(settings, SERVICE)
emitter = Emitter(broker, f"/signoff/{SERVICE}", ReviewDecided, ReviewRequested)


@subscribe(broker, topics.CHECKS_PASSED, SERVICE)
async def on_checks_passed(event: ChecksPassed) -> None:
    decision = rules.on_checks_passed(event, policy)
    log.info("policy_decided", outcome=decision.type)
    await emitter.emit(decision)


@subscribe(broker, topics.CHECKS_FAILED, SERVICE)
async def on_checks_failed(event: ChecksFailed) -> None:
    await emitter.emit(rules.on_checks_failed(event, policy))


async def _create_topics() -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)


app = make_app(broker, SERVICE, ABOUT, on_startup=[_create_topics])
