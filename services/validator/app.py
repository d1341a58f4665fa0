"""Wiring of the validator: model.submitted in, checks.passed / checks.failed out."""

from __future__ import annotations

from services.validator import SERVICE, __doc__ as ABOUT
from services.validator import checks
from services.validator.settings import ValidatorSettings
from shared import artifacts, topics
from shared.admin import ensure_topics
from shared.broker import Emitter, make_app, make_broker, subscribe
from shared.events import ChecksFailed, ChecksPassed, ModelSubmitted
from shared.logging import configure

settings = ValidatorSettings()
log = configure(settings.log_level)
broker = make_broker(settings, SERVICE)
emitter = Emitter(broker, f"/signoff/{SERVICE}", ChecksPassed, ChecksFailed)


@subscribe(broker, topics.MODEL_SUBMITTED, SERVICE)
async def on_model_submitted(event: ModelSubmitted) -> None:
    submission = event.submission
    measured, error = await _digest(submission.candidate.artifact_uri)
    results = [
        checks.integrity(submission.candidate.artifact_sha256, measured, error),
        checks.lineage(submission, settings.required_lineage),
        *checks.thresholds(submission.metrics, settings.min_metrics, settings.max_metrics),
    ]
    outcome = checks.verdict(event, results)
    log.info("checks_completed", outcome=outcome.type,
             failed=[r.name for r in results if not r.passed])
    await emitter.emit(outcome)


async def _digest(uri: str) -> tuple[str | None, str | None]:
    try:
        path = artifacts.resolve(uri, settings.artifact_roots)
        return await artifacts.sha256_of(path), None
    except (artifacts.ArtifactError, OSError) as exc:
        return None, str(exc)


async def _create_topics() -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)


app = make_app(broker, SERVICE, ABOUT, on_startup=[_create_topics])
