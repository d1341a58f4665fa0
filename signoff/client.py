"""Talking to Signoff: publish a submission, follow it to its end, cast a review vote.

Any Kafka client can do what `submit` does by following the documented contract (README):
a JSON `model.submitted` event keyed by the model name, with CloudEvents headers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared import codec, topics
from shared.admin import partitions_of
from shared.events import Event, ModelSubmitted, Submission
from signoff.timeline import is_terminal

SOURCE = "/signoff/cli"


async def submit(bootstrap_servers: str, submission: Submission,
                 submission_id: uuid.UUID | None = None) -> ModelSubmitted:
    """Publish `model.submitted` and wait until every in-sync replica has it."""
    event = ModelSubmitted(submission_id=submission_id or uuid.uuid4(), submission=submission)
    await publish(bootstrap_servers, [event])
    return event


async def publish(bootstrap_servers: str, events: list[Event], source: str = SOURCE) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                                enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            record = codec.encode(event, source)
            await producer.send_and_wait(
                record.topic, record.value, key=record.key,
                headers=[(k, v.encode()) for k, v in record.headers.items()],
            )
    finally:
        await producer.stop()


async def follow(bootstrap_servers: str, submission_id: uuid.UUID,
                 timeout: float) -> AsyncIterator[Event]:
    """Yield the submission's events (each once) until it is deployed, rejected or failed, or
    until `timeout` seconds pass. Reads every event topic from the beginning, without a group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics.EVENT_TOPICS
                      for p in await partitions_of(consumer, t)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        wanted = str(submission_id).encode()
        seen: set[uuid.UUID] = set()
        deadline = asyncio.get_running_loop().time() + timeout
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            batches = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            records = sorted((r for rs in batches.values() for r in rs), key=lambda r: r.timestamp)
            for record in records:
                if dict(record.headers).get("ce_subject") != wanted:
                    continue
                try:
                    event = codec.decode(record.topic, record.value)
                except codec.BadEvent:
                    continue  # not ours to judge: the services dead-letter it
                if event.event_id in seen:
                    continue  # a redelivered duplicate
                seen.add(event.event_id)
                yield event
                if is_terminal(event):
                    return
    finally:
        await consumer.stop()


def review(base_url: str, token: str | None, submission_id: uuid.UUID, decision: str,
           approver: str, reason: str) -> dict:
    """Cast a vote through the review-notifier's HTTP API; raises with its message when refused."""
    response = httpx.post(
        f"{base_url.rstrip('/')}/reviews/{submission_id}/decision",
        json={"decision": decision, "approver": approver, "reason": reason},
        headers={"Authorization": f"Bearer {token}"} if token else {},
        timeout=10.0,
    )
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ReviewRefused(response.status_code, str(detail))
    return response.json()


class ReviewRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
