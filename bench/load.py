"""Load and measurement: publish submissions, wait for each one's deployment, time both ends.

Both timestamps are `time.monotonic()` in this one process: the send time just before the record
is handed to the producer (or, in an open-loop run, the time it was *scheduled* for, so a sender
that falls behind shows up as latency instead of hiding it), the receive time when the consumer
on the last topic hands the record over. Records are matched by the CloudEvents `ce_subject`
header (the submission id), which Signoff sets and the relay passes on.

Where the time goes per hop comes from elsewhere: with `path_topics`, the collector also reads the
path's intermediate topics and keeps each record's broker timestamp (CreateTime, ms, set by the
client that produced it), so the gap between the record a service consumed and the one it produced
is that service's hop (bench.stats.hops). The end-to-end timings above do not depend on these.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.grace import Grace
from shared import codec
from shared.events import Candidate, ModelSubmitted, Submission
from shared.kafka import KafkaAccess

SOURCE = "/signoff/bench"


class BenchFailed(RuntimeError):
    """The run cannot produce honest numbers: something was lost, refused or crashed."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    uri: str
    sha256: str


def submissions(tag: str, count: int, models: int, artifact: Artifact) -> list[ModelSubmitted]:
    """`count` auto-approvable submissions (accuracy 0.95, lineage complete, fair): distinct
    versions `<tag>.<i>` of `models` models, all with the one artifact."""
    return [
        ModelSubmitted(
            submission_id=uuid.uuid4(),
            submission=Submission(
                candidate=Candidate(model=f"bench-model-{i % models}", version=f"{tag}.{i}",
                                    artifact_uri=artifact.uri, artifact_sha256=artifact.sha256,
                                    data_version="2026-01-01", code_commit="3f2c9ab"),
                metrics={"accuracy": 0.95},
                # Fair enough for any parity check (ratio 0.94), so nothing but accuracy decides.
                group_metrics={"group_a": {"selection_rate": 0.31}, "group_b": {"selection_rate": 0.29}},
                submitter="bench",
            ),
        )
        for i in range(count)
    ]


@dataclass
class Timings:
    sent: dict[str, float]
    received: dict[str, float]
    first_send: float
    send_lag_max: float
    duplicates: int
    # topic -> submission id -> broker timestamp (ms) of the first record seen for it there;
    # one entry per topic in the `path_topics` measure() was given, none without.
    stamps: dict[str, dict[str, int]] = field(default_factory=dict)


async def measure(kafka: KafkaAccess, submit_topic: str, done_topic: str, bad_topics: tuple[str, ...],
                  events: list[ModelSubmitted], rate: float | None, grace: Grace,
                  dead: Callable[[], list[str]], path_topics: tuple[str, ...] = ()) -> Timings:
    """Publish `events` to `submit_topic` (open loop at `rate`/s, or as fast as possible when
    None) and wait until each is seen on `done_topic`. Raises BenchFailed when any record shows
    up on `bad_topics`, a process in `dead()` exits, or some submission is still missing
    after the grace period `grace` derives from the drain rate measured in this run.
    `path_topics` (the submit topic, the ones in between, the done topic): also read from their
    end, each record's broker timestamp noted in Timings.stamps."""
    records = [(str(e.submission_id), codec.encode(e, SOURCE)) for e in events]
    collector = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True)
    await collector.start()
    await producer.start()
    sending: asyncio.Task | None = None
    try:
        stamps: dict[str, dict[str, int]] = {t: {} for t in path_topics}
        await _assign_at_end(collector, tuple(dict.fromkeys((done_topic, *bad_topics, *path_topics))))
        sent: dict[str, float] = {}
        received: dict[str, float] = {}
        sending = asyncio.create_task(_send(producer, submit_topic, records, rate, sent))
        expected = {submission_id for submission_id, _ in records}
        duplicates = await _collect(collector, done_topic, expected, received, sending, grace, dead, stamps)
        first_send, lag = sending.result()
        return Timings(sent, received, first_send, lag, duplicates, stamps)
    finally:
        if sending is not None and not sending.done():
            sending.cancel()  # the run failed while still sending
        await producer.stop()
        await collector.stop()


async def _assign_at_end(consumer: AIOKafkaConsumer, topic_names: tuple[str, ...]) -> None:
    """Read the topics from their current end, without a group; resolve the positions now, so
    nothing published after this call is missed."""
    await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call
    partitions = [TopicPartition(t, p) for t in topic_names for p in consumer.partitions_for_topic(t) or ()]
    if {tp.topic for tp in partitions} != set(topic_names):
        raise BenchFailed(f"missing topics: {set(topic_names) - {tp.topic for tp in partitions}}")
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)


async def _send(producer: AIOKafkaProducer, topic: str, records: list, rate: float | None,
                sent: dict[str, float]) -> tuple[float, float]:
    """Returns (first send time, worst lag behind the schedule) once every record is acked."""
    acks, lag = [], 0.0
    start = time.monotonic() + 0.05
    for i, (submission_id, record) in enumerate(records):
        if rate is None:
            sent[submission_id] = time.monotonic()
        else:
            scheduled = start + i / rate
            if (ahead := scheduled - time.monotonic()) > 0:
                await asyncio.sleep(ahead)
            lag = max(lag, time.monotonic() - scheduled)
            sent[submission_id] = scheduled
        headers = [(k, v.encode()) for k, v in record.headers.items()]
        acks.append(await producer.send(topic, record.value, key=record.key, headers=headers))
    await asyncio.gather(*acks)  # every submission is on the broker (acks=all)
    return min(sent.values()), lag


async def _collect(consumer: AIOKafkaConsumer, done_topic: str, expected: set[str],
                   received: dict[str, float], sending: asyncio.Task, grace: Grace,
                   dead: Callable[[], list[str]], stamps: dict[str, dict[str, int]]) -> int:
    """Until every expected submission is on `done_topic`; returns how many arrived there twice.
    On a topic in `stamps`, an expected submission's first record has its broker timestamp noted;
    other than on the done topic, that is all such a record is read for."""
    duplicates, sends_done = 0, None
    while len(received) < len(expected):
        batches = await consumer.getmany(timeout_ms=100)
        now = time.monotonic()
        for tp, batch in batches.items():
            for record in batch:
                subject = dict(record.headers).get("ce_subject", b"").decode()
                if tp.topic in stamps and subject in expected:
                    stamps[tp.topic].setdefault(subject, record.timestamp)
                if tp.topic in stamps and tp.topic != done_topic:
                    continue  # a topic of the path, read for its stamps only
                if tp.topic != done_topic:
                    raise BenchFailed(f"submission {subject or '?'} went to {tp.topic}, not "
                                      f"{done_topic}: {record.value[:500]!r}")
                if subject not in expected:
                    continue  # a straggler of an earlier run
                if subject in received:
                    duplicates += 1
                else:
                    received[subject] = now
        if crashed := dead():
            raise BenchFailed(f"process exited during the run: {', '.join(crashed)}")
        if sending.done():
            first_send, _ = sending.result()  # re-raises a failed send
            sends_done = sends_done or now
            last = max(received.values(), default=None)
            deadline = grace.deadline(sends_done=sends_done, first_send=first_send, last_arrival=last,
                                      received=len(received), expected=len(expected))
            if now > deadline:
                missing = sorted(expected - set(received))
                drained = 0.0 if last is None else last - first_send
                raise BenchFailed(f"{len(missing)} of {len(expected)} submissions not on {done_topic} "
                                  f"{now - sends_done:.0f}s after the last was sent ("
                                  f"{grace.describe(len(received), drained)}), e.g. {missing[:3]}")
    await sending  # the last ack can come after the last deployment was seen
    return duplicates


async def payload_sizes(kafka: KafkaAccess, topic_names: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Mean (value bytes, header name+value bytes) of the last record of each non-empty partition."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        # Every partition up front: once a consumer has an assignment, its metadata only
        # covers the assigned topics.
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call
        parts = [TopicPartition(t, p) for t in topic_names for p in consumer.partitions_for_topic(t) or ()]
        ends = await consumer.end_offsets(parts)
        wanted = [tp for tp in parts if ends[tp] > 0]
        consumer.assign(wanted)
        for tp in wanted:
            consumer.seek(tp, ends[tp] - 1)
        last: dict[TopicPartition, tuple[int, int]] = {}
        deadline = time.monotonic() + 10
        while len(last) < len(wanted) and time.monotonic() < deadline:
            for tp, batch in (await consumer.getmany(timeout_ms=1000)).items():
                record = batch[0]
                last.setdefault(tp, (len(record.value), sum(len(k) + len(v) for k, v in record.headers)))
    finally:
        await consumer.stop()
    sizes = {}
    for topic in topic_names:
        seen = [size for tp, size in last.items() if tp.topic == topic]
        if not seen:
            raise BenchFailed(f"could not read the last records of {topic} to measure their size")
        sizes[topic] = (round(sum(v for v, _ in seen) / len(seen)), round(sum(h for _, h in seen) / len(seen)))
    return sizes
