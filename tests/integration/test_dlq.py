"""Dead letters on the real broker (shared/dlq.py, `signoff dlq`): a record the shared runtime
dead-letters is listed with its reason and shown; re-driven as the `operator` principal once its
cause is fixed (its signer's key trusted), the consumer accepts it; a second re-drive is refused
unless forced; a clipped letter is refused; and re-drive forges nothing: an altered record fails
the signature check at the consumer again, and an operator cannot write a dead-letter topic.

The consumer is a subscriber of the shared runtime (make_broker, subscribe: the services' own
decoder and dead letters) on rollback.requested, with a consumer group of its own that starts at
the topic's end, connected as the admin (its groups are not a service's, see tests/component/modes.py).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faststream import Context

from shared import codec, dead_letter, dlq, reader, signing, topics
from shared.admin import partitions_of
from shared.broker import make_broker, subscribe
from shared.events import RollbackRequested
from shared.kafka import KafkaAccess
from shared.settings import ServiceSettings
from signoff import client
from tests import keys
from tests.kafka_broker import Cluster

pytestmark = pytest.mark.kafka

TOPIC = topics.ROLLBACK_REQUESTED
DLQ = topics.dlq(TOPIC)
SERVICE = "dlq-probe"
WAIT = 60.0
Handled = tuple[RollbackRequested, dict[str, bytes]]


def fields(kafka: KafkaAccess) -> dict[str, Any]:
    return {"kafka_bootstrap_servers": kafka.bootstrap_servers, "kafka_security_protocol": kafka.security_protocol,
            "kafka_sasl_username": kafka.sasl_username, "kafka_sasl_password": kafka.sasl_password,
            "kafka_ssl_cafile": kafka.ssl_cafile}


async def start_at_end(kafka: KafkaAccess, group: str) -> None:
    """The group's offsets at the topic's end: the probe reads only what this test publishes."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(TOPIC, p) for p in await partitions_of(consumer, TOPIC)]
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        await consumer.commit(end)
    finally:
        await consumer.stop()


@asynccontextmanager
async def probe(kafka: KafkaAccess, trust: Path, prefix: str) -> AsyncIterator[asyncio.Queue[Handled]]:
    """A consumer of rollback.requested trusting the keys of `trust`; yields what its handler got,
    with the record's headers."""
    settings = ServiceSettings(**fields(kafka), consumer_group_prefix=prefix, max_attempts=2,
                               signing_key_file=keys.keys().files["deployer"], trusted_keys=trust)
    broker = make_broker(settings, SERVICE)
    handled: asyncio.Queue[Handled] = asyncio.Queue()

    @subscribe(broker, TOPIC, SERVICE)
    async def handle(event: RollbackRequested, message: Any = Context("message")) -> None:
        await handled.put((event, dict(message.raw_message.headers)))

    await broker.start()
    try:
        yield handled
    finally:
        await broker.stop()


async def next_letter(kafka: KafkaAccess, model: str, since: datetime, *skip: dlq.Letter | object) -> dlq.Letter:
    """The first letter about `model` dead-lettered from `since` but those in `skip` (any object
    with partition and offset), waiting for it (bounded)."""
    found: list[dlq.Letter] = []
    skipped = {(getattr(s, "partition", None), getattr(s, "offset", None)) for s in skip}
    async for r in reader.read(kafka, [DLQ], since=since, until=lambda: bool(found), timeout=WAIT):
        if r.key == model.encode() and (r.partition, r.offset) not in skipped:
            found.append(dead_letter.parse(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, r.headers))
    assert found, f"no letter about {model} within {WAIT}s"
    return found[0]


def trust_with(folder: Path, name: str, private: Ed25519PrivateKey) -> Path:
    """The tests' trust file plus an operator key of `name`."""
    trust = signing.read_trust(keys.keys().trust)
    trust.keys.append(signing.new_entry(private, name, "operator"))
    path = folder / "trusted-keys.yaml"
    signing.write_trust(path, trust)
    return path


def rollback(model: str, by: str) -> RollbackRequested:
    return RollbackRequested(submission_id=uuid.uuid4(), model=model, requested_by=by, reason="v2 misbehaves")


async def test_a_letter_is_listed_shown_and_redriven_once_its_signers_key_is_trusted(
        kafka: KafkaAccess, kafka_cluster: Cluster, unique: str, tmp_path: Path) -> None:
    operator = kafka_cluster.access("operator")
    model, prefix = f"dlq-{unique}", f"test-{unique}"
    late = Ed25519PrivateKey.generate()  # a new operator's key, not yet in the services' trust file
    trusted_later = trust_with(tmp_path, "late-oncall", late)
    await start_at_end(kafka, f"{prefix}-{SERVICE}.{TOPIC}")
    event, since = rollback(model, "late-oncall"), datetime.now(UTC)

    async with probe(kafka, keys.keys().trust, prefix) as handled:
        await client.publish(operator, [event], signer=signing.Signer(late))
        letter = await next_letter(operator, model, since)
        assert handled.empty()
    assert letter.reason.startswith("untrusted event: unknown key id ")
    assert (letter.topic, letter.event_id, letter.key, letter.clipped) == (TOPIC, str(event.event_id), model, False)

    listed = await dlq.list_letters(operator, TOPIC, since=since)
    assert letter in listed and listed == sorted(listed, key=lambda x: x.dead_lettered_at, reverse=True)
    shown = await dlq.show(operator, DLQ, letter.partition, letter.offset, signing.load_trust(keys.keys().trust))
    assert shown.signature is not None and shown.signature.startswith("does not verify: unknown key id")
    assert model in (shown.value_text or "")
    shown = await dlq.show(operator, TOPIC, letter.partition, letter.offset, signing.load_trust(trusted_later))
    assert shown.signature == "verifies: signed by late-oncall (role operator)"

    async with probe(kafka, trusted_later, prefix) as handled:  # the service restarted trusting the key
        result = await dlq.replay(operator, letter, by="oncall")
        got, headers = await asyncio.wait_for(handled.get(), WAIT)
        assert got.event_id == event.event_id  # accepted now: signed by a key the service trusts
        assert headers[dead_letter.REDRIVEN_FROM] == str(letter.coordinates).encode()  # the re-drive, no redelivery
        with pytest.raises(dlq.ReplayRefused, match="re-driven already \\(at .* header says by 'oncall'\\)"):
            await dlq.replay(operator, letter.coordinates, by="oncall")
        again = await dlq.replay(operator, letter.coordinates, by="oncall", force=True)
        assert (await asyncio.wait_for(handled.get(), WAIT))[0].event_id == event.event_id
    assert again.forced and not result.forced and (result.topic, result.key) == (TOPIC, model)
    sent = await reader.read_at(operator, TOPIC, result.partition, result.offset)
    assert sent is not None
    headers = dict(sent.headers)
    assert headers[dead_letter.REDRIVEN_FROM] == str(letter.coordinates).encode()
    assert headers[dead_letter.REDRIVEN_BY] == b"oncall"
    assert sent.value == codec.encode(event, client.SOURCE).value  # the original bytes, unchanged


async def test_redrive_forges_nothing_an_altered_record_fails_its_signature_again(
        kafka: KafkaAccess, kafka_cluster: Cluster, unique: str) -> None:
    operator = kafka_cluster.access("operator")
    model, prefix = f"dlq-forge-{unique}", f"test-{unique}"
    genuine = keys.sign(codec.encode(rollback(model, "oncall"), client.SOURCE), by="oncall")
    altered = genuine.value.replace(b"v2 misbehaves", b"roll back everything")
    assert altered != genuine.value
    letter_headers = [*((n, v.encode()) for n, v in genuine.headers.items()),
                      ("dlq_reason", b"refused: a test letter"),
                      ("dlq_topic", TOPIC.encode()), ("dlq_partition", b"0"), ("dlq_offset", b"0")]
    await start_at_end(kafka, f"{prefix}-{SERVICE}.{TOPIC}")
    since = datetime.now(UTC)
    if kafka_cluster.secured:  # an operator cannot plant a letter: only the consumers write .dlq
        with pytest.raises(TopicAuthorizationFailedError):
            await send(operator, DLQ, genuine.key, altered, letter_headers)
    planted = await send(kafka, DLQ, genuine.key, altered, letter_headers)  # as a compromised consumer could

    async with probe(kafka, keys.keys().trust, prefix) as handled:
        await dlq.replay(operator, dlq.Coordinates(topic=DLQ, partition=planted.partition, offset=planted.offset),
                         by="oncall")
        again = await next_letter(operator, model, since, planted)
        # ... and the operator writing the altered record straight to the topic fares no better.
        await send(operator, TOPIC, genuine.key, altered, [(n, v.encode()) for n, v in genuine.headers.items()])
        third = await next_letter(operator, model, since, planted, again)
        assert handled.empty()
    for letter in (again, third):
        assert letter.reason.startswith("untrusted event: signature does not verify"), letter.reason
    assert again.redriven_from == f"{DLQ}/{planted.partition}/{planted.offset}"


async def test_a_record_only_naming_a_letter_blocks_nothing_and_two_redrives_at_once_publish_once(
        kafka: KafkaAccess, kafka_cluster: Cluster, unique: str) -> None:
    """The re-drive headers are not signed: a writer of the topic naming a letter (and someone who
    never re-drove) does not block its re-drive. Two re-drives of one letter at once (a double
    click, two people on the console) publish it once: the second is refused, naming the first."""
    operator = kafka_cluster.access("operator")
    model = f"dlq-race-{unique}"
    genuine = keys.sign(codec.encode(rollback(model, "oncall"), client.SOURCE), by="oncall")
    letter_headers = [*((n, v.encode()) for n, v in genuine.headers.items()), ("dlq_reason", b"refused: a test"),
                      ("dlq_topic", TOPIC.encode()), ("dlq_partition", b"0"), ("dlq_offset", b"0")]
    planted = await send(kafka, DLQ, genuine.key, genuine.value, letter_headers)
    where = dlq.Coordinates(topic=DLQ, partition=planted.partition, offset=planted.offset)
    since = datetime.now(UTC)
    naming = [(dead_letter.REDRIVEN_FROM, str(where).encode()), (dead_letter.REDRIVEN_BY, b"alice")]
    await send(operator, TOPIC, b"junk", b"junk", naming)
    await send(operator, TOPIC, genuine.key, genuine.value, naming)  # its bytes, not its headers

    results = await asyncio.gather(dlq.replay(operator, where, by="dave"), dlq.replay(operator, where, by="erin"),
                                   return_exceptions=True)
    done = [r for r in results if isinstance(r, dlq.ReplayResult)]
    refused = [r for r in results if isinstance(r, dlq.ReplayRefused)]
    assert len(done) == 1 and len(refused) == 1, results
    assert f"header says by '{done[0].by}'" in str(refused[0]) and "alice" not in str(refused[0])
    sent = [r async for r in reader.read(operator, [TOPIC], since=since)
            if dict(r.headers or ()).get(dead_letter.REDRIVEN_FROM) == str(where).encode()]
    assert len(sent) == 3, "the two records naming it, and one re-drive"


async def send(kafka: KafkaAccess, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]):
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        return await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def signoff(kafka: KafkaAccess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIGNOFF_"))}
    return subprocess.run([sys.executable, "-m", "signoff.cli", "dlq", *args], env={**env, **kafka.env()},
                          capture_output=True, text=True, timeout=120)


async def test_a_clipped_letter_is_listed_and_its_redrive_refused_from_the_cli(
        kafka: KafkaAccess, kafka_cluster: Cluster, unique: str) -> None:
    operator = kafka_cluster.access("operator")
    model = f"dlq-clipped-{unique}"
    genuine = keys.sign(codec.encode(rollback(model, "oncall"), client.SOURCE), by="oncall")
    headers = [*((n, v.encode()) for n, v in genuine.headers.items()), ("dlq_reason", b"invalid event: too long"),
               ("dlq_topic", TOPIC.encode()), ("dlq_partition", b"1"), ("dlq_offset", b"5"),
               (dead_letter.TRUNCATED, b"1500000")]  # as shared.broker.DeadLetters clips a letter
    planted = await send(kafka, DLQ, genuine.key, genuine.value[:100], headers)
    where = (DLQ, str(planted.partition), str(planted.offset))

    listed = signoff(operator, "list", "--topic", TOPIC, "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if f"key={model}" in ln)
    assert line.startswith("/".join(where)) and "[clipped from 1500000 bytes]" in line
    assert "invalid event: too long" in line

    refused = signoff(operator, "replay", *where)
    assert refused.returncode == 1
    assert "holds only the first 100 of the original's 1500000 bytes: the rest is gone" in refused.stderr
    assert "Traceback" not in refused.stderr
    with pytest.raises(dlq.ReplayRefused, match="the rest is gone"):
        await dlq.replay(operator, dlq.coordinates(DLQ, planted.partition, planted.offset), by="oncall", force=True)
    missing = signoff(operator, "show", DLQ, str(planted.partition), str(planted.offset + 10_000))
    assert missing.returncode == 1 and "no letter at" in missing.stderr
