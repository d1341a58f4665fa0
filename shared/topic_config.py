"""What each of Signoff's topics should look like, and how one that exists differs from it.

The record topics (shared.topics.EVENT_TOPICS) are the audit trail: every approval, rejection and
deployment. They keep events for ever, or for a retention a team sets that is never below
RECORD_RETENTION_FLOOR_MS, and they are never compacted: the key is the model name, so compaction
would keep each model's latest event and drop its history. Dead-letter topics keep letters for a
retention of their own. Replication factor and min.insync.replicas come from settings (1/1 on a
laptop, 3/2 on a cluster).

Pure: the layout, each topic's spec, retention parsing, and `differences(spec, state)`, which says
what differs, whether a service must refuse to run on it, and what fixes it. The wire part is
shared/topic_admin.py; the settings fields are shared.settings.TopicSettings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

FOREVER = -1
DAY_MS = 86_400_000
# Approval records are evidence for audits that look back a year or more; below that a topic is a
# cache, not a record.
RECORD_RETENTION_FLOOR_MS = 365 * DAY_MS
DEAD_LETTER_RETENTION_FLOOR_MS = DAY_MS  # an operator must have time to read a letter
MAX_RETENTION_MS = 1000 * 365 * DAY_MS  # far below Kafka's long; a typo of extra digits is refused
CONFIG_KEYS = ("cleanup.policy", "retention.ms", "retention.bytes", "min.insync.replicas")
# What keeps a record topic's events: set on the topic itself (DYNAMIC_TOPIC_CONFIG), never taken
# from the broker's defaults, which an operator changes for every topic at once (and a broker
# started with other defaults, or a cluster whose brokers differ, would expire the record silently).
PINNED_KEYS = ("cleanup.policy", "retention.ms", "retention.bytes")
CREATE = "run `signoff topics create` as the admin"
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}
_DURATION = re.compile(r"^(\d{1,12})(ms|s|m|h|d)?$")


def describe_ms(ms: int) -> str:
    if ms < 0:
        return "for ever"
    for unit, size in (("day", DAY_MS), ("hour", 3_600_000), ("minute", 60_000), ("second", 1000)):
        if ms and ms % size == 0:
            n = ms // size
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return f"{ms} ms"


def check_retention(ms: int, variable: str, floor_ms: int) -> int:
    if ms == FOREVER:
        return ms
    if ms < 0 or ms > MAX_RETENTION_MS:
        raise ValueError(f"{variable}: {ms} ms is out of range: write 'forever' or a duration from "
                         f"{describe_ms(floor_ms)} to {describe_ms(MAX_RETENTION_MS)}")
    if ms < floor_ms:
        raise ValueError(f"{variable}: {describe_ms(ms)} is below the floor of {describe_ms(floor_ms)}"
                         + (" a compliance record needs" if floor_ms == RECORD_RETENTION_FLOOR_MS else "")
                         + f": set 'forever' or at least {floor_ms // DAY_MS}d")
    return ms


def parse_retention(value: object, variable: str, floor_ms: int) -> int:
    """'forever' (or -1, Kafka's spelling), a duration such as 3650d or 87600h (units ms, s, m, h,
    d), or a number of milliseconds; refused below `floor_ms`, the error naming `variable`."""
    if isinstance(value, bool):
        raise ValueError(f"{variable}: write 'forever' or a duration such as 3650d")
    if isinstance(value, int):
        return check_retention(value, variable, floor_ms)
    text = str(value).strip().lower()[:40]
    if text in ("forever", "-1"):
        return FOREVER
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{variable}: {text!r} is not a retention: write 'forever', a duration such as 3650d or "
                         "87600h (units ms, s, m, h, d), or milliseconds")
    return check_retention(int(match[1]) * _UNITS[match[2] or "ms"], variable, floor_ms)


RecordRetention = Annotated[int, BeforeValidator(
    lambda v: parse_retention(v, "SIGNOFF_RECORD_RETENTION", RECORD_RETENTION_FLOOR_MS))]
DeadLetterRetention = Annotated[int, BeforeValidator(
    lambda v: parse_retention(v, "SIGNOFF_DEAD_LETTER_RETENTION", DEAD_LETTER_RETENTION_FLOOR_MS))]


@dataclass(frozen=True)
class TopicSpec:
    """How one topic should be: what it is created with, and what `topics create` restores."""
    name: str
    record: bool  # a record topic (the audit trail), or a dead-letter topic
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True)
class TopicState:
    """How one topic is, as the broker describes it."""
    name: str
    partitions: int
    replication_factor: int  # the fewest replicas of any partition
    configs: Mapping[str, str]
    overridden: frozenset[str] = frozenset()  # keys set on the topic itself, not broker defaults


class TopicLayout(BaseModel):
    """The topics as the settings want them (shared.settings.TopicSettings.topic_layout)."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    partitions: int = Field(default=3, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=32)
    min_insync_replicas: int = Field(default=1, ge=1, le=32)
    record_retention_ms: RecordRetention = FOREVER
    dead_letter_retention_ms: DeadLetterRetention = 30 * DAY_MS

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> TopicLayout:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(f"SIGNOFF_TOPIC_MIN_INSYNC_REPLICAS ({self.min_insync_replicas}) exceeds "
                             f"SIGNOFF_TOPIC_REPLICATION_FACTOR ({self.replication_factor}): no write could be "
                             "acknowledged; set it to at most the replication factor (3/2 on a cluster)")
        return self

    def spec(self, topic: str) -> TopicSpec:
        record = not topic.endswith(".dlq")
        retention = self.record_retention_ms if record else self.dead_letter_retention_ms
        return TopicSpec(topic, record, self.partitions, self.replication_factor, {
            "cleanup.policy": "delete", "retention.ms": str(retention), "retention.bytes": "-1",
            "min.insync.replicas": str(self.min_insync_replicas)})


class Fix(Enum):
    CREATE = "create"      # `topics create` creates it
    ALTER = "alter"        # `topics create` sets the config in place
    REASSIGN = "reassign"  # only kafka-reassign-partitions.sh changes it
    NONE = "none"          # left as it is, on purpose


@dataclass(frozen=True)
class Difference:
    topic: str
    key: str      # a config key, or "topic", "replication factor", "partitions"
    actual: str   # as the broker says it ("" when missing)
    wanted: str   # as the broker would take it (for Fix.ALTER: the value to set)
    fix: Fix
    refuses: bool  # a service must not run: the record would silently expire, or the topic is missing
    line: str

    def __str__(self) -> str:
        return self.line


def _as_int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _shown(key: str, value: str | None, *notes: str) -> str:
    """A value as the broker says it, with what it means in brackets."""
    if value is None:
        return "unknown (not described)"
    number = _as_int(value)
    if key == "retention.ms" and number is not None:
        notes = (describe_ms(number), *notes)
    elif key == "retention.bytes" and number is not None and number < 0:
        notes = ("no limit", *notes)
    return f"{value} ({', '.join(notes)})" if notes else value


def _expires_early(key: str, actual: str | None, wanted: str) -> bool:
    """Whether a record topic configured so would drop events sooner than the settings allow."""
    have, want = _as_int(actual), _as_int(wanted)
    if key == "cleanup.policy":
        return actual is None or "compact" in {p.strip() for p in actual.split(",")}
    if key in ("retention.ms", "retention.bytes"):
        finite = have is None or have >= 0
        return finite and (want is None or want < 0 or have is None or have < want)
    return False


def _setting(have: int) -> str:
    """A retention as the settings spell it."""
    return "forever" if have < 0 else f"{have // DAY_MS}d" if have % DAY_MS == 0 else str(have)


def _config(spec: TopicSpec, state: TopicState, key: str, wanted: str) -> Difference:
    actual = state.configs.get(key)
    notes = [] if actual is None or key in state.overridden else ["the broker's default"]
    if key == "cleanup.policy" and "compact" in (actual or ""):
        notes.append("compaction keeps only each model's latest event")
    shown = _shown(key, actual, *notes)
    head = f"{spec.name}: {key} is {shown}, want {_shown(key, wanted)}"
    if key == "min.insync.replicas" and int(wanted) > state.replication_factor:
        return Difference(spec.name, key, actual or "", wanted, Fix.NONE, False,
                          f"{head} (SIGNOFF_TOPIC_MIN_INSYNC_REPLICAS): not set while the topic has "
                          f"{state.replication_factor} replica(s), which would refuse every write: give it more "
                          "replicas first (kafka-reassign-partitions.sh)")
    fix = CREATE
    have = _as_int(actual)
    if key == "retention.ms" and have is not None:
        variable = "SIGNOFF_RECORD_RETENTION" if spec.record else "SIGNOFF_DEAD_LETTER_RETENTION"
        floor = RECORD_RETENTION_FLOOR_MS if spec.record else DEAD_LETTER_RETENTION_FLOOR_MS
        if have < 0 or floor <= have <= MAX_RETENTION_MS:  # a value the settings could ask for
            fix += f", or set {variable}={_setting(have)}"
    elif key == "min.insync.replicas":
        fix += ", or set SIGNOFF_TOPIC_MIN_INSYNC_REPLICAS to match"
    inherited = key in PINNED_KEYS and key not in state.overridden  # see PINNED_KEYS
    refuses = spec.record and (_expires_early(key, actual, wanted) or inherited)
    return Difference(spec.name, key, actual or "", wanted, Fix.ALTER, refuses, f"{head}: {fix}")


def _inherited(spec: TopicSpec, state: TopicState, key: str, wanted: str) -> Difference:
    """A record topic's value as wanted, but from the broker's defaults: set it on the topic."""
    shown = _shown(key, state.configs.get(key), "the broker's default")
    return Difference(spec.name, key, state.configs.get(key) or "", wanted, Fix.ALTER, True,
                      f"{spec.name}: {key} is {shown}, not set on the topic: a record topic keeps its events by "
                      f"its own config, which a change of the broker's defaults does not reach: {CREATE}")


def differences(spec: TopicSpec, state: TopicState | None) -> list[Difference]:
    """Every way `state` differs from `spec`, each with its fix; empty when the topic is as wanted."""
    if state is None:
        return [Difference(spec.name, "topic", "", "", Fix.CREATE, True, f"{spec.name}: does not exist: {CREATE}")]
    out = []
    for key, wanted in spec.configs.items():
        actual = state.configs.get(key)
        same = (actual is not None and {p.strip() for p in actual.split(",")} == set(wanted.split(","))
                if key == "cleanup.policy" else actual == wanted)
        if not same:
            out.append(_config(spec, state, key, wanted))
        elif spec.record and key in PINNED_KEYS and key not in state.overridden:
            out.append(_inherited(spec, state, key, wanted))
    if state.replication_factor != spec.replication_factor:
        out.append(Difference(
            spec.name, "replication factor", str(state.replication_factor), str(spec.replication_factor),
            Fix.REASSIGN, False,
            f"{spec.name}: replication factor is {state.replication_factor}, want {spec.replication_factor} "
            "(SIGNOFF_TOPIC_REPLICATION_FACTOR): not changed in place; give each partition "
            f"{spec.replication_factor} replicas with kafka-reassign-partitions.sh --bootstrap-server <broker> "
            "--reassignment-json-file <plan.json> --execute"))
    if state.partitions != spec.partitions:
        out.append(Difference(
            spec.name, "partitions", str(state.partitions), str(spec.partitions), Fix.NONE, False,
            f"{spec.name}: has {state.partitions} partitions, SIGNOFF_TOPIC_PARTITIONS says {spec.partitions}: "
            "left as it is (another partition count sends a model's events to another partition and breaks "
            f"their order); set SIGNOFF_TOPIC_PARTITIONS={state.partitions} to match"))
    return out
