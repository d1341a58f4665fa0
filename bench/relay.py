"""One hop of the bare relay: consume a topic, produce to the next, commit; nothing else.

It stands for one service with the same Kafka semantics (consumer group, one record at a time,
acks=all + idempotent producer, wait for the ack, commit after each record) but no framework,
no validation, no logging and no side effects, so the difference to Signoff is what Signoff adds.
One difference runs the other way: Signoff batches its offset commits (shared/commits.py, one
request per 0.25 s per consumer), the relay commits each record as the naive consumer does.
The outgoing value is a JSON object padded to the size the matching Signoff event has; the
incoming headers (CloudEvents, with `ce_subject`) are passed on and padded likewise.

    python -m bench.relay BOOTSTRAP SOURCE SINK GROUP VALUE_SIZE HEADERS_SIZE
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.kafka import KafkaAccess, KafkaSettings

READY_LINE = "relay ready"


def padded_value(submission_id: str, size: int) -> bytes:
    """`{"submission_id": ..., "pad": "xxx"}`, exactly `size` bytes when size allows."""
    bare = json.dumps({"submission_id": submission_id, "pad": ""})
    return json.dumps({"submission_id": submission_id, "pad": "x" * max(0, size - len(bare))}).encode()


def padded_headers(headers: list[tuple[str, bytes]], size: int) -> list[tuple[str, bytes]]:
    """The incoming headers plus one `pad` header, so name+value bytes add up to `size`."""
    used = sum(len(k) + len(v) for k, v in headers) + len("pad")
    return [*headers, ("pad", b"x" * max(0, size - used))]


async def relay(kafka: KafkaAccess, source: str, sink: str, group: str, value_size: int,
                headers_size: int) -> None:
    consumer = AIOKafkaConsumer(source, **kafka.client_kwargs(), group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    await consumer.start()
    try:
        while not consumer.assignment():  # joined the group: from now on nothing is missed
            await asyncio.sleep(0.05)
        print(READY_LINE, flush=True)
        while True:
            record = await consumer.getone()
            submission_id = json.loads(record.value)["submission_id"]
            await producer.send_and_wait(sink, padded_value(submission_id, value_size), key=record.key,
                                         headers=padded_headers(list(record.headers), headers_size))
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def main(argv: list[str]) -> None:
    bootstrap, source, sink, group, value_size, headers_size = argv
    kafka = KafkaSettings(kafka_bootstrap_servers=bootstrap).kafka  # credentials: KAFKA_SASL_* variables
    task = asyncio.create_task(relay(kafka, source, sink, group, int(value_size), int(headers_size)))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass  # SIGTERM: the consumer and producer were stopped in relay()'s finally


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
