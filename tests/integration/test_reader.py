"""The one topic reader on the real broker: from the beginning or a time, until the end or a
predicate with a deadline, the newest match read backwards; and `signoff watch` built on it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

from shared import reader, topics
from shared.events import RollbackRequested
from signoff import client

pytestmark = pytest.mark.kafka


def rollback(model: str, reason: str) -> RollbackRequested:
    return RollbackRequested(submission_id=uuid.uuid4(), model=model, requested_by="ops", reason=reason)


async def keyed(servers: str, model: str, **options) -> list[RollbackRequested]:
    out = []
    async for record in reader.read(servers, (topics.ROLLBACK_REQUESTED,), **options):
        if record.key == model.encode():
            out.append(reader.decode(record))
    return out


async def test_from_the_beginning_until_the_end_and_from_a_time(kafka: str, unique: str) -> None:
    model = f"reader-{unique}"
    early = [rollback(model, f"early {i}") for i in range(3)]
    await client.publish(kafka, early)
    await asyncio.sleep(0.05)  # record timestamps are in milliseconds: keep the two sets apart
    middle = datetime.now(UTC)
    late = [rollback(model, f"late {i}") for i in range(2)]
    await client.publish(kafka, late)

    assert [e.reason for e in await keyed(kafka, model)] == [e.reason for e in early + late]
    assert [e.reason for e in await keyed(kafka, model, since=middle)] == [e.reason for e in late]


async def test_until_a_predicate_reads_past_the_end_and_a_deadline_ends_it(kafka: str, unique: str) -> None:
    model = f"reader-{unique}"
    seen: list[str] = []

    async def collect() -> None:
        async for record in reader.read(kafka, (topics.ROLLBACK_REQUESTED,), since=datetime.now(UTC),
                                        until=lambda: "last" in seen, timeout=60):
            if record.key == model.encode():
                seen.append(reader.decode(record).reason)

    task = asyncio.create_task(collect())
    await client.publish(kafka, [rollback(model, "first"), rollback(model, "last")])  # after the read began
    await asyncio.wait_for(task, 60)
    assert seen == ["first", "last"]

    loop = asyncio.get_running_loop()
    started = loop.time()
    never = [r async for r in reader.read(kafka, (topics.ROLLBACK_REQUESTED,), since=datetime.now(UTC),
                                          until=lambda: False, timeout=1.0)]
    assert never == [] and loop.time() - started >= 1.0


async def test_find_newest_reads_backwards_and_answers_none_for_an_unknown_id(kafka: str, unique: str) -> None:
    model = f"reader-{unique}"
    events = [rollback(model, f"r{i}") for i in range(5)]
    await client.publish(kafka, events)
    wanted = str(events[2].submission_id).encode()
    record = await reader.find_newest(kafka, (topics.ROLLBACK_REQUESTED,),
                                      lambda r: dict(r.headers).get("ce_subject") == wanted)
    assert reader.decode(record) == events[2]
    assert await reader.find_newest(kafka, (topics.ROLLBACK_REQUESTED,), lambda r: False) is None


def test_watch_of_an_id_never_published_fails_fast(kafka: str) -> None:
    missing = uuid.uuid4()
    result = subprocess.run([sys.executable, "-m", "signoff.cli", "watch", str(missing), "--timeout", "300"],
                            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"no submission or rollback {missing}" in result.stderr


async def test_watch_starts_from_the_operation_not_from_the_beginning(kafka: str, unique: str) -> None:
    """A rollback of a model never deployed gets no outcome here (no deployer runs): the follow
    yields the request alone and ends at its deadline; it read from the request's own time."""
    model = f"reader-{unique}"
    request = rollback(model, "watch me")
    await client.publish(kafka, [request])
    since = await client.started_at(kafka, request.submission_id)
    assert abs((since - request.occurred_at).total_seconds()) < 60
    followed = [e async for e in client.follow(kafka, request.submission_id, timeout=10.0)]
    assert followed == [request]
