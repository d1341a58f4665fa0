"""Start-up holds under what the log and the machine throw at it: poison records on the topics a
service replays at start are skipped and counted, and a service whose port is taken exits non-zero
without ever reporting itself started."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaProducer

from shared import codec, topics
from signoff import client
from signoff.devstack import READY_LINE
from tests import keys
from tests.e2e.conftest import Env
from tests.e2e.test_resilience import good_submission
from tests.eventlog import EventLog
from tests.unit import factories as f

pytestmark = pytest.mark.kafka


def poison(model: str) -> list[tuple[str, bytes]]:
    """Records that stopped the validator and the policy at start (ValueError from the int-string
    limit, RecursionError), or that no service may read (too long, too large)."""
    good = codec.encode(f.deployment_succeeded(), "/test").value.decode()
    good = good.replace('"model":"fraud-detector"', json.dumps({"model": model})[1:-1])
    return [
        (topics.DEPLOYMENT_SUCCEEDED, good.replace('"accuracy":0.95', '"accuracy":' + "9" * 5000).encode()),
        (topics.DEPLOYMENT_ROLLED_BACK, b"[" * 10_000 + b"]" * 10_000),
        (topics.DEPLOYMENT_REVOKED, good.replace('"target":"model-store"', f'"target":"{"t" * 900_000}"').encode()),
        (topics.DEPLOYMENT_SUCCEEDED, b'{"reason": "' + b"x" * codec.MAX_EVENT_BYTES + b'"}'),
    ]


def replay_log(e2e: Env, service: str, offset: int) -> dict:
    """The `replay_skipped_records` line the service logged at this start."""
    lines = e2e.stack.log_path(service).read_bytes()[offset:].decode(errors="replace").splitlines()
    found = [json.loads(line) for line in lines if '"replay_skipped_records"' in line]
    assert found, f"{service} logged no replay_skipped_records line"
    return found[-1]


async def test_services_start_with_poison_records_on_the_deployment_topics(
        e2e: Env, events: EventLog, unique: str) -> None:
    model = f"poison-{unique}"
    producer = AIOKafkaProducer(**e2e.admin.client_kwargs(), acks="all")  # only the deployer (or admin) may
    await producer.start()
    try:
        for topic, value in poison(model):  # signed by the deployer: they reach the parser
            ce = {"ce_id": f"poison-{unique}", "ce_type": f"signoff.{topic}"}  # only the body is poison
            record = keys.sign(codec.Record(topic, model.encode(), value, ce))
            await producer.send_and_wait(topic, value, key=record.key,
                                         headers=[(k, v.encode()) for k, v in record.headers.items()])
    finally:
        await producer.stop()

    for service in ("validator", "policy"):
        e2e.stack.stop(service)
        offset = e2e.stack.log_path(service).stat().st_size
        e2e.stack.start(service, timeout=90)  # raises if the service exits or never reports ready
        skipped = replay_log(e2e, service, offset)
        assert skipped["skipped"] >= 4, skipped  # these four, and any a test before left
        assert {topics.DEPLOYMENT_SUCCEEDED, topics.DEPLOYMENT_ROLLED_BACK,
                topics.DEPLOYMENT_REVOKED} <= set(skipped["by_topic"]), skipped

    after = good_submission(e2e, model, "1")  # and the restarted services decide as before
    await client.publish(e2e.pipeline, [after])
    end = await events.wait_terminal(after.submission_id, timeout=120)
    assert end.topic == topics.DEPLOYMENT_SUCCEEDED


def test_the_review_notifier_exits_non_zero_when_its_port_is_taken(e2e: Env, tmp_path, unique: str) -> None:
    """Before: it logged "started successfully" and then lost its HTTP API (uvicorn's sys.exit in
    a task), so `make up` and the harness took it as running."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**e2e.stack.env_of("review_notifier"), "REVIEW_NOTIFIER_HTTP_PORT": str(port),
               "REVIEW_NOTIFIER_STATE_DB": str(tmp_path / "reviews.db"),
               "SIGNOFF_CONSUMER_GROUP_PREFIX": f"test-{unique}"}
        done = subprocess.run(
            [sys.executable, "-m", "faststream", "run", "--factory", "services.review_notifier.app:create_app"],
            env=env, capture_output=True, text=True, timeout=60)  # the deadline: it must exit by itself
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    [line] = [json.loads(x) for x in output.splitlines() if x.startswith("{") and '"http_port_unavailable"' in x]
    assert (line["level"], line["port"]) == ("error", port) and "Address already in use" in line["error"]
    assert f"cannot listen on 127.0.0.1:{port}" in output and "REVIEW_NOTIFIER_HTTP_PORT" in output
    assert READY_LINE not in output
