"""Wiring of the validator: model.submitted in, checks.passed / checks.failed out;
deployment.succeeded / .rolled_back / .revoked followed from the beginning, to know each model in
production."""

from __future__ import annotations

from services.validator import SERVICE, checks
from services.validator import __doc__ as ABOUT
from services.validator.inspect import Sources, inspect
from services.validator.settings import ValidatorSettings
from shared import topics
from shared.admin import ensure_topics
from shared.broker import Emitter, make_app, make_broker, subscribe
from shared.events import ChecksFailed, ChecksPassed, ModelSubmitted, PolicyRef
from shared.logging import configure
from shared.production import EVENTS, ProductionBook
from shared.replay import follow_into, rebuild
from shared.workflows import load_or_exit

settings = ValidatorSettings()
log = configure(settings.log_level)
workflows = load_or_exit(settings.workflows, log)
broker = make_broker(settings, SERVICE)
emitter = Emitter(broker, f"/signoff/{SERVICE}", ChecksPassed, ChecksFailed)
production = ProductionBook()
followers = follow_into(broker, production.apply, *EVENTS)
sources = Sources(settings.artifact_roots, settings.artifact_url_prefixes, settings.max_artifact_bytes,
                  settings.max_document_bytes, settings.fetch_timeout, settings.download_dir)


# One consumer per partition: a large artifact being hashed holds up only its own partition.
@subscribe(broker, topics.MODEL_SUBMITTED, SERVICE, max_workers=settings.topic_partitions)
async def on_model_submitted(event: ModelSubmitted) -> None:
    model = event.submission.candidate.model
    loaded, no_match = workflows.match(model)
    step = loaded.workflow.checks if loaded else None
    results = await inspect(event.submission, step, no_match, production.get(model), sources)
    ref = PolicyRef(name=loaded.workflow.name, rule=step.name, digest=loaded.digest) if loaded else None
    outcome = checks.verdict(event, results, ref)
    log.info("checks_completed", outcome=outcome.type, failed=[r.name for r in results if not r.passed])
    await emitter.emit(outcome)


async def _start() -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)
    settings.download_dir.mkdir(parents=True, exist_ok=True)
    # Know what is in production before the first submission is checked; the followers then read
    # the topics again from the start (applying an event twice changes nothing) and keep it current.
    events = await rebuild(settings.kafka_bootstrap_servers, production.apply, *EVENTS)
    log.info("production_rebuilt", events=events, models=len(production))


app = make_app(broker, SERVICE, ABOUT, on_startup=[_start])
