"""Signoff's own Prometheus metrics, one registry per app (FastStream's `faststream_*` metrics go in
the same registry). What an emitted event counts as is the pure `observations`; the Metrics class
only holds the prometheus_client objects.

Label values are bounded: a workflow name (the workflow files name them), an outcome from a fixed
set, a topic, a dead-letter reason's kind (never its text, which names the event).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.events import (
    ChecksFailed,
    ChecksPassed,
    DeploymentFailed,
    DeploymentSucceeded,
    Event,
    ReviewDecided,
    ReviewRequested,
)

# Seconds from a submission to its decision or deployment: a few seconds (automatic) to days (people).
LATENCY_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)

# The kind of a dead letter, from the start of its reason (shared/broker.py writes them).
REASON_KINDS = {"untrusted event": "untrusted", "invalid event": "invalid", "refused": "refused",
                "undeliverable": "undeliverable", "handler failed": "handler_failed"}

# Every metric name Signoff defines (the Grafana dashboard's test reads this).
NAMES = ("signoff_submissions_total", "signoff_reviews_requested_total", "signoff_decisions_total",
         "signoff_deployments_total", "signoff_submission_to_decision_seconds",
         "signoff_submission_to_deployment_seconds", "signoff_dead_letters_total", "signoff_consumer_lag",
         "signoff_reviews_pending", "signoff_review_oldest_pending_seconds", "signoff_artifact_bytes_hashed_total")


def reason_kind(reason: str) -> str:
    """untrusted, invalid, refused, undeliverable, handler_failed, or other."""
    for prefix, kind in REASON_KINDS.items():
        if reason.startswith(prefix):
            return kind
    return "other"


@dataclass(frozen=True)
class Observation:
    metric: str  # an attribute of Metrics
    labels: dict[str, str]
    value: float = 1.0


def _workflow(event: Event) -> str:
    ref = getattr(event, "workflow", None) or getattr(event, "policy", None)
    return ref.name if ref is not None else "none"


def observations(event: Event, submitted_at: datetime | None) -> list[Observation]:
    """What emitting `event` counts; `submitted_at` (when known) times decisions and deployments."""
    if isinstance(event, ChecksPassed | ChecksFailed):
        outcome = "passed" if isinstance(event, ChecksPassed) else "failed"
        return [Observation("submissions", {"workflow": _workflow(event), "outcome": outcome})]
    if isinstance(event, ReviewRequested):
        return [Observation("reviews_requested", {"workflow": _workflow(event)})]
    if isinstance(event, ReviewDecided):
        labels = {"workflow": _workflow(event), "outcome": event.outcome, "mode": event.mode}
        out = [Observation("decisions", labels)]
        if submitted_at is not None:
            out.append(Observation("to_decision", labels, _seconds(submitted_at, event.occurred_at)))
        return out
    if isinstance(event, DeploymentSucceeded | DeploymentFailed):
        outcome = "succeeded" if isinstance(event, DeploymentSucceeded) else "failed"
        out = [Observation("deployments", {"outcome": outcome})]
        if submitted_at is not None and outcome == "succeeded":
            out.append(Observation("to_deployment", {}, _seconds(submitted_at, event.occurred_at)))
        return out
    # Rollbacks, revocations, progress, escalations: counted by faststream_published_messages_total.
    return []


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


class Metrics:
    """Signoff's metrics in `registry`; `collect_also` adds what is read at scrape time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.submissions = Counter("signoff_submissions", "Submissions checked, by workflow and outcome",
                                   ["workflow", "outcome"], registry=registry)
        self.reviews_requested = Counter("signoff_reviews_requested", "Reviews asked of people, by workflow",
                                         ["workflow"], registry=registry)
        self.decisions = Counter("signoff_decisions", "Decisions, by workflow, outcome and mode",
                                 ["workflow", "outcome", "mode"], registry=registry)
        self.deployments = Counter("signoff_deployments", "Deployments, by outcome", ["outcome"], registry=registry)
        self.to_decision = Histogram("signoff_submission_to_decision_seconds", "Time from submission to decision",
                                     ["workflow", "outcome", "mode"], buckets=LATENCY_BUCKETS, registry=registry)
        self.to_deployment = Histogram("signoff_submission_to_deployment_seconds",
                                       "Time from submission to deployment", buckets=LATENCY_BUCKETS,
                                       registry=registry)
        self.dead_letters = Counter("signoff_dead_letters", "Events dead-lettered, by topic and reason kind",
                                    ["topic", "reason"], registry=registry)
        self.consumer_lag = Gauge("signoff_consumer_lag", "Records behind the partition's end, per consumer group "
                                  "(refreshed at each scrape)", ["group", "topic", "partition"], registry=registry)

    def observe(self, event: Event, submitted_at: datetime | None) -> None:
        for o in observations(event, submitted_at):
            metric = getattr(self, o.metric)
            child = metric.labels(**o.labels) if o.labels else metric
            if isinstance(metric, Counter):
                child.inc(o.value)
            else:
                child.observe(o.value)

    def dead_lettered(self, topic: str, reason: str) -> None:
        self.dead_letters.labels(topic=topic, reason=reason_kind(reason)).inc()

    def set_lag(self, lags: Iterable[tuple[str, str, int, int]]) -> None:
        """The lag of every (group, topic, partition) now assigned; others are dropped."""
        self.consumer_lag.clear()
        for group, topic, partition, lag in lags:
            self.consumer_lag.labels(group=group, topic=topic, partition=str(partition)).set(lag)


class ReviewGauges(Collector):
    """signoff_reviews_pending and the oldest pending review's age, read from `pending()` at scrape
    time (the review-notifier's store): (requested_at of each open review)."""

    def __init__(self, pending: Callable[[], list[datetime]], now: Callable[[], datetime]) -> None:
        self.pending, self.now = pending, now

    def collect(self) -> Iterable[GaugeMetricFamily]:
        opened = self.pending()
        oldest = max(((self.now() - at).total_seconds() for at in opened), default=0.0)
        yield GaugeMetricFamily("signoff_reviews_pending", "Reviews waiting for a decision", value=len(opened))
        yield GaugeMetricFamily("signoff_review_oldest_pending_seconds", "Age of the oldest pending review",
                                value=max(0.0, oldest))


class BytesHashed(Collector):
    """signoff_artifact_bytes_hashed_total, read from the service's ArtifactSource at scrape time."""

    def __init__(self, by_scheme: Callable[[], dict[str, int]]) -> None:
        self.by_scheme = by_scheme

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily("signoff_artifact_bytes_hashed", "Artifact bytes read and hashed, by scheme",
                                     labels=["scheme"])
        for scheme, count in sorted(self.by_scheme().items()):
            family.add_metric([scheme], count)
        yield family
