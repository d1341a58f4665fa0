"""Creates Signoff's topics explicitly (idempotent), as shared/topic_config.py lays them out (their
check and repair are shared/topic_admin.py); reads and writes the cluster's ACLs (shared/acl.py
says which)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidReplicationFactorError,
    KafkaConnectionError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request

from shared.acl import Binding, Diff, Operation, PatternType, Permission, ResourceType, Table, diff
from shared.kafka import KafkaAccess, unreachable
from shared.topic_config import TopicLayout
from shared.topics import ALL_TOPICS


class NotAuthorized(Exception):
    """The broker refused what this principal asked for (its ACLs do not allow it)."""


async def ensure_topics(
    kafka: KafkaAccess,
    partitions: int | None = None,
    replication_factor: int | None = None,
    topics: tuple[str, ...] = ALL_TOPICS,
    timeout: float = 60.0,
    *,
    layout: TopicLayout | None = None,
) -> list[str]:
    """Create the topics that do not exist yet, each with its replication factor and configs
    (shared.topic_config: record topics kept for ever, dead letters for their own time); returns
    the ones it created. `layout` is the settings' `topic_layout`; `partitions` and
    `replication_factor` override it (tests, benchmarks). Only the admin may create topics; an
    existing topic is left as it is (`shared.topic_admin.apply_topics` also fixes its configs)."""
    layout = (layout or TopicLayout()).model_copy(update={
        k: v for k, v in (("partitions", partitions), ("replication_factor", replication_factor)) if v is not None})
    admin = await _started_admin(kafka, timeout)
    try:
        existing = set(await admin.list_topics())
        specs = [layout.spec(t) for t in topics if t not in existing]
        if specs:
            response = await admin.create_topics([
                NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                         topic_configs=dict(s.configs)) for s in specs])
            for topic, code, *message in response.topic_errors:
                if code in (0, TopicAlreadyExistsError.errno):
                    continue  # created, or concurrently by another admin: that is the goal
                if code in (TopicAuthorizationFailedError.errno, ClusterAuthorizationFailedError.errno):
                    raise NotAuthorized(f"topic {topic} does not exist (or {kafka.sasl_username} may not describe "
                                        "it), and only the admin may create topics: run `signoff topics create` "
                                        "as the admin")
                hint = (": set SIGNOFF_TOPIC_REPLICATION_FACTOR to at most the number of brokers"
                        if code == InvalidReplicationFactorError.errno else "")
                raise for_code(code)(f"create topic {topic}: {message[0] if message else ''}{hint}")
        return [s.name for s in specs]
    finally:
        await admin.close()


async def _started_admin(kafka: KafkaAccess, timeout: float = 60.0) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), request_timeout_ms=15_000)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:  # the broker may still be starting: retry until the deadline
        try:
            await admin.start()
            return admin
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                await admin.close()
                raise unreachable(kafka) from None
            await asyncio.sleep(0.5)


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The partitions of `topic`, refreshing the consumer's metadata once if it does not know them."""
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call
        parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise RuntimeError(f"topic {topic!r} does not exist: run `signoff topics create` first")
    return parts


# ---------------------------------------------------------------------------------------- ACLs
# aiokafka 0.14 has the DescribeAcls / CreateAcls / DeleteAcls messages but no admin method for
# them; Kafka 4 accepts their v1 to v3 (v0 went with KIP-896), and aiokafka speaks v1.


def _fixed(api_key: int, struct_class: Any) -> type[Request]:
    """A Request sent in exactly the version of `struct_class` (v1, which Kafka 2.0 to 4.x all
    accept), failing clearly when the broker does not speak it."""

    class Fixed(Request[struct_class]):
        API_KEY = api_key

        def __init__(self, struct: object) -> None:
            self.struct = struct

        def prepare(self, versions: dict[int, tuple[int, int]]) -> Any:
            low, high = versions.get(api_key, (0, -1))
            if not low <= struct_class.API_VERSION <= high:
                raise NotImplementedError(f"the broker does not accept {struct_class.__name__} (it speaks "
                                          f"versions {low} to {high} of API {api_key})")
            return self.struct

        def build(self, request_struct_class: Any) -> Any:  # prepare() never calls it
            return self.struct

    return Fixed


_DescribeAcls = _fixed(29, DescribeAclsRequest_v1)
_CreateAcls = _fixed(30, CreateAclsRequest_v1)
_DeleteAcls = _fixed(31, DeleteAclsRequest_v1)


def _check(error_code: int, error_message: str | None, what: str) -> None:
    if error_code:
        error = for_code(error_code)
        text = f"{what}: {error.__name__}" + (f" ({error_message})" if error_message else "")
        if error_code in (29, 31):  # TOPIC_/CLUSTER_AUTHORIZATION_FAILED
            raise NotAuthorized(text + ": ACLs are read and written by the admin")
        raise error(text)


async def _acl_request(kafka: KafkaAccess, request: Any) -> Any:
    """One ACL request, as the admin, on a client opened for it and closed whatever happens."""
    admin = await _started_admin(kafka)
    try:
        return await admin._send_request(request)  # noqa: SLF001 - aiokafka has no ACL admin call
    finally:
        await admin.close()


def _fields(bindings: Sequence[Binding]) -> list[tuple]:
    """Bindings as CreateAcls creations and DeleteAcls filters spell them (the same fields)."""
    return [(b.resource_type, b.resource_name, b.pattern_type, b.principal, b.host, b.operation, b.permission)
            for b in bindings]


async def describe_acls(kafka: KafkaAccess) -> list[Binding]:
    """Every ACL on the cluster (the ones it can be told apart by: allow and deny, any resource)."""
    response = await _acl_request(kafka, _DescribeAcls(DescribeAclsRequest_v1(
        ResourceType.ANY, None, PatternType.ANY, None, None, Operation.ANY, Permission.ANY)))
    _check(response.error_code, response.error_message, "describe ACLs")
    out = []
    for resource_type, name, pattern, acls in response.resources:
        for principal, host, operation, permission in acls:
            try:
                out.append(Binding(principal, ResourceType(resource_type), name, PatternType(pattern),
                                   Operation(operation), Permission(permission), host))
            except ValueError:
                continue  # a resource or operation this table never uses (a transactional id, a token)
    return out


async def create_acls(kafka: KafkaAccess, bindings: Sequence[Binding]) -> None:
    if not bindings:
        return
    response = await _acl_request(kafka, _CreateAcls(CreateAclsRequest_v1(_fields(bindings))))
    for binding, (code, message) in zip(bindings, response.creation_responses, strict=True):
        _check(code, message, f"create {binding}")


async def delete_acls(kafka: KafkaAccess, bindings: Sequence[Binding]) -> None:
    """Delete exactly these ACLs (each filter matches one binding and nothing else)."""
    if not bindings:
        return
    response = await _acl_request(kafka, _DeleteAcls(DeleteAclsRequest_v1(_fields(bindings))))
    for binding, (code, message, _matching) in zip(bindings, response.filter_responses, strict=True):
        _check(code, message, f"delete {binding}")


async def apply_acls(kafka: KafkaAccess, table: Table, *, dry_run: bool = False, timeout: float = 30.0) -> Diff:
    """Make the cluster's Signoff ACLs exactly the table's (create what is missing, delete what
    the table manages and no longer has); returns what it changed (or would, with dry_run). ACLs
    reach the authorizer through the metadata log: it returns once the broker shows them."""
    changes = diff(table, await describe_acls(kafka))
    if dry_run or not changes:
        return changes
    await create_acls(kafka, changes.create)
    await delete_acls(kafka, changes.delete)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while diff(table, await describe_acls(kafka)):
        if loop.time() > deadline:
            raise TimeoutError(f"the broker does not show the new ACLs after {timeout} s")
        await asyncio.sleep(0.1)  # polling the broker's view, bounded by the deadline
    return changes
