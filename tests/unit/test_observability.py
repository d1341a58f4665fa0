"""Observability's pure parts: what an emitted event counts, a dead letter's reason kind, the trace a
record without one gets, the submission time a header may carry; and the Grafana dashboard names
only metrics the code defines."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from shared import signing, topics
from shared.events import ReviewDecided
from shared.observability import tracing
from shared.observability.metrics import NAMES, Metrics, observations, reason_kind
from tests.unit import factories as f

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "signoff.json"


@pytest.mark.parametrize(("reason", "kind"), [
    ("untrusted event: unknown key", "untrusted"), ("invalid event: body is not JSON", "invalid"),
    ("refused: no such model", "refused"), ("handler failed 5 times: KeyError()", "handler_failed"),
    ("undeliverable: too large", "undeliverable"), ("something else", "other")])
def test_a_dead_letter_is_counted_by_the_kind_of_its_reason(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind
    metrics = Metrics(CollectorRegistry())
    metrics.dead_lettered("model.submitted", reason)
    assert metrics.registry.get_sample_value("signoff_dead_letters_total",
                                             {"topic": "model.submitted", "reason": kind}) == 1


def test_a_decision_is_counted_and_timed_from_the_submission() -> None:
    decision = f.decided(f.submitted())
    assert isinstance(decision, ReviewDecided)
    submitted = decision.occurred_at - timedelta(seconds=90)
    seen = observations(decision, submitted)
    labels = {"workflow": decision.policy.name, "outcome": decision.outcome, "mode": decision.mode}
    assert [(o.metric, o.labels, o.value) for o in seen] == [("decisions", labels, 1.0),
                                                              ("to_decision", labels, 90.0)]
    assert [o.metric for o in observations(decision, None)] == ["decisions"]  # time unknown: not timed


def test_a_record_without_traceparent_gets_the_trace_of_its_submission() -> None:
    subject = uuid.uuid4()
    record = ConsumerRecord(topics.CHECKS_PASSED, 0, 7, 0, 0, b"m", b"{}", None, 1, 2,
                            [("ce_subject", str(subject).encode())])
    memory = tracing.Memory()
    middleware = tracing.carry(memory)(record, context=None)
    asyncio.run(handled(middleware))
    traceparent = dict(record.headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == f"{subject.int:032x}"
    assert memory.span(str(subject)).trace_id == subject.int


async def handled(middleware: tracing.Carry, fails: BaseException | None = None) -> None:
    """As FastStream runs it: on_receive, then the handler call (signature check, parsing, handler)."""
    async def call(msg: object) -> None:
        if fails is not None:
            raise fails

    await middleware.on_receive()
    await middleware.consume_scope(call, None)


def test_a_record_refused_by_its_signature_check_leaves_no_trace_nor_time() -> None:
    """Carry runs before the signature check: an unsigned record naming a real submission, with a
    traceparent and a submitted time of its writer's choosing, must not become what the
    submission's later events (a vote over HTTP) are emitted under and timed from."""
    subject = uuid.uuid4()
    forged = (datetime.now(UTC) - timedelta(days=300)).isoformat()
    record = ConsumerRecord(topics.REVIEW_REQUESTED, 0, 7, 0, 0, b"m", b"{}", None, 1, 2,
                            [("ce_subject", str(subject).encode()), (tracing.SUBMITTED_AT, forged.encode()),
                             ("traceparent", f"00-{'0badc0de' * 4}-00f067aa0ba902b7-01".encode())])
    memory = tracing.Memory()
    with pytest.raises(signing.Untrusted):
        asyncio.run(handled(tracing.carry(memory)(record, context=None), signing.Untrusted("unsigned")))
    assert memory.span(str(subject)) is None and memory.submitted(str(subject)) is None
    asyncio.run(handled(tracing.carry(memory)(record, context=None)))  # the same, verified and handled
    assert memory.submitted(str(subject)) == datetime.fromisoformat(forged)


def test_a_submitted_time_later_than_the_records_own_signed_time_is_ignored() -> None:
    at = datetime.now(UTC) - timedelta(hours=1)
    headers = {"ce_time": at.isoformat(), tracing.SUBMITTED_AT: (at - timedelta(minutes=2)).isoformat()}
    assert tracing.submitted_time(topics.REVIEW_DECIDED, headers) == at - timedelta(minutes=2)
    later = {**headers, tracing.SUBMITTED_AT: (at + timedelta(minutes=30)).isoformat()}
    assert tracing.submitted_time(topics.REVIEW_DECIDED, later) is None
    assert tracing.submitted_time(topics.MODEL_SUBMITTED, later) == at  # its own ce_time, signed


def test_the_memory_is_bounded() -> None:
    memory = tracing.Memory(size=2)
    for name in "abc":
        memory.remember(name, submitted=datetime.now(UTC))
    assert memory.submitted("a") is None and memory.submitted("c") is not None


@pytest.mark.parametrize("text", ["", "yesterday", "2020-01-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00",
                                  "2026-01-01T00:00:00", "x" * 100])
def test_a_submission_time_header_out_of_bounds_is_ignored(text: str) -> None:
    assert tracing.parse_time(text) is None


def test_a_recent_submission_time_is_read() -> None:
    at = datetime.now(UTC) - timedelta(minutes=3)
    assert tracing.parse_time(at.isoformat()) == at


def test_no_tracer_provider_unless_an_otlp_endpoint_is_set() -> None:
    assert tracing.provider(tracing.TracingSettings(), "validator") is None
    assert tracing.provider(tracing.TracingSettings(otel_exporter_otlp_endpoint="http://collector:4318",
                                                    otel_sdk_disabled=True), "validator") is None
    made = tracing.provider(tracing.TracingSettings(otel_exporter_otlp_traces_endpoint="http://c:4318/v1/traces"),
                            "validator")
    assert made is not None and made.resource.attributes["service.name"] == "signoff-validator"
    made.shutdown()


FASTSTREAM = {"faststream_received_messages_total", "faststream_received_processed_messages_total",
              "faststream_received_processed_messages_duration_seconds", "faststream_published_messages_total",
              "faststream_published_messages_exceptions_total", "faststream_received_messages_in_process"}


def test_every_dashboard_expression_names_a_metric_the_code_defines() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert expressions
    defined = set(NAMES) | FASTSTREAM
    for expr in expressions:
        names = set(re.findall(r"\b(?:signoff|faststream)_[a-z_]+", expr))
        assert names, expr
        for name in names:
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert base in defined, f"{name} in {expr!r} is no metric Signoff or FastStream defines"
