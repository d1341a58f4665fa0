"""The three-node cluster of deploy/kafka/kafka.sh (cluster-up, signoff.kafka_cluster), on a cluster of
this test's own: Signoff's topics are made there with 3 replicas and min.insync.replicas 2 by
`signoff topics create` (as the admin, SIGNOFF_TOPIC_* from the cluster); one broker is killed
mid-stream and a producer with acks=all keeps writing; a reader reads every record (0 lost, 0
duplicated); the killed broker rejoins every partition's in-sync replicas."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared import topics
from shared.admin import ensure_topics
from shared.kafka import KafkaAccess
from shared.topic_admin import describe_topics
from shared.topic_config import TopicLayout
from signoff.devstack import Cluster
from signoff.kafka_cluster import LocalCluster, throwaway_cluster

pytestmark = pytest.mark.kafka

RECORDS = 400
PARTITIONS = 3
KILL_AFTER = 100  # records acknowledged before the leader's node is killed


def topics_create(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIGNOFF_"))},
           **cluster.admin.env(), **cluster.topic_env()}
    return subprocess.run([sys.executable, "-m", "signoff.cli", "topics", "create"], env=env,
                          capture_output=True, text=True, timeout=120)


async def partitions_of(kafka: KafkaAccess, topic: str) -> list[dict]:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(described["partitions"], key=lambda p: p["partition"])


async def write(kafka: KafkaAccess, topic: str, killed: asyncio.Event, kill_now: asyncio.Event) -> None:
    """RECORDS records, one acknowledged by all in-sync replicas before the next; asks for the kill
    after KILL_AFTER and goes on writing while it happens."""
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True,
                                request_timeout_ms=30_000)
    await producer.start()
    try:
        for i in range(RECORDS):
            if i == KILL_AFTER:
                kill_now.set()
            if i == KILL_AFTER + 50:  # some writes land while the node is down, not only before it
                await asyncio.wait_for(killed.wait(), 60)
            await producer.send_and_wait(topic, str(i).encode(), key=str(i % 7).encode())
    finally:
        await producer.stop()


async def read_all(kafka: KafkaAccess, topic: str, timeout: float = 60.0) -> list[int]:
    """Every record of `topic`, from the start to the end offsets of now (bounded by `timeout`)."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        values: list[int] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            assert loop.time() < deadline, f"read {len(values)} records in {timeout}s, the end offsets say {ends}"
            batches = await consumer.getmany(*partitions, timeout_ms=500)
            values += [int(record.value) for records in batches.values() for record in records]
        return values
    finally:
        await consumer.stop()


async def led(kafka: KafkaAccess, topic: str, timeout: float = 30.0) -> list[dict]:
    """The partitions of a topic just created, once the metadata shows each with its leader."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        partitions = await partitions_of(kafka, topic)
        if len(partitions) == PARTITIONS and all(p["leader"] >= 0 for p in partitions):
            return partitions
        assert loop.time() < deadline, f"{topic}: no leader for every partition in {timeout}s: {partitions}"
        await asyncio.sleep(0.2)  # polling the broker's metadata, bounded by the deadline


async def wait_in_sync(kafka: KafkaAccess, topic: str, node: int, timeout: float = 90.0) -> list[dict]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        partitions = await partitions_of(kafka, topic)
        if all(node in p["isr"] for p in partitions):
            return partitions
        assert loop.time() < deadline, f"node {node} is not back in the in-sync replicas: {partitions}"
        await asyncio.sleep(0.5)  # polling the broker's metadata, bounded by the deadline


@pytest.mark.timeout(600)
async def test_cluster_keeps_every_acknowledged_write_through_a_broker_kill(tmp_path: Path) -> None:
    with throwaway_cluster(tmp_path / "cluster") as nodes:
        cluster = nodes.cluster
        assert len(cluster.servers.split(",")) == 3

        created = topics_create(cluster)
        assert created.returncode == 0, created.stderr
        states = await describe_topics(cluster.admin)
        assert set(states) == set(topics.ALL_TOPICS)
        assert {(s.replication_factor, s.configs.get("min.insync.replicas")) for s in states.values()} == {(3, "2")}

        stream = f"cluster-{uuid.uuid4().hex[:8]}"
        layout = TopicLayout(partitions=PARTITIONS, replication_factor=3, min_insync_replicas=2)
        await ensure_topics(cluster.admin, topics=(stream,), layout=layout)
        leader = (await led(cluster.admin, stream))[0]["leader"]
        await stream_through_a_kill(nodes, stream, leader)

        values = await read_all(cluster.admin, stream)  # with the killed node still down
        assert sorted(values) == list(range(RECORDS)), (
            f"lost {sorted(set(range(RECORDS)) - set(values))[:20]}, duplicated {len(values) - len(set(values))}")

        await asyncio.to_thread(nodes.start, leader)
        partitions = await wait_in_sync(cluster.admin, stream, leader)
        assert all(len(p["isr"]) == 3 for p in partitions)
        assert sorted(await read_all(cluster.admin, stream)) == list(range(RECORDS))


async def stream_through_a_kill(nodes: LocalCluster, stream: str, node: int) -> None:
    """Write the stream; kill `node` (a partition's leader) once KILL_AFTER records are in."""
    killed, kill_now = asyncio.Event(), asyncio.Event()
    writer = asyncio.create_task(write(nodes.cluster.admin, stream, killed, kill_now))
    waiting = asyncio.create_task(kill_now.wait())
    done, _ = await asyncio.wait({writer, waiting}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
    if writer in done:
        waiting.cancel()
        writer.result()  # raises what stopped it
        raise AssertionError("the writer finished before the kill")
    await asyncio.to_thread(nodes.kill, node)
    killed.set()
    await asyncio.wait_for(writer, 180)  # every write acknowledged by 2 of 3 replicas at least
