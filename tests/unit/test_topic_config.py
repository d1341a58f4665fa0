"""The topics' layout, without a broker (shared/topic_config.py): retention parsing and its floor,
each topic's spec, and `differences`, which decides what makes a service refuse to start."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared import topics
from shared.settings import TopicSettings
from shared.topic_config import (
    DAY_MS,
    FOREVER,
    MAX_RETENTION_MS,
    RECORD_RETENTION_FLOOR_MS,
    Fix,
    TopicLayout,
    TopicState,
    differences,
    parse_retention,
)
from signoff.settings import ClientSettings

RECORD = "SIGNOFF_RECORD_RETENTION"
WEEK_MS = 7 * DAY_MS
AS_WANTED = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1", "min.insync.replicas": "1"}


def state(topic: str = topics.MODEL_SUBMITTED, partitions: int = 3, rf: int = 1, overridden=frozenset(AS_WANTED),
          **configs: str) -> TopicState:
    """A topic as the broker describes it; its configs set on the topic itself unless `overridden` says."""
    return TopicState(topic, partitions, rf, {**AS_WANTED, **{k.replace("_", "."): v for k, v in configs.items()}},
                      frozenset(overridden))


@pytest.mark.parametrize(("text", "ms"), [
    ("forever", FOREVER), ("FOREVER", FOREVER), ("-1", FOREVER), (" forever ", FOREVER),
    ("3650d", 3650 * DAY_MS), ("365d", RECORD_RETENTION_FLOOR_MS), ("8760h", 8760 * 3_600_000),
    (str(400 * DAY_MS), 400 * DAY_MS), (f"{400 * DAY_MS}ms", 400 * DAY_MS), (400 * DAY_MS, 400 * DAY_MS),
])
def test_a_record_retention_is_forever_a_duration_or_milliseconds(text, ms) -> None:
    assert parse_retention(text, RECORD, RECORD_RETENTION_FLOOR_MS) == ms


@pytest.mark.parametrize(("text", "says"), [
    ("7d", "7 days is below the floor of 365 days a compliance record needs: set 'forever' or at least 365d"),
    ("364d", "364 days is below the floor of 365 days"),
    (str(WEEK_MS), "7 days is below the floor of 365 days"),
    ("0", "0 ms is below the floor"),
    ("one year", "is not a retention: write 'forever', a duration such as 3650d"),
    ("3650 days", "is not a retention"),
    ("-5", "is not a retention"),
    ("1.5d", "is not a retention"),
    ("9" * 12 + "d", "out of range"),
    (True, "write 'forever' or a duration"),
    ("x" * 10_000, "is not a retention"),
])
def test_a_record_retention_below_the_floor_or_unreadable_is_refused_naming_the_variable(text, says) -> None:
    with pytest.raises(ValueError, match=RECORD) as caught:
        parse_retention(text, RECORD, RECORD_RETENTION_FLOOR_MS)
    assert says in str(caught.value)
    assert len(str(caught.value)) < 300  # a long input is not echoed whole


@given(st.integers(min_value=365, max_value=MAX_RETENTION_MS // DAY_MS))
def test_any_whole_number_of_days_from_the_floor_up_is_taken(days: int) -> None:
    assert parse_retention(f"{days}d", RECORD, RECORD_RETENTION_FLOOR_MS) == days * DAY_MS


@given(st.integers(min_value=0, max_value=RECORD_RETENTION_FLOOR_MS - 1))
def test_any_finite_retention_below_the_floor_is_refused(ms: int) -> None:
    with pytest.raises(ValueError, match="below the floor"):
        parse_retention(ms, RECORD, RECORD_RETENTION_FLOOR_MS)


def test_the_settings_read_the_four_variables_and_refuse_a_short_record_retention(monkeypatch) -> None:
    monkeypatch.setenv("SIGNOFF_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("SIGNOFF_TOPIC_MIN_INSYNC_REPLICAS", "2")
    monkeypatch.setenv("SIGNOFF_RECORD_RETENTION", "3650d")
    monkeypatch.setenv("SIGNOFF_DEAD_LETTER_RETENTION", "14d")
    want = TopicLayout(partitions=3, replication_factor=3, min_insync_replicas=2,
                       record_retention_ms=3650 * DAY_MS, dead_letter_retention_ms=14 * DAY_MS)
    assert ClientSettings().topic_layout == want
    assert TopicSettings().topic_layout == want  # the services' base reads the same variables
    monkeypatch.setenv("SIGNOFF_RECORD_RETENTION", "7d")
    with pytest.raises(ValidationError, match="SIGNOFF_RECORD_RETENTION: 7 days is below the floor of 365 days"):
        ClientSettings()


def test_the_defaults_keep_records_for_ever_and_dead_letters_thirty_days(monkeypatch) -> None:
    for name in ("SIGNOFF_TOPIC_REPLICATION_FACTOR", "SIGNOFF_TOPIC_MIN_INSYNC_REPLICAS", "SIGNOFF_RECORD_RETENTION",
                 "SIGNOFF_DEAD_LETTER_RETENTION", "SIGNOFF_TOPIC_PARTITIONS"):
        monkeypatch.delenv(name, raising=False)
    assert TopicSettings().topic_layout == TopicLayout(
        partitions=3, replication_factor=1, min_insync_replicas=1, record_retention_ms=FOREVER,
        dead_letter_retention_ms=30 * DAY_MS)


def test_min_insync_above_the_replication_factor_is_refused_naming_both_variables() -> None:
    with pytest.raises(ValidationError, match="SIGNOFF_TOPIC_MIN_INSYNC_REPLICAS \\(3\\) exceeds "
                                              "SIGNOFF_TOPIC_REPLICATION_FACTOR \\(2\\)"):
        TopicLayout(replication_factor=2, min_insync_replicas=3)
    with pytest.raises(ValidationError, match="SIGNOFF_DEAD_LETTER_RETENTION: 1 hour is below the floor of 1 day"):
        TopicLayout(dead_letter_retention_ms="1h")


def test_record_topics_never_compact_and_keep_for_ever_dead_letters_keep_their_own_time() -> None:
    layout = TopicLayout(replication_factor=3, min_insync_replicas=2, dead_letter_retention_ms=14 * DAY_MS)
    record = layout.spec(topics.REVIEW_DECIDED)
    assert record.record and (record.partitions, record.replication_factor) == (3, 3)
    assert dict(record.configs) == {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1",
                                    "min.insync.replicas": "2"}
    letters = layout.spec(topics.dlq(topics.REVIEW_DECIDED))
    assert not letters.record
    assert dict(letters.configs) == {"cleanup.policy": "delete", "retention.ms": str(14 * DAY_MS),
                                     "retention.bytes": "-1", "min.insync.replicas": "2"}
    assert all(not layout.spec(t).record for t in topics.ALL_TOPICS if t not in topics.EVENT_TOPICS)
    assert all(layout.spec(t).record for t in topics.EVENT_TOPICS)


def test_a_topic_as_wanted_has_no_difference() -> None:
    spec = TopicLayout().spec(topics.MODEL_SUBMITTED)
    assert differences(spec, state()) == []
    assert differences(spec, state(cleanup_policy="delete")) == []


def test_a_missing_topic_refuses_and_says_to_create_it() -> None:
    [missing] = differences(TopicLayout().spec(topics.CHECKS_PASSED), None)
    assert missing.refuses and missing.fix is Fix.CREATE
    assert str(missing) == "checks.passed: does not exist: run `signoff topics create` as the admin"


def test_a_record_topic_on_the_brokers_seven_days_refuses_naming_topic_and_fix() -> None:
    [seven] = differences(TopicLayout().spec(topics.MODEL_SUBMITTED),
                          state(retention_ms=str(WEEK_MS), overridden=set(AS_WANTED) - {"retention.ms"}))
    assert seven.refuses and seven.fix is Fix.ALTER and (seven.key, seven.wanted) == ("retention.ms", "-1")
    assert str(seven) == ("model.submitted: retention.ms is 604800000 (7 days, the broker's default), want -1 "
                          "(for ever): run `signoff topics create` as the admin")


@pytest.mark.parametrize(("configs", "wanted_ms", "refuses"), [
    ({"retention_ms": str(400 * DAY_MS)}, FOREVER, True),          # kept 400 days, settings say for ever
    ({"retention_ms": str(400 * DAY_MS)}, 3650 * DAY_MS, True),    # shorter than the team's ten years
    ({"retention_ms": "-1"}, 3650 * DAY_MS, False),                # keeps more than asked: a warning
    ({"retention_ms": str(3650 * DAY_MS)}, 400 * DAY_MS, False),
    ({"retention_bytes": str(2**30)}, FOREVER, True),               # any size limit drops old events
    ({"cleanup_policy": "compact"}, FOREVER, True),                 # keeps each model's latest event only
    ({"cleanup_policy": "compact,delete"}, FOREVER, True),
    ({"min_insync_replicas": "2"}, FOREVER, False),
])
def test_a_record_topic_refuses_only_what_would_silently_drop_events(configs, wanted_ms, refuses) -> None:
    spec = TopicLayout(record_retention_ms=wanted_ms).spec(topics.DEPLOYMENT_SUCCEEDED)
    [found] = differences(spec, state(topics.DEPLOYMENT_SUCCEEDED, **configs))
    assert found.refuses is refuses and found.fix is Fix.ALTER, found
    letters = TopicLayout(record_retention_ms=wanted_ms).spec(topics.dlq(topics.REVIEW_DECIDED))
    assert not any(d.refuses for d in differences(letters, state(topics.dlq(topics.REVIEW_DECIDED), **configs)))


def test_a_kept_retention_the_settings_could_ask_for_names_the_variable_too() -> None:
    spec = TopicLayout(record_retention_ms=3650 * DAY_MS).spec(topics.MODEL_SUBMITTED)
    [found] = differences(spec, state(retention_ms="-1"))
    assert str(found) == ("model.submitted: retention.ms is -1 (for ever), want 315360000000 (3650 days): run "
                          "`signoff topics create` as the admin, or set SIGNOFF_RECORD_RETENTION=forever")


def test_replication_and_partitions_are_reported_never_altered() -> None:
    spec = TopicLayout(partitions=3, replication_factor=3, min_insync_replicas=2).spec(topics.MODEL_SUBMITTED)
    found = {d.key: d for d in differences(spec, state(partitions=6, rf=1, min_insync_replicas="2"))}
    assert set(found) == {"replication factor", "partitions"}
    assert found["replication factor"].fix is Fix.REASSIGN and not found["replication factor"].refuses
    assert "kafka-reassign-partitions.sh" in str(found["replication factor"])
    assert found["partitions"].fix is Fix.NONE and not found["partitions"].refuses
    assert "breaks their order" in str(found["partitions"])


def test_min_insync_is_not_raised_above_the_replicas_a_topic_has() -> None:
    spec = TopicLayout(replication_factor=3, min_insync_replicas=2).spec(topics.MODEL_SUBMITTED)
    found = {d.key: d for d in differences(spec, state(rf=1))}
    assert found["min.insync.replicas"].fix is Fix.NONE  # 2 of 1 replica would refuse every write
    spec = TopicLayout(replication_factor=3, min_insync_replicas=2).spec(topics.MODEL_SUBMITTED)
    found = {d.key: d for d in differences(spec, state(rf=3))}
    assert found["min.insync.replicas"].fix is Fix.ALTER and found["min.insync.replicas"].wanted == "2"


@pytest.mark.parametrize("key", ["cleanup.policy", "retention.ms", "retention.bytes"])
def test_a_record_topic_keeping_its_events_by_the_brokers_defaults_refuses(key) -> None:
    """As wanted today, but a change of the broker's defaults would expire the record: set it on the topic."""
    spec = TopicLayout().spec(topics.REVIEW_DECIDED)
    [found] = differences(spec, state(topics.REVIEW_DECIDED, overridden=set(AS_WANTED) - {key}))
    assert found.refuses and found.fix is Fix.ALTER and (found.key, found.wanted) == (key, spec.configs[key])
    assert str(found).startswith(f"review.decided: {key} is {spec.configs[key]} (")
    assert str(found).endswith("the broker's default), not set on the topic: a record topic keeps its events by "
                               "its own config, which a change of the broker's defaults does not reach: run "
                               "`signoff topics create` as the admin")
    assert all(d.refuses for d in differences(spec, state(topics.REVIEW_DECIDED, overridden=())))
    assert len(differences(spec, state(topics.REVIEW_DECIDED, overridden=()))) == 3  # min.insync may be inherited


def test_a_longer_retention_from_the_brokers_defaults_refuses_too() -> None:
    spec = TopicLayout(record_retention_ms=400 * DAY_MS).spec(topics.REVIEW_DECIDED)
    inherited = set(AS_WANTED) - {"retention.ms"}
    [found] = differences(spec, state(topics.REVIEW_DECIDED, overridden=inherited, retention_ms=str(500 * DAY_MS)))
    assert found.refuses and found.wanted == str(400 * DAY_MS) and "the broker's default" in str(found)


def test_dead_letters_may_keep_the_brokers_defaults() -> None:
    letters = topics.dlq(topics.REVIEW_DECIDED)
    assert differences(TopicLayout().spec(letters), state(letters, overridden=(), retention_ms=str(30 * DAY_MS))) == []
