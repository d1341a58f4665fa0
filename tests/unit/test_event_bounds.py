"""No record can stop a service: every poison shape is a BadEvent from `codec.decode` (dead-lettered
by consumers) and None from `reader.decode` (skipped by readers), each bound holds at its limit and
refuses one past it naming the field, and the largest valid events fit in a Kafka record."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from aiokafka.errors import (
    InvalidTopicError,
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
    UnsupportedVersionError,
)
from pydantic import ValidationError

from shared import codec, reader, topics
from shared.broker import NotYet, transient
from shared.codec import MAX_DEPTH, MAX_EVENT_BYTES, MAX_NUMBER_CHARS, BadEvent
from shared.events import (
    BY_TOPIC,
    Candidate,
    CheckResult,
    ChecksPassed,
    DeploymentSucceeded,
    ModelSubmitted,
    PolicyRef,
    Production,
    ReviewDecided,
    ReviewRequested,
    Submission,
)
from shared.values import MAX_GROUP_METRICS, MAX_GROUPS, MAX_METRICS, MAX_TEXT
from tests.unit import factories as f

SOURCE = "/signoff/test"


def text(event) -> str:
    return codec.encode(event, SOURCE).value.decode()


def deployed_text() -> str:
    return text(f.deployment_succeeded())


def submitted_with(**submission: object) -> bytes:
    data = json.loads(text(f.submitted()))
    data["submission"].update(submission)
    return json.dumps(data).encode()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# The shapes found in the wild or built to hurt, on the topics the services replay at start.
POISON: dict[str, tuple[str, bytes, str]] = {
    "5,000-digit integer": (
        topics.DEPLOYMENT_SUCCEEDED,
        deployed_text().replace('"accuracy":0.95', '"accuracy":' + "9" * 5000).encode(),
        r"metrics\.accuracy: a number of 5000 characters"),
    "5,000-digit schema_version": (
        topics.DEPLOYMENT_SUCCEEDED,
        deployed_text().replace(f'"schema_version":{DeploymentSucceeded.class_version}',
                                '"schema_version":' + "1" * 5000).encode(),
        r"schema_version: a number of 5000 characters"),
    "10,000-deep nesting in a field": (
        topics.DEPLOYMENT_SUCCEEDED,
        deployed_text().replace('"target":"model-store"', f'"target":{nested(10_000)}').encode(),
        "nested far deeper than 32 levels"),
    "10,000-deep nesting alone": (topics.DEPLOYMENT_ROLLED_BACK, nested(10_000).encode(), "nested far deeper"),
    "40-deep nesting": (
        topics.DEPLOYMENT_SUCCEEDED,
        deployed_text().replace('"target":"model-store"', f'"target":{nested(40)}').encode(),
        r"target(\.0){31}: nested deeper than 32 levels"),
    "huge number out of range": (
        topics.DEPLOYMENT_SUCCEEDED,
        deployed_text().replace('"accuracy":0.95', '"accuracy":1e400').encode(),
        r"metrics\.accuracy: 1e400 is not a finite number"),
    "huge string": (
        topics.MODEL_SUBMITTED, submitted_with(submitter="x" * 900_000),
        r"submission\.submitter: String should have at most 512 characters"),
    "record over the size limit": (
        topics.DEPLOYMENT_REVOKED, b'{"reason": "' + b"x" * MAX_EVENT_BYTES + b'"}',
        f"the record is {MAX_EVENT_BYTES + 14} bytes; an event is at most {MAX_EVENT_BYTES} bytes"),
    "too many metrics": (
        topics.MODEL_SUBMITTED, submitted_with(metrics={f"m{i}": 0.5 for i in range(1000)}),
        r"submission\.metrics: Value error, 1000 metrics, at most 256: submit the metrics the workflow checks"),
    "too many groups": (
        topics.MODEL_SUBMITTED, submitted_with(group_metrics={f"g{i}": {"tpr": 0.5} for i in range(1000)}),
        r"submission\.group_metrics: Value error, 1000 groups, at most 64"),
    "thousands of unknown fields": (
        topics.DEPLOYMENT_SUCCEEDED,
        deployed_text().replace('"target"', "".join(f'"x{i}":1,' for i in range(5000)) + '"target"').encode(),
        r"x0: Extra inputs are not permitted; .*; and 4990 more$"),
}


@pytest.mark.parametrize("shape", POISON)
def test_a_poison_record_is_a_bad_event_naming_where(shape):
    topic, value, reason = POISON[shape]
    with pytest.raises(BadEvent, match=reason):
        codec.decode(topic, value)


@pytest.mark.parametrize("shape", POISON)
def test_a_reader_skips_a_poison_record(shape):
    topic, value, _ = POISON[shape]
    headers = [("ce_id", b"1"), ("ce_type", BY_TOPIC[topic].type.encode())]  # only the body is bad
    assert reader.decode(SimpleNamespace(topic=topic, key=b"fraud-detector", value=value, headers=headers)) is None


def test_a_reader_still_decodes_a_good_record_beside_them():
    event = f.deployment_succeeded()
    record = codec.encode(event, SOURCE)
    headers = [(k, v.encode()) for k, v in record.headers.items()]
    found = reader.decode(SimpleNamespace(topic=event.topic, key=record.key, value=record.value, headers=headers))
    assert found == event


# --- each bound: at the limit it passes, one past it is refused --------------------------------------

def test_json_nesting_depth():
    ok, over = nested(MAX_DEPTH - 1), nested(MAX_DEPTH)  # inside the event's own object
    assert codec.parse(f'{{"x": {ok}}}'.encode()) == {"x": json.loads(ok)}
    with pytest.raises(BadEvent, match="nested deeper than 32 levels"):
        codec.parse(f'{{"x": {over}}}'.encode())


def test_every_event_nests_well_within_the_depth():
    def depth(node) -> int:
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        return 1 + max((depth(c) for c in children), default=0) if isinstance(node, dict | list) else 0
    assert max(depth(json.loads(text(e))) for e in f.every_event()) <= 4 < MAX_DEPTH


@pytest.mark.parametrize("literal", ["1" * MAX_NUMBER_CHARS, "-" + "1" * (MAX_NUMBER_CHARS - 1),
                                     "-1.2345678901234567e-300", "1e308"])
def test_numbers_up_to_the_length_limit_parse(literal):
    assert codec.parse(f'{{"n": {literal}}}'.encode())["n"] == json.loads(literal)


@pytest.mark.parametrize("literal", ["1" * (MAX_NUMBER_CHARS + 1), "0." + "1" * (MAX_NUMBER_CHARS - 1)])
def test_a_number_one_character_too_long_is_refused(literal):
    with pytest.raises(BadEvent, match=f"n: a number of {MAX_NUMBER_CHARS + 1} characters"):
        codec.parse(f'{{"n": {literal}}}'.encode())


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant):
    with pytest.raises(BadEvent, match=f"a.1: {constant} is not a finite number"):
        codec.parse(f'{{"a": [1, {constant}]}}'.encode())


def test_the_record_size():
    padding = MAX_EVENT_BYTES - len(b'{"x": ""}')
    assert codec.parse(b'{"x": "' + b"y" * padding + b'"}') == {"x": "y" * padding}
    with pytest.raises(BadEvent, match="an event is at most"):
        codec.parse(b'{"x": "' + b"y" * (padding + 1) + b'"}')


def metrics(n: int) -> dict[str, float]:
    return {f"m{i}": 0.5 for i in range(n)}


def test_the_number_of_metrics():
    assert len(f.submission(metrics=metrics(MAX_METRICS)).metrics) == MAX_METRICS
    with pytest.raises(ValidationError, match="257 metrics, at most 256"):
        f.submission(metrics=metrics(MAX_METRICS + 1))
    with pytest.raises(ValidationError, match=r"metrics\n.*257 metrics, at most 256"):
        DeploymentSucceeded.model_validate({**json.loads(deployed_text()), "metrics": metrics(MAX_METRICS + 1)})


def test_the_number_of_groups_and_of_metrics_per_group():
    groups = {f"g{i}": metrics(MAX_GROUP_METRICS) for i in range(MAX_GROUPS)}
    assert len(f.submission(group_metrics=groups).group_metrics) == MAX_GROUPS
    with pytest.raises(ValidationError, match="65 groups, at most 64: report the groups the fairness checks"):
        f.submission(group_metrics={**groups, "one-more": {"tpr": 0.5}})
    with pytest.raises(ValidationError, match=r"group_metrics\.g0\n.*33 metrics in one group, at most 32"):
        f.submission(group_metrics={"g0": metrics(MAX_GROUP_METRICS + 1)})


def test_strings_are_bounded_naming_the_field():
    data = json.loads(text(f.submitted()))
    data["submission"]["candidate"]["data_version"] = "d" * 513
    with pytest.raises(BadEvent, match=r"submission\.candidate\.data_version: String should have at most 512"):
        codec.decode(topics.MODEL_SUBMITTED, json.dumps(data).encode())


def test_free_text_is_clipped_not_refused():
    """Services compose reasons and messages from other texts: a long one must never make an event
    invalid (or too large to publish)."""
    decided = ReviewDecided.model_validate({**json.loads(text(f.decided())), "reason": "r" * (MAX_TEXT + 1000)})
    assert len(decided.reason) == MAX_TEXT and decided.reason.endswith("…")
    result = CheckResult(name="security", passed=False, message="m" * 10_000, measured="x" * 10_000)
    assert len(result.message) == MAX_TEXT and len(result.measured) == 512
    assert CheckResult(name="ok", passed=True, message="m" * MAX_TEXT).message == "m" * MAX_TEXT


# --- what is emitted fits in a record, or fails at once ----------------------------------------------

def padded(prefix: str, n: int) -> str:
    return prefix.ljust(n, "x")


def largest_submission() -> Submission:
    figure = -1.2345678901234567e-300  # the longest shortest-form double: 24 characters
    cand = Candidate(model=padded("m", 64), version=padded("v", 64), artifact_uri=padded("file:///a", 512),
                     artifact_sha256=f.SHA, data_version=padded("d", 512), code_commit="a" * 64)
    return Submission(
        candidate=cand,
        metrics={padded(f"m{i}-", 64): figure for i in range(MAX_METRICS)},
        group_metrics={padded(f"g{g}-", 512): {padded(f"m{i}-", 64): figure for i in range(MAX_GROUP_METRICS)}
                       for g in range(MAX_GROUPS)},
        submitter=padded("s", 512), training_run_id=padded("r", 512), model_card_uri=padded("file:///c", 512),
        evaluation_uri=padded("file:///e", 512))


def test_the_largest_submission_and_the_review_it_leads_to_fit_in_a_record():
    """A checks step with a minimum and a regression bound on every metric, a production with as
    many metrics, fifty approvers: the largest review.requested is still far under the limit."""
    submitted = ModelSubmitted(submission_id=uuid.uuid4(), submission=largest_submission())
    names = list(submitted.submission.metrics)
    results = tuple(CheckResult(name=f"{kind}:{m}", passed=True, measured=0.5, threshold=0.25,
                                message=f"{m} 0.5 vs production 1.2.0 0.49: worse by 0.01, tolerance 0.02")
                    for kind in ("metric", "regression") for m in names)
    passed = ChecksPassed.caused_by(submitted, submission=submitted.submission, results=results)
    production = Production(candidate=submitted.submission.candidate, metrics=submitted.submission.metrics,
                            submission_id=uuid.uuid4())
    review = ReviewRequested.caused_by(
        passed, submission=passed.submission, results=results, approvers=tuple(padded(f"a{i}", 64) for i in range(50)),
        deadline=passed.occurred_at + timedelta(hours=4), policy=f.POLICY, reason="r" * 10_000,
        production=production)
    sizes = {e.type: len(codec.encode(e, SOURCE).value) for e in (submitted, passed, review)}
    assert sizes["signoff.review.requested"] < MAX_EVENT_BYTES // 2, sizes


def test_an_event_too_large_for_a_record_is_refused_when_encoded():
    cause = f.submitted()
    results = tuple(CheckResult(name=f"c{i}", passed=True, message="m" * MAX_TEXT) for i in range(300))
    event = ChecksPassed.caused_by(cause, submission=cause.submission, results=results)
    with pytest.raises(codec.TooLarge, match=rf"signoff.checks.passed {event.event_id} would be \d+ bytes, over "
                                             f"the limit of {MAX_EVENT_BYTES} bytes"):
        codec.encode(event, SOURCE)


def test_a_reason_citing_an_earlier_reason_stays_valid():
    """The policy's 'rejected before' reason quotes the earlier one: clipped, never refused."""
    earlier = "r" * MAX_TEXT
    decided = ReviewDecided.caused_by(f.submitted(), candidate=f.candidate(), outcome="rejected", mode="automatic",
                                      decided_by="policy:x/rejected_before", reason=f"rejected before: {earlier}",
                                      policy=PolicyRef(name="x", rule="rejected_before", digest="a" * 64))
    assert len(decided.reason) == MAX_TEXT


# --- which Kafka errors are retried without limit ----------------------------------------------------

@pytest.mark.parametrize("error", [KafkaConnectionError, KafkaTimeoutError, NotLeaderForPartitionError,
                                   LeaderNotAvailableError, RequestTimedOutError])
def test_broker_away_leader_moving_and_timeouts_are_transient(error):
    assert transient(error())


@pytest.mark.parametrize("error", [MessageSizeTooLargeError, RecordTooLargeError, InvalidTopicError,
                                   UnsupportedVersionError, TopicAuthorizationFailedError])
def test_errors_that_fail_the_same_way_every_time_are_not(error):
    assert not transient(error())


def test_only_kafka_errors_and_not_yet_are_transient():
    assert not transient(TimeoutError()) and not transient(ValueError())
    assert transient(NotYet("review.decided is not read to its end"))
