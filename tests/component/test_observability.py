"""Metrics, traces and health, in memory: one submission through the four services is one trace
(even across the vote cast over HTTP) and is counted where it happens; a dead letter is counted by
its reason; /readyz is 503 when the broker cannot be reached, while /healthz answers."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.validator.app import build as build_validator
from services.validator.settings import ValidatorSettings
from shared import codec, topics
from shared.observability import tracing
from shared.observability.http import PortUnavailable
from shared.observability.tracing import SUBMITTED_AT
from signoff.devstack import free_port
from tests.component.conftest import capture, publish, publish_raw, publish_record, running, settle
from tests.component.people import People
from tests.unit import factories as f

SERVICES = ("validator", "policy", "review-notifier", "deployer")


@pytest.fixture
def spans(monkeypatch) -> InMemorySpanExporter:
    """Every service's spans, each under its own service.name, kept in memory."""
    exporter = InMemorySpanExporter()

    def provider(settings, service: str) -> TracerProvider:
        sdk = TracerProvider(resource=Resource.create({"service.name": service}))
        sdk.add_span_processor(SimpleSpanProcessor(exporter))
        return sdk

    monkeypatch.setattr(tracing, "provider", provider)
    return exporter


async def forward(broker, record) -> None:
    """What Kafka does between two services: the record, headers and all, reaches the next one.
    (Published within the trace its traceparent names, as the producer's span was.)"""
    headers = {k: v.decode() for k, v in record.headers}
    token = otel_context.attach(TraceContextTextMapPropagator().extract(headers))
    try:
        await publish_record(broker, codec.Record(record.topic, record.key, record.value, headers))
    finally:
        otel_context.detach(token)


def value(obs, name: str, **labels: str) -> float:
    return obs.registry.get_sample_value(name, labels) or 0.0


async def test_one_submission_is_one_trace_across_the_four_services_and_is_counted(
        build_app, artifact, tmp_path, spans):
    people = People(tmp_path)
    validator, policy = build_app("validator"), build_app("policy")
    notifier, deployer = build_app("review_notifier", **people.settings), build_app("deployer")
    passed = capture(validator.broker, topics.CHECKS_PASSED)
    requested = capture(policy.broker, topics.REVIEW_REQUESTED)
    decided = capture(notifier.broker, topics.REVIEW_DECIDED)
    deployed = capture(deployer.broker, topics.DEPLOYMENT_SUCCEEDED)
    # Below the bar of 0.9: a person (alice) must approve.
    cand = f.candidate(artifact_uri=artifact.path.as_uri(), artifact_sha256=artifact.sha256)
    event = f.submitted(f.submission(cand, metrics={"accuracy": 0.85}, submitter="carol"))
    async with running(validator.broker, policy.broker, notifier.broker, deployer.broker):
        v, p, n, d = validator.broker, policy.broker, notifier.broker, deployer.broker  # patched in place
        await publish(v, event)
        assert len(passed.records) == 1
        await forward(p, passed.records[0])
        assert len(requested.records) == 1
        await forward(n, requested.records[0])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=notifier.api), base_url="http://r") as http:
            vote = await http.post(f"/reviews/{event.submission_id}/decision", headers=people.auth("alice"),
                                   json={"decision": "approve", "reason": "looked at it"})
            assert vote.status_code == 200, vote.text
            metrics_page = await http.get("/metrics")
        await settle(n)  # kafka mode: the capture has read what the vote produced
        assert len(decided.records) == 1
        otel_context.attach(otel_context.Context())  # nothing of the test's own context carries over
        await forward(d, passed.records[0])
        await forward(d, decided.records[0])
        assert len(deployed.records) == 1

    finished = spans.get_finished_spans()
    by_service = {s.resource.attributes["service.name"] for s in finished}
    assert by_service == set(SERVICES)
    assert len({s.context.trace_id for s in finished}) == 1, "one submission, one trace"
    # The submission's time travelled with it: the decision and the deployment are timed from it.
    assert SUBMITTED_AT in dict(decided.records[0].headers)
    labels = {"workflow": "test-policy"}
    assert value(validator.obs, "signoff_submissions_total", **labels, outcome="passed") == 1
    assert value(policy.obs, "signoff_reviews_requested_total", **labels) == 1
    assert value(notifier.obs, "signoff_decisions_total", **labels, outcome="approved", mode="human") == 1
    assert value(notifier.obs, "signoff_submission_to_decision_seconds_count", **labels, outcome="approved",
                 mode="human") == 1
    assert value(deployer.obs, "signoff_deployments_total", outcome="succeeded") == 1
    assert value(deployer.obs, "signoff_submission_to_deployment_seconds_count") == 1
    assert value(validator.obs, "signoff_artifact_bytes_hashed_total", scheme="file") == len(b"onnx weights")
    assert value(validator.obs, "faststream_received_messages_total", app_name="signoff-validator",
                 broker="kafka", handler=topics.MODEL_SUBMITTED) == 1
    # The review-notifier serves its metrics beside its API; the review is no longer pending.
    assert metrics_page.status_code == 200
    assert "signoff_reviews_pending 0.0" in metrics_page.text


async def test_an_untrusted_record_naming_a_submission_files_no_trace_nor_time_under_it(build_app, tmp_path):
    """An unsigned record on review.requested naming a pending submission, with a traceparent and a
    submitted time of its writer's choosing, is dead-lettered; the vote cast over HTTP afterwards is
    emitted in the submission's own trace and not timed from the forged time."""
    people = People(tmp_path)
    notifier = build_app("review_notifier", **people.settings)
    decided = capture(notifier.broker, topics.REVIEW_DECIDED)
    dead = capture(notifier.broker, topics.dlq(topics.REVIEW_REQUESTED))
    request = f.review_requested(f.submitted(f.submission(f.candidate(), submitter="carol")))
    forged_trace, forged_time = "0badc0de" * 4, (datetime.now(UTC) - timedelta(days=300)).isoformat()
    async with running(notifier.broker) as br:
        await publish(br, request)
        await publish_record(br, codec.Record(topics.REVIEW_REQUESTED, b"fraud-detector", b"{}", {
            "ce_id": "junk", "ce_type": "review.requested", "ce_subject": str(request.submission_id),
            "traceparent": f"00-{forged_trace}-00f067aa0ba902b7-01", SUBMITTED_AT: forged_time}))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=notifier.api), base_url="http://r") as http:
            vote = await http.post(f"/reviews/{request.submission_id}/decision", headers=people.auth("alice"),
                                   json={"decision": "approve", "reason": "ok"})
            assert vote.status_code == 200, vote.text
        await settle(notifier.broker)  # kafka mode: the captures have read what the vote produced
    assert len(dead.records) == 1 and len(decided.records) == 1
    headers = {k: v.decode() for k, v in decided.records[0].headers}
    assert forged_trace not in headers["traceparent"]
    assert headers.get(SUBMITTED_AT) != forged_time
    assert value(notifier.obs, "signoff_submission_to_decision_seconds_sum", workflow="test-policy",
                 outcome="approved", mode="human") < 86_400


async def test_dead_letters_are_counted_by_topic_and_reason(build_app):
    validator = build_app("validator")
    async with running(validator.broker) as br:
        await publish_raw(br, topics.MODEL_SUBMITTED, b"{not json")
    assert value(validator.obs, "signoff_dead_letters_total", topic=topics.MODEL_SUBMITTED, reason="invalid") == 1
    assert value(validator.obs, "signoff_dead_letters_total", topic=topics.MODEL_SUBMITTED, reason="refused") == 0


async def test_readyz_is_503_when_nothing_listens_at_the_bootstrap_address(build_app):
    port = free_port()  # nothing listens here
    validator = build_app("validator", kafka_bootstrap_servers=f"127.0.0.1:{port}", kafka_security_protocol="PLAINTEXT",
                          kafka_sasl_username=None, kafka_sasl_password=None, kafka_ssl_cafile=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=validator.http.app), base_url="http://v") as http:
        ready, alive, metrics = await http.get("/readyz"), await http.get("/healthz"), await http.get("/metrics")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert f"127.0.0.1:{port}" in checks["broker"] and checks["broker"] != "ok"
    assert checks["workflows"] == "ok"  # opened by build_app: only the broker and subscriptions are missing
    assert checks["subscriptions"].startswith("not assigned yet")
    assert alive.status_code == 200
    assert metrics.status_code == 200 and "signoff_dead_letters_total" in metrics.text


async def test_a_taken_port_stops_the_service_naming_the_variable(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        settings = ValidatorSettings(http_port=taken.getsockname()[1], kafka_security_protocol="PLAINTEXT",
                                     workflows=tmp_path, download_dir=tmp_path / "d")
        with pytest.raises(PortUnavailable, match="VALIDATOR_HTTP_PORT"):
            await build_validator(settings).http.start()  # the first start-up hook
