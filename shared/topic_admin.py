"""The topics on the wire: how they are (describe), putting their configs right (fix, apply), and
the services' start-up check. What they should be, and how a difference reads, is the pure
shared/topic_config.py.

Configs are altered with IncrementalAlterConfigs (KIP-339): it sets only the keys it names, so a
config someone else set on a topic (a segment size, a compression type) is kept. The older
AlterConfigs replaces every dynamic config of the topic with the ones sent. aiokafka 0.14 has only
AlterConfigs, so the v0 request is spelled here from Kafka's message schema (Kafka 2.3 to 4.x
accept it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAuthorizationFailedError, UnknownTopicOrPartitionError, for_code
from aiokafka.protocol.api import RequestStruct, Response
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

from shared.admin import NotAuthorized, _fixed, _started_admin, ensure_topics
from shared.kafka import KafkaAccess
from shared.topic_config import CONFIG_KEYS, Difference, Fix, TopicLayout, TopicState, differences
from shared.topics import ALL_TOPICS

_TOPIC_CONFIG = 1  # DescribeConfigs' config_source DYNAMIC_TOPIC_CONFIG: set on the topic itself
_SET = 0  # IncrementalAlterConfigs' config_operation


class _IncrementalAlterConfigsResponse_v0(Response):
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("responses", Array(("error_code", Int16), ("error_message", String("utf-8")),
                            ("resource_type", Int8), ("resource_name", String("utf-8")))),
    )


class _IncrementalAlterConfigsRequest_v0(RequestStruct):
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = _IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        ("resources", Array(("resource_type", Int8), ("resource_name", String("utf-8")),
                            ("configs", Array(("name", String("utf-8")), ("config_operation", Int8),
                                              ("value", String("utf-8")))))),
        ("validate_only", Boolean),
    )


_IncrementalAlterConfigs = _fixed(44, _IncrementalAlterConfigsRequest_v0)


def _refused(topic: str, kafka: KafkaAccess, what: str) -> NotAuthorized:
    return NotAuthorized(f"{topic}: {kafka.sasl_username} may not {what}: run `signoff acl apply` as the admin "
                         "(the services need DESCRIBE and DESCRIBE_CONFIGS on every Signoff topic), or run this "
                         "as the admin")


async def _describe(admin: AIOKafkaAdminClient, kafka: KafkaAccess, names: Sequence[str]) -> dict[str, TopicState]:
    # allow_auto_topic_creation=False: on a cluster that auto-creates topics, describing a missing
    # one must not create it with the broker's defaults (aiokafka's describe_topics asks for that).
    metadata = (await admin._send_request(  # noqa: SLF001 - aiokafka has no public call for this
        MetadataRequest(list(names), allow_auto_topic_creation=False))).to_object()
    shapes: dict[str, tuple[int, int]] = {}
    for topic in metadata["topics"]:
        code = topic["error_code"]
        if code == UnknownTopicOrPartitionError.errno:
            continue  # missing
        if code == TopicAuthorizationFailedError.errno:
            raise _refused(topic["topic"], kafka, "describe it")
        if code:
            raise for_code(code)(f"describe topic {topic['topic']}")
        parts = topic["partitions"]
        shapes[topic["topic"]] = (len(parts), min((len(p["replicas"]) for p in parts), default=0))
    if not shapes:
        return {}
    wanted = {key: None for key in CONFIG_KEYS}
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t, wanted) for t in shapes])
    out = {}
    for response in responses:
        for code, message, _type, name, entries in response.resources:
            if code == TopicAuthorizationFailedError.errno:
                raise _refused(name, kafka, "describe its configs")
            if code:
                raise for_code(code)(f"describe the configs of {name}: {message or ''}")
            configs = {entry[0]: entry[1] for entry in entries}
            overridden = frozenset(entry[0] for entry in entries if entry[3] == _TOPIC_CONFIG)
            out[name] = TopicState(name, *shapes[name], configs, overridden)
    return out


async def describe_topics(kafka: KafkaAccess, names: Sequence[str] = ALL_TOPICS,
                          timeout: float = 60.0) -> dict[str, TopicState]:
    """How each existing topic of `names` is: partitions, replication factor, the configs Signoff
    manages. A missing topic is absent from the answer."""
    admin = await _started_admin(kafka, timeout)
    try:
        return await _describe(admin, kafka, names)
    finally:
        await admin.close()


async def topic_differences(kafka: KafkaAccess, layout: TopicLayout, names: Sequence[str] = ALL_TOPICS,
                            timeout: float = 60.0) -> list[Difference]:
    """Every way the topics differ from `layout`, topic by topic."""
    states = await describe_topics(kafka, names, timeout)
    return [d for name in names for d in differences(layout.spec(name), states.get(name))]


async def fix_topics(kafka: KafkaAccess, found: Sequence[Difference], timeout: float = 60.0) -> list[Difference]:
    """Set, in place, each config of `found` that can be (Fix.ALTER), and nothing else on those
    topics; returns the differences it fixed."""
    alter = [d for d in found if d.fix is Fix.ALTER]
    if not alter:
        return []
    by_topic: dict[str, list[Difference]] = {}
    for d in alter:
        by_topic.setdefault(d.topic, []).append(d)
    resources = [(int(ConfigResourceType.TOPIC), topic, [(d.key, _SET, d.wanted) for d in ds])
                 for topic, ds in by_topic.items()]
    request = _IncrementalAlterConfigsRequest_v0(resources, False)
    admin = await _started_admin(kafka, timeout)
    try:
        response: Any = await admin._send_request(_IncrementalAlterConfigs(request))  # noqa: SLF001
    finally:
        await admin.close()
    for code, message, _type, name in response.responses:
        if code == TopicAuthorizationFailedError.errno:
            raise NotAuthorized(f"{name}: only the admin alters topic configs: run `signoff topics create` "
                                "as the admin")
        if code:
            raise for_code(code)(f"alter the configs of {name}: {message or ''}")
    return alter


@dataclass
class TopicsReport:
    created: list[str] = field(default_factory=list)
    fixed: list[Difference] = field(default_factory=list)
    left: list[Difference] = field(default_factory=list)  # what only a person can change, on purpose or not


async def apply_topics(kafka: KafkaAccess, layout: TopicLayout, names: Sequence[str] = ALL_TOPICS,
                       timeout: float = 60.0) -> TopicsReport:
    """Create the missing topics and set the configs that differ (as the admin); returns what it did
    and what it left. Returns once the broker describes the topics as made (the metadata log may
    trail the request), or raises TimeoutError."""
    report = TopicsReport(created=await ensure_topics(kafka, topics=tuple(names), timeout=timeout, layout=layout))
    report.fixed = await fix_topics(kafka, await topic_differences(kafka, layout, names, timeout), timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        report.left = await topic_differences(kafka, layout, names, timeout)
        pending = [d for d in report.left if d.fix in (Fix.CREATE, Fix.ALTER)]
        if not pending:
            return report
        if loop.time() > deadline:
            raise TimeoutError(f"the broker does not show the topics as made after {timeout} s: "
                               + "; ".join(map(str, pending)))
        await asyncio.sleep(0.1)  # polling the broker's view, bounded by the deadline


async def check_topics(kafka: KafkaAccess, layout: TopicLayout, log: Any, names: Sequence[str] = ALL_TOPICS) -> None:
    """A service's start-up check: refuse to run (SystemExit) when a topic is missing or a record
    topic would silently drop events; log every other difference as a warning."""
    found = await topic_differences(kafka, layout, names)
    for d in found:
        (log.error if d.refuses else log.warning)("topic_differs", topic=d.topic, key=d.key, problem=d.line)
    if refusing := [d.line for d in found if d.refuses]:
        raise SystemExit("refusing to start: " + "; ".join(refusing))
    log.info("topics_checked", topics=len(names), differences=len(found))
