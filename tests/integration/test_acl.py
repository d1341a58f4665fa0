"""The broker's security, on the real secured broker of the session (SASL/SCRAM-SHA-512, the
StandardAuthorizer, the ACLs of shared/acl.py applied by the `kafka_cluster` fixture):

- who may write what: every principal tried on every Signoff topic, allowed exactly where the
  table says (a pipeline gets TopicAuthorizationFailed on checks.*, review.*, deployment.*,
  rollback.requested and revocation.requested);
- no connection without SASL, or with a wrong password;
- only the admin alters topic configs and deletes records;
- a service cannot join another service's consumer groups;
- `signoff acl apply` prints its diff, and a second run prints "no changes".

The write probes put a small record (`acl-probe`) on topics services consume: they dead-letter it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from shared import acl, topics
from shared.kafka import KafkaAccess
from tests.kafka_broker import KAFKA_SH, Cluster, local_env

pytestmark = pytest.mark.kafka

PROBE = b"acl-probe"
FORBIDDEN_TO_PIPELINES = (topics.CHECKS_PASSED, topics.REVIEW_DECIDED, topics.DEPLOYMENT_SUCCEEDED,
                          topics.ROLLBACK_REQUESTED, topics.REVOCATION_REQUESTED)


@pytest.fixture(scope="module")
def cluster(kafka_cluster: Cluster) -> Cluster:
    if not kafka_cluster.secured:
        pytest.skip("the broker runs with KAFKA_SECURITY_PROTOCOL=PLAINTEXT: it authorizes nothing to test")
    return kafka_cluster


async def write(kafka: KafkaAccess, topic: str) -> str:
    """'ok', or the name of the error the broker answered a produce to `topic` with."""
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True,
                                request_timeout_ms=10_000)
    try:
        await producer.start()
        await producer.send_and_wait(topic, PROBE, key=PROBE)
        return "ok"
    except TopicAuthorizationFailedError:
        return "TopicAuthorizationFailed"
    except ClusterAuthorizationFailedError:  # an idempotent producer allowed to write no topic at all
        return "ClusterAuthorizationFailed"
    finally:
        await producer.stop()


async def test_a_pipeline_may_submit_and_write_nothing_else(cluster: Cluster) -> None:
    pipeline = cluster.access("pipeline")
    assert await write(pipeline, topics.MODEL_SUBMITTED) == "ok"
    for topic in FORBIDDEN_TO_PIPELINES:
        assert await write(pipeline, topic) == "TopicAuthorizationFailed", topic


async def test_each_principal_writes_exactly_the_topics_the_table_gives_it(cluster: Cluster) -> None:
    table = acl.Table()
    wrong = []
    for name in (*acl.SERVICES, acl.PIPELINE, acl.OPERATOR):
        for topic in topics.ALL_TOPICS:
            allowed = table.allows(name, acl.Operation.WRITE, topic)
            outcome = await write(cluster.access(name), topic)
            if (outcome == "ok") != allowed:
                wrong.append(f"{name} on {topic}: {outcome}, the table says {'allow' if allowed else 'deny'}")
    assert wrong == []
    # The sentences of the issue, from the table itself. Operators (and the console, for them) also
    # write the consumed topics, only to re-drive dead letters (shared/dlq.py): the consumer acts on
    # a record only when it is signed by a key of its type's role (tests/integration/test_dlq.py).
    redrivers = {acl.OPERATOR, acl.CONSOLE}
    assert {n for n in table.principals if table.allows(n, acl.Operation.WRITE, topics.CHECKS_PASSED)} == {
        "validator", *redrivers}
    assert {n for n in table.principals if table.allows(n, acl.Operation.WRITE, topics.REVIEW_DECIDED)} == {
        "policy", "review-notifier", *redrivers}
    assert {n for n in table.principals if table.allows(n, acl.Operation.WRITE, topics.DEPLOYMENT_SUCCEEDED)} == {
        "deployer"}
    assert {n for n in table.principals if table.allows(n, acl.Operation.WRITE, topics.ROLLBACK_REQUESTED)} == {
        "operator", acl.CONSOLE}  # the console only re-drives (its own requests would need an operator's key)


async def test_no_client_connects_without_sasl_or_with_a_wrong_password(cluster: Cluster) -> None:
    plaintext = KafkaAccess(bootstrap_servers=cluster.servers, security_protocol="PLAINTEXT")
    with pytest.raises(KafkaConnectionError):
        await write(plaintext, topics.MODEL_SUBMITTED)
    wrong = cluster.access("pipeline").as_principal("pipeline", "not-the-password")
    with pytest.raises(KafkaConnectionError):
        await write(wrong, topics.MODEL_SUBMITTED)
    unknown = cluster.access("pipeline").as_principal("mallory", "anything")
    with pytest.raises(KafkaConnectionError):
        await write(unknown, topics.MODEL_SUBMITTED)
    assert await write(cluster.access("pipeline"), topics.MODEL_SUBMITTED) == "ok"  # the control


async def test_only_the_admin_alters_topic_configs_and_deletes_records(cluster: Cluster) -> None:
    scratch = f"acl-scratch-{uuid.uuid4().hex[:8]}"  # the admin's own: deleting its records harms nothing
    admin = AIOKafkaAdminClient(**cluster.admin.client_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(scratch, num_partitions=1, replication_factor=1)])
        assert await write(cluster.admin, scratch) == "ok"
        await admin.delete_records({TopicPartition(scratch, 0): RecordsToDelete(1)})
        [answer] = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, scratch,
                                                             configs={"retention.ms": "86400000"})])
        assert [r[0] for r in answer.resources] == [0]
    finally:
        await admin.close()
    for name in ("pipeline", "operator", "deployer"):
        client = AIOKafkaAdminClient(**cluster.access(name).client_kwargs())
        await client.start()
        try:
            with pytest.raises(TopicAuthorizationFailedError):
                await client.delete_records({TopicPartition(topics.MODEL_SUBMITTED, 0): RecordsToDelete(1)})
            [answer] = await client.alter_configs([ConfigResource(
                ConfigResourceType.TOPIC, topics.MODEL_SUBMITTED, configs={"retention.ms": "1"})])
            assert [r[0] for r in answer.resources] == [29], name  # TOPIC_AUTHORIZATION_FAILED
            created = await client.create_topics([NewTopic(f"{scratch}-{name}", num_partitions=1,
                                                           replication_factor=1)])
            assert [e[1] for e in created.topic_errors] == [29], name  # TOPIC_AUTHORIZATION_FAILED
        finally:
            await client.close()


async def test_a_service_cannot_join_another_services_consumer_group(cluster: Cluster) -> None:
    async def join(name: str, group: str) -> str:
        consumer = AIOKafkaConsumer(topics.CHECKS_PASSED, **cluster.access(name).client_kwargs(), group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="latest")
        try:
            await consumer.start()
            await consumer.getmany(timeout_ms=2000)
            await consumer.commit()
            return "ok"
        except GroupAuthorizationFailedError:
            return "GroupAuthorizationFailed"
        finally:
            await consumer.stop()

    assert await join("policy", f"signoff-deployer.{topics.CHECKS_PASSED}") == "GroupAuthorizationFailed"
    assert await join("policy", f"signoff-policy.acl-test-{uuid.uuid4().hex[:6]}") == "ok"


def signoff(cluster: Cluster, principal: str, *args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}, **cluster.access(principal).env()}
    return subprocess.run([sys.executable, "-m", "signoff.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_acl_apply_prints_the_diff_and_a_second_run_changes_nothing(cluster: Cluster) -> None:
    team = f"team-{uuid.uuid4().hex[:6]}"
    with_team = ("acl", "apply", "--pipeline", "pipeline", "--pipeline", team)
    try:
        dry = signoff(cluster, "admin", *with_team, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"+ ALLOW User:{team} WRITE topic model.submitted" in dry.stdout.splitlines()
        assert "(dry run" in dry.stdout
        first = signoff(cluster, "admin", *with_team)
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines() == dry.stdout.splitlines()[:-1]  # what the dry run said
        assert all(line.startswith("+ ") for line in first.stdout.splitlines())
        again = signoff(cluster, "admin", *with_team)
        assert (again.returncode, again.stdout) == (0, "no changes\n")
    finally:
        back = signoff(cluster, "admin", "acl", "apply")  # the session's table again: the team goes
    assert back.returncode == 0, back.stderr
    assert f"- ALLOW User:{team} WRITE topic model.submitted" in back.stdout.splitlines()
    assert all(line.startswith("- ") for line in back.stdout.splitlines())
    assert signoff(cluster, "admin", "acl", "apply").stdout == "no changes\n"


def test_acl_apply_as_anyone_but_the_admin_is_refused(cluster: Cluster) -> None:
    result = signoff(cluster, "operator", "acl", "apply")
    assert result.returncode == 1
    assert "ACLs are read and written by the admin" in result.stderr


def test_the_cli_says_which_variable_is_missing(cluster: Cluster) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    result = subprocess.run([sys.executable, "-m", "signoff.cli", "history", "fraud-detector"],
                            env={**env, "KAFKA_BOOTSTRAP_SERVERS": cluster.servers},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "KAFKA_SASL_USERNAME" in result.stderr


@pytest.fixture
def local(cluster: Cluster) -> Iterator[dict[str, str]]:
    if cluster.data_dir is None:
        pytest.skip("adding a user goes through kafka.sh: the local broker only")
    port = int(cluster.servers.rsplit(":", 1)[1])
    yield local_env(port, 0, cluster.data_dir)


async def test_a_team_pipeline_added_later_submits_once_its_acls_are_applied(
        cluster: Cluster, local: dict[str, str]) -> None:
    team = f"team-{uuid.uuid4().hex[:6]}"
    added = subprocess.run(["bash", str(KAFKA_SH), "user-add", team], env=local, capture_output=True, text=True,
                           timeout=120)
    assert added.returncode == 0, added.stderr
    assert cluster.data_dir is not None
    password = (cluster.data_dir / "credentials" / team).read_text()
    assert oct((cluster.data_dir / "credentials" / team).stat().st_mode & 0o777) == "0o600"
    access = cluster.access("pipeline").as_principal(team, password)
    try:
        assert await write(access, topics.MODEL_SUBMITTED) == "ClusterAuthorizationFailed"  # no ACL at all yet
        applied = signoff(cluster, "admin", "acl", "apply", "--pipeline", "pipeline", "--pipeline", team)
        assert applied.returncode == 0, applied.stderr
        assert await write(access, topics.MODEL_SUBMITTED) == "ok"
        assert await write(access, topics.CHECKS_PASSED) == "TopicAuthorizationFailed"
    finally:
        assert signoff(cluster, "admin", "acl", "apply").returncode == 0
