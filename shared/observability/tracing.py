"""Traces: one submission is one trace across the services.

FastStream's KafkaTelemetryMiddleware makes the spans and carries the W3C `traceparent` (and
`tracestate`, `baggage`) in each record's headers; an event a handler emits continues the trace of
the event it handles. Two places have no trace to continue, and here get one derived from the
submission id (its 128 bits are the trace id), so the trace is still the submission's:
- a record that arrives without `traceparent` (`signoff submit`, a plain Kafka client): `Carry`
  adds the derived one before the telemetry middleware reads the headers;
- an event emitted outside any handler (a vote over HTTP, a review timing out, a canary stage):
  `emitting` makes the last span seen for that submission (else the derived one) its parent.
The same memory keeps when each submission was made (`signoff_submitted_at` header, from the
model.submitted's `ce_time`) for the time-to-decision and time-to-deployment histograms.

The memory learns from a record only once its handler returned: the signature was verified (the
decoder runs inside the handler call) and the event handled. A record dead-lettered as untrusted
or invalid leaves nothing behind, so an unsigned record naming a real submission cannot file the
trace or the time the submission's later events (a vote over HTTP) are emitted under.

`traceparent` and `signoff_submitted_at` are not signed (shared/signing.py covers `ce_*` and
content-type): a signed record sent again with others (operators may write the consumed topics to
re-drive) can still misfile a span or skew a histogram, never change a decision. The submitted
time a header gives is bounded by the record's own signed `ce_time`: a submission comes before
what follows from it.

Spans are exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT or _TRACES_ENDPOINT is set (the
exporter reads the other standard OTEL_EXPORTER_OTLP_* variables itself); otherwise no tracer
provider is made and the spans are FastStream's no-op ones, which still carry the context on.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream._internal.middlewares import BaseMiddleware
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import topics

SUBMITTED_AT = "signoff_submitted_at"  # header: when the submission was made (ISO 8601, UTC)
_PROPAGATOR = TraceContextTextMapPropagator()
_SUBMITTED: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("signoff_submitted", default=None)


class TracingSettings(BaseSettings):
    """The standard OpenTelemetry variables that turn export on (no prefix: they are OTel's own)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, max_length=2000, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT",
                                                                     "otel_exporter_otlp_endpoint"),
        description="OTLP/HTTP collector base URL (…/v1/traces is added); set: traces are exported")
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, max_length=2000, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                                                                     "otel_exporter_otlp_traces_endpoint"),
        description="OTLP/HTTP traces URL, used as is; set: traces are exported")
    otel_sdk_disabled: bool = Field(
        default=False, validation_alias=AliasChoices("OTEL_SDK_DISABLED", "otel_sdk_disabled"),
        description="true: no export even when an endpoint is set")

    @property
    def exporting(self) -> bool:
        return not self.otel_sdk_disabled and bool(self.otel_exporter_otlp_endpoint
                                                   or self.otel_exporter_otlp_traces_endpoint)


def provider(settings: TracingSettings, service: str) -> trace.TracerProvider | None:
    """An SDK provider exporting over OTLP/HTTP in batches, or None (FastStream then uses the global
    provider: a no-op unless the embedding program set one). Tests replace this function."""
    if not settings.exporting:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    sdk = TracerProvider(resource=Resource.create({"service.name": f"signoff-{service}"}))
    sdk.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint, headers, TLS: OTEL_* variables
    return sdk


class _Telemetry(KafkaTelemetryMiddleware):
    """FastStream's telemetry for records, none for a follower's batch (shared.broker.follow).
    FastStream would open a new trace for a batch, linked to its records' traces: a batch holds
    many submissions' records, read only to keep a view current, and each submission keeps one
    trace (the records' own spans are made where they are consumed in a group)."""

    def __call__(self, msg: Any | None, /, *, context: Any) -> Any:
        if isinstance(msg, (list, tuple)):
            return BaseMiddleware(msg, context=context)
        return super().__call__(msg, context=context)


def telemetry(settings: TracingSettings, service: str) -> KafkaTelemetryMiddleware:
    # FastStream's own OTel metrics are off: Prometheus (FastStream's middleware) has them already.
    return _Telemetry(tracer_provider=provider(settings, service), include_messages_counters=False)


def derived(submission_id: uuid.UUID) -> SpanContext:
    """The submission's trace: its id's 128 bits; a parent span id derived from it."""
    span_id = int.from_bytes(hashlib.sha256(submission_id.bytes).digest()[:8], "big") or 1
    return SpanContext(trace_id=submission_id.int or 1, span_id=span_id, is_remote=True,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED))


class Memory:
    """Per submission (the most recent `size`): the last span context seen, and when it was submitted."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, tuple[SpanContext | None, datetime | None]] = OrderedDict()

    def remember(self, subject: str, span: SpanContext | None = None, submitted: datetime | None = None) -> None:
        old_span, old_submitted = self._seen.pop(subject, (None, None))
        self._seen[subject] = (span or old_span, submitted or old_submitted)
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)

    def span(self, subject: str) -> SpanContext | None:
        return self._seen.get(subject, (None, None))[0]

    def submitted(self, subject: str) -> datetime | None:
        return self._seen.get(subject, (None, None))[1]


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time with a zone, not in the future nor older than a year; else None."""
    if not text or len(text) > 64:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    now = datetime.now(UTC)
    if at.tzinfo is None or not now - timedelta(days=366) <= at <= now + timedelta(minutes=5):
        return None
    return at


def submitted_time(topic: str | None, headers: dict[str, str]) -> datetime | None:
    """When the submission was made, as a record says: a model.submitted's own `ce_time` (signed);
    else the `signoff_submitted_at` header (not signed) if it is not later than the record's own
    signed `ce_time` (a few minutes of clock skew allowed)."""
    at = parse_time(headers.get("ce_time"))
    if topic == topics.MODEL_SUBMITTED:
        return at
    submitted = parse_time(headers.get(SUBMITTED_AT))
    if submitted is not None and at is not None and submitted > at + _SKEW:
        return None
    return submitted


_SKEW = timedelta(minutes=5)


class Carry(BaseMiddleware):
    """Consumed records: add the derived `traceparent` when there is none (before the telemetry
    middleware reads it), and, once the record verified and was handled, note the submission's time
    and trace (Memory) for what the service emits later. Runs before the telemetry middleware."""

    memory: Memory  # set by `carry`
    _heard: tuple[str, SpanContext | None, datetime | None] | None = None  # this record's, not yet kept

    async def on_receive(self) -> None:
        self._heard = None
        raw = self.msg
        if raw is None or not hasattr(raw, "headers"):
            return
        if str(getattr(raw, "topic", "")).endswith(".dlq"):
            return  # a dead letter is a record refused: nothing is learnt from it (a reader of .dlq verifies nothing)
        headers = {name: value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                   for name, value in raw.headers or ()}
        try:
            subject = uuid.UUID(headers.get("ce_subject", ""))
        except ValueError:
            return  # not an event of ours: the decoder dead-letters it
        if "traceparent" not in headers:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier, trace.set_span_in_context(NonRecordingSpan(derived(subject))))
            raw.headers = [*(raw.headers or ()), ("traceparent", carrier["traceparent"].encode())]
            headers |= carrier
        span = trace.get_current_span(_PROPAGATOR.extract(headers)).get_span_context()
        self._heard = (str(subject), span if span.is_valid else None,
                       submitted_time(getattr(raw, "topic", None), headers))

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        """The handler call (the signature check, the parsing, the handler): the submission's time
        is known to what the handler emits; the memory keeps this record's only if it returned."""
        heard = self._heard
        token = _SUBMITTED.set(heard[2] if heard else None)
        before = self.memory.span(heard[0]) if heard else None
        try:
            result = await call_next(msg)
        finally:
            _SUBMITTED.reset(token)
        if heard is not None:
            subject, span, submitted = heard
            # An event the handler emitted remembered its own span (`emitting`), a child of this
            # record's: later events keep that parent.
            emitted = self.memory.span(subject) is not before
            self.memory.remember(subject, None if emitted else span, submitted)
        return result


def carry(memory: Memory) -> type[Carry]:
    return type("Carry", (Carry,), {"memory": memory})


@contextlib.contextmanager
def emitting(memory: Memory, submission_id: uuid.UUID) -> Iterator[tuple[dict[str, str], datetime | None]]:
    """Around publishing an event: outside a handler, its parent is the submission's trace. Yields
    the headers to add (SUBMITTED_AT when known) and the submission's time."""
    subject = str(submission_id)
    current = trace.get_current_span().get_span_context()
    token: Any = None
    if current.is_valid:
        memory.remember(subject, current)
    else:
        parent = memory.span(subject) or derived(submission_id)
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    submitted = _SUBMITTED.get() or memory.submitted(subject)
    try:
        yield ({SUBMITTED_AT: submitted.isoformat()} if submitted else {}), submitted
    finally:
        if token is not None:
            otel_context.detach(token)
