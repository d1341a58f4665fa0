"""Topic configuration on the real broker of the session (shared/topic_admin.py, `signoff topics`):

- topics are created with their retention, size limit, cleanup policy, min.insync.replicas,
  replication factor and partition count, as topic configs of their own;
- a record topic the admin cut to the broker's 7 days makes a service's start-up refuse, naming
  the topic and the fix; `signoff topics check` reports it, `signoff topics create` sets it back and
  keeps a config it does not manage.

The session's model.submitted is altered and set back (by the test itself, and in `finally`).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest
import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.validator.app import build
from services.validator.settings import ValidatorSettings
from shared import topics
from shared.kafka import KafkaAccess
from shared.topic_admin import apply_topics, check_topics, describe_topics, fix_topics, topic_differences
from shared.topic_config import CONFIG_KEYS, DAY_MS, Difference, Fix, TopicLayout
from tests import keys
from tests.kafka_broker import Cluster
from tests.unit.factories import workflow_folder

pytestmark = pytest.mark.kafka

WEEK_MS = str(7 * DAY_MS)
UNRELATED = "segment.jitter.ms"  # a config Signoff does not manage; "0" is the broker's default too
WORKFLOW = "name: any\ndefault: true\nsteps:\n  - {name: deploy, type: deploy}\n"
SEVEN_DAYS = ("model.submitted: retention.ms is 604800000 (7 days), want -1 (for ever): run `signoff topics "
              "create` as the admin")


async def set_configs(kafka: KafkaAccess, topic: str, configs: dict[str, str], timeout: float = 30.0) -> None:
    """Set configs on a topic as an admin would, and wait (with a deadline) until the broker shows them."""
    await fix_topics(kafka, [Difference(topic, k, "", v, Fix.ALTER, False, "") for k, v in configs.items()])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while {k: v for k, v in (await raw_configs(kafka, topic)).items() if k in configs} != {
            k: (v, True) for k, v in configs.items()}:
        assert loop.time() < deadline, f"the broker does not show {configs} on {topic}"
        await asyncio.sleep(0.1)


async def raw_configs(kafka: KafkaAccess, topic: str) -> dict[str, tuple[str, bool]]:
    """Every config of a topic: its value, and whether it is set on the topic itself."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    [(_code, _message, _type, _name, entries)] = response.resources
    return {e[0]: (e[1], e[3] == 1) for e in entries}


def signoff(cluster: Cluster, principal: str, *args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIGNOFF_"))},
           **cluster.access(principal).env()}
    return subprocess.run([sys.executable, "-m", "signoff.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


async def test_topics_are_created_with_their_retention_replication_and_partitions(kafka: KafkaAccess) -> None:
    record = f"topics-{uuid.uuid4().hex[:8]}.record"
    names = (record, topics.dlq(record))
    layout = TopicLayout(partitions=2, record_retention_ms=3650 * DAY_MS, dead_letter_retention_ms=14 * DAY_MS)
    try:
        report = await apply_topics(kafka, layout, names)
        assert report.created == list(names)
        assert (report.fixed, report.left) == ([], [])  # made with its configs: nothing left to set
        states = await describe_topics(kafka, names)
        assert dict(states[record].configs) == {"cleanup.policy": "delete", "retention.ms": str(3650 * DAY_MS),
                                                "retention.bytes": "-1", "min.insync.replicas": "1"}
        assert dict(states[topics.dlq(record)].configs) == {
            "cleanup.policy": "delete", "retention.ms": str(14 * DAY_MS), "retention.bytes": "-1",
            "min.insync.replicas": "1"}
        for name in names:  # set on the topic itself: a broker default changed later changes nothing
            assert states[name].overridden == frozenset(CONFIG_KEYS)
            assert (states[name].partitions, states[name].replication_factor) == (2, 1)
    finally:
        admin = AIOKafkaAdminClient(**kafka.client_kwargs())
        await admin.start()
        try:
            await admin.delete_topics(list(names))
        finally:
            await admin.close()


async def unset_config(kafka: KafkaAccess, topic: str, key: str, timeout: float = 30.0) -> None:
    """Remove a config from a topic (IncrementalAlterConfigs DELETE), so the broker's default applies,
    and wait (with a deadline) until the broker shows it inherited."""
    from shared.admin import _started_admin
    from shared.topic_admin import _IncrementalAlterConfigs, _IncrementalAlterConfigsRequest_v0

    admin = await _started_admin(kafka, timeout)
    try:
        request = _IncrementalAlterConfigsRequest_v0([(int(ConfigResourceType.TOPIC), topic, [(key, 1, "")])], False)
        [(code, message, _type, _name)] = (await admin._send_request(_IncrementalAlterConfigs(request))).responses
        assert code == 0, message
    finally:
        await admin.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await raw_configs(kafka, topic))[key][1]:
        assert loop.time() < deadline, f"the broker still shows {key} set on {topic}"
        await asyncio.sleep(0.1)


async def test_a_record_topic_keeping_its_events_by_a_broker_default_is_refused_and_set_on_the_topic(
        kafka: KafkaAccess) -> None:
    """retention.bytes inherited from the broker is -1 today, as wanted; a change of the broker's
    default would cap every record topic, so it must be the topic's own."""
    record = f"topics-{uuid.uuid4().hex[:8]}.record"
    layout = TopicLayout(partitions=1)
    try:
        await apply_topics(kafka, layout, [record])
        await unset_config(kafka, record, "retention.bytes")
        [found] = await topic_differences(kafka, layout, [record])
        assert found.refuses and found.fix is Fix.ALTER and (found.key, found.actual) == ("retention.bytes", "-1")
        assert "not set on the topic" in found.line
        report = await apply_topics(kafka, layout, [record])
        assert ([d.key for d in report.fixed], report.left) == (["retention.bytes"], [])
        assert (await describe_topics(kafka, [record]))[record].overridden == frozenset(CONFIG_KEYS)
    finally:
        admin = AIOKafkaAdminClient(**kafka.client_kwargs())
        await admin.start()
        try:
            await admin.delete_topics([record])
        finally:
            await admin.close()


async def test_the_sessions_topics_are_as_the_default_settings_lay_them_out(kafka: KafkaAccess) -> None:
    assert await topic_differences(kafka, TopicLayout(), topics.ALL_TOPICS) == []
    states = await describe_topics(kafka)
    assert states[topics.REVIEW_DECIDED].configs["retention.ms"] == "-1"
    assert states[topics.dlq(topics.REVIEW_DECIDED)].configs["retention.ms"] == str(30 * DAY_MS)


async def test_a_service_refuses_a_record_topic_kept_seven_days_and_topics_create_sets_it_back(
        kafka_cluster: Cluster, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    admin = kafka_cluster.admin
    validator = kafka_cluster.access("validator")
    try:
        await set_configs(admin, topics.MODEL_SUBMITTED, {"retention.ms": WEEK_MS, UNRELATED: "0"})

        # The validator's own start-up hook, as its own principal.
        settings = ValidatorSettings(
            kafka_bootstrap_servers=validator.bootstrap_servers, kafka_security_protocol=validator.security_protocol,
            kafka_sasl_username=validator.sasl_username, kafka_sasl_password=validator.sasl_password,
            kafka_ssl_cafile=validator.ssl_cafile, workflows=workflow_folder(tmp_path / "workflows", default=WORKFLOW),
            download_dir=tmp_path / "downloads", **keys.service_fields("validator"))
        capsys.readouterr()
        with pytest.raises(SystemExit) as refused:
            await build(settings).start()
        assert str(refused.value) == f"refusing to start: {SEVEN_DAYS}"
        logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
        assert [(e["level"], e["topic"], e["problem"]) for e in logged if e["event"] == "topic_differs"] == [
            ("error", topics.MODEL_SUBMITTED, SEVEN_DAYS)]

        checked = signoff(kafka_cluster, "admin", "topics", "check")
        assert (checked.returncode, checked.stdout) == (1, f"refused: {SEVEN_DAYS}\n"), checked.stderr

        created = signoff(kafka_cluster, "admin", "topics", "create")
        assert created.returncode == 0, created.stderr
        assert created.stdout.splitlines() == ["all topics exist",
                                               "set model.submitted retention.ms=-1 (was 604800000)"]
        configs = await raw_configs(admin, topics.MODEL_SUBMITTED)
        assert configs["retention.ms"] == ("-1", True)
        assert configs[UNRELATED] == ("0", True)  # incremental: a config it does not manage is kept as set

        again = signoff(kafka_cluster, "admin", "topics", "check")
        assert (again.returncode, again.stdout) == (0, f"all {len(topics.ALL_TOPICS)} topics as configured\n")
        await check_topics(validator, TopicLayout(), structlog.get_logger())  # DESCRIBE_CONFIGS: it may look
    finally:
        await apply_topics(admin, TopicLayout(), [topics.MODEL_SUBMITTED])

