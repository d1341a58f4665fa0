"""Wiring of the validator: model.submitted in, checks.passed / checks.failed out."""

from __future__ import annotations

from services.validator import SERVICE, checks
from services.validator import __doc__ as ABOUT
from services.validator.settings import ValidatorSettings
from shared import artifacts, topics
from shared.admin import ensure_topics
from shared.broker import Emitter, make_app, make_broker, subscribe
from shared.events import CheckResult, ChecksFailed, ChecksPassed, ModelSubmitted, PolicyRef
from shared.logging import configure
from shared.workflows import load_or_exit

settings = ValidatorSettings()
log = configure(settings.log_level)
workflows = load_or_exit(settings.workflows, log)
broker = make_broker(settings, SERVICE)
emitter = Emitter(broker, f"/signoff/{SERVICE}", ChecksPassed, ChecksFailed)


@subscribe(broker, topics.MODEL_SUBMITTED, SERVICE)
async def on_model_submitted(event: ModelSubmitted) -> None:
    submission = event.submission
    loaded, no_match = workflows.match(submission.candidate.model)
    measured, error = await _digest(submission.candidate.artifact_uri)
    results = [checks.integrity(submission.candidate.artifact_sha256, measured, error)]
    ref = None
    if loaded is None:
        results.append(checks.no_workflow(no_match))
    else:
        step = loaded.workflow.checks
        ref = PolicyRef(name=loaded.workflow.name, rule=step.name, digest=loaded.digest)
        results += _workflow_checks(submission, step)
    outcome = checks.verdict(event, results, ref)
    log.info("checks_completed", outcome=outcome.type, failed=[r.name for r in results if not r.passed])
    await emitter.emit(outcome)


def _workflow_checks(submission, step) -> list[CheckResult]:
    results = [checks.lineage(submission, step.inputs.lineage),
               *checks.thresholds(submission.metrics, step.inputs.min, step.inputs.max)]
    if step.inputs.fairness is not None:
        results.append(checks.parity_ratio(submission.group_metrics, step.inputs.fairness.min_parity_ratio))
    return results


async def _digest(uri: str) -> tuple[str | None, str | None]:
    try:
        path = artifacts.resolve(uri, settings.artifact_roots)
        return await artifacts.sha256_of(path), None
    except (artifacts.ArtifactError, OSError) as exc:
        return None, str(exc)


async def _create_topics() -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)


app = make_app(broker, SERVICE, ABOUT, on_startup=[_create_topics])
