"""What receiving one record costs, by layer: the floor under a service's CPU per submission.

Each mode drains the same records (a topic, from offset 0) in a process of its own, running as
the review-notifier's principal with its keys, and reports the process's CPU from the first
record to the last, per record:

- `bare`: an aiokafka consumer and `json.loads`, as the bare relay receives;
- `checked`: the same, plus what every Signoff consumer must do with a record: verify its
  signature against the trust file, decode and upcast it, validate it as its event type;
- `subscriber`: as a service's subscriber receives (`shared.broker.subscribe`, in a consumer
  group of the review-notifier's): FastStream and the services' middlewares (logs, traces,
  metrics, dead letters) once per record, the same checks in the decoder, FastDepends handing the
  validated event to a handler that only counts, the offsets committed in batches;
- `follower`: as a service's follower keeps a view (`shared.broker.follow`): FastStream once per
  batch of records, the same checks per record (`shared.broker.verified`).

A drained backlog is fetched in large batches, so these are floors: a live record, fetched on its
own, costs more (and a follower's batch is then often one record). `python -m bench.run` runs the
four after its measured runs, on deployment.succeeded; by hand:

    python -m bench.receive TOPIC MODE    # with a service's environment; prints one JSON line
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from shared import codec
from shared.broker import follow, keys_of, make_broker, subscribe, verified
from shared.events import BY_TOPIC
from shared.logging import configure
from shared.reader import bounds

MODES = ("bare", "checked", "subscriber", "follower")
TIMEOUT_S = 120.0


class Clock:
    """Process CPU seconds at the first record and at the last one."""

    def __init__(self, expected: int) -> None:
        self.expected, self.count = expected, 0
        self.first = self.last = 0.0
        self.done = asyncio.Event()

    def tick(self) -> None:
        self.count += 1
        if self.count == 1:
            self.first = time.process_time()
        if self.count == self.expected:
            self.last = time.process_time()
            self.done.set()

    def result(self, mode: str) -> dict[str, Any]:
        per = (self.last - self.first) / max(self.expected - 1, 1)
        return {"mode": mode, "records": self.expected, "cpu_us_per_record": round(per * 1e6, 1)}


async def run(topic: str, mode: str) -> dict[str, Any]:
    from services.review_notifier import SERVICE  # the principal whose environment this runs in
    from services.review_notifier.settings import ReviewNotifierSettings

    settings = ReviewNotifierSettings()
    configure(settings.log_level)  # as the service: JSON lines, FastStream's per-record lines filtered out
    broker = make_broker(settings, SERVICE)
    keys_of(broker).open()
    kafka = settings.kafka
    begin, end = await bounds(kafka, [topic])
    expected = sum(end[tp] - begin[tp] for tp in end)  # from the beginning: every record, once
    if expected < 2:
        raise SystemExit(f"{topic} holds {expected} records: nothing to measure")
    clock = Clock(expected)
    cls = BY_TOPIC[topic]
    if mode in ("subscriber", "follower"):
        if mode == "subscriber":
            group = f"{SERVICE}.bench-receive-{uuid.uuid4().hex[:8]}"  # a group of its own: read from 0

            @subscribe(broker, topic, group)
            async def one(event: cls) -> None:  # type: ignore[valid-type]
                clock.tick()
        else:
            @follow(broker, topic)
            async def batch(records: list[Any]) -> None:
                for record in records:
                    verified(broker, record)
                    clock.tick()

        await broker.start()
        try:
            await asyncio.wait_for(clock.done.wait(), TIMEOUT_S)
        finally:
            await broker.stop()
        return clock.result(mode)
    keyring = keys_of(broker).keyring
    consumer = AIOKafkaConsumer(topic, **kafka.client_kwargs(), group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        async def drain() -> None:
            while not clock.done.is_set():
                record = await consumer.getone()
                if mode == "bare":
                    json.loads(record.value)
                else:
                    keyring.verify(record.topic, record.key, record.headers, record.value)
                    codec.decode_record(record.topic, record.key, record.value, record.headers)
                clock.tick()

        await asyncio.wait_for(drain(), TIMEOUT_S)
    finally:
        await consumer.stop()
    return clock.result(mode)


def main(argv: list[str]) -> None:
    topic, mode = argv
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {', '.join(MODES)}")
    print(json.dumps(asyncio.run(run(topic, mode))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
