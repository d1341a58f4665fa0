"""Bad input, crashes and restarts: nothing is lost, nothing deploys twice, nothing crashes."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from shared import codec, topics
from shared.events import Candidate, ModelSubmitted, Submission
from signoff import client
from signoff.devstack import Stack
from tests import keys
from tests.e2e.conftest import Env
from tests.eventlog import EventLog

pytestmark = pytest.mark.kafka


def good_submission(e2e: Env, model: str, version: str) -> ModelSubmitted:
    path, digest = e2e.artifact(f"{model}-{version}.bin")
    return ModelSubmitted(submission_id=uuid.uuid4(), submission=Submission(
        candidate=Candidate(model=model, version=version, artifact_uri=path.as_uri(),
                            artifact_sha256=digest, data_version="d1", code_commit="abcdef1"),
        metrics={"accuracy": 0.95}, submitter="carol"))


async def test_bad_events_are_dead_lettered_and_the_stream_flows_on(
        e2e: Env, events: EventLog, unique: str) -> None:
    model = f"dlq-{unique}"
    valid = json.loads(good_submission(e2e, model, "0").model_dump_json())
    wrong_type = {**valid, "submission": {**valid["submission"], "metrics": {"accuracy": "high"}}}
    missing = {k: v for k, v in valid.items() if k != "submission"}
    future = {**valid, "schema_version": 99}
    bad = {
        b"{not json": "not JSON",
        json.dumps(missing).encode(): "submission: Field required",
        json.dumps(wrong_type).encode(): "accuracy",
        json.dumps(future).encode(): "schema_version 99 is newer",
    }
    producer = AIOKafkaProducer(**e2e.pipeline.client_kwargs(), acks="all")  # a pipeline's garbage
    await producer.start()
    try:
        for value in bad:  # with the CloudEvents headers, signed: only the body is bad
            headers = {"origin": f"test-{unique}", "ce_id": str(uuid.uuid4()), "ce_type": "signoff.model.submitted"}
            record = keys.sign(codec.Record(topics.MODEL_SUBMITTED, model.encode(), value, headers))
            await producer.send_and_wait(topics.MODEL_SUBMITTED, value, key=record.key,
                                         headers=[(k, v.encode()) for k, v in record.headers.items()])
    finally:
        await producer.stop()
    after = good_submission(e2e, model, "1")
    await client.publish(e2e.pipeline, [after])

    dlq = topics.dlq(topics.MODEL_SUBMITTED)
    mine = lambda log: [s for s in log.records if s.topic == dlq and s.key == model.encode()]  # noqa: E731
    await events.wait_for(lambda log: len(mine(log)) == len(bad), what="4 dead letters")
    for letter, (value, reason) in zip(mine(events), bad.items(), strict=True):
        assert letter.value == value  # the original bytes
        assert letter.headers["origin"] == f"test-{unique}"  # the original headers
        assert reason in letter.headers["dlq_reason"]
        assert letter.headers["dlq_topic"] == topics.MODEL_SUBMITTED
    end = await events.wait_terminal(after.submission_id)
    assert end.topic == topics.DEPLOYMENT_SUCCEEDED


@pytest.mark.parametrize(("service", "how"), [("validator", "kill"), ("deployer", "kill"),
                                              ("policy", "terminate")])
async def test_service_stopped_mid_stream_loses_nothing(
        e2e: Env, events: EventLog, unique: str, service: str, how: str) -> None:
    """kill -9 (no shutdown at all) or SIGTERM (graceful: the in-flight event is finished)."""
    model = f"{how}-{service}-{unique}"
    batch = [good_submission(e2e, model, str(i)) for i in range(40)]
    publishing = asyncio.create_task(client.publish(e2e.pipeline, batch[:20]))
    # Kill -9 once the service is demonstrably in the middle of the stream, and publish the
    # rest while it is down.
    ids = {str(e.submission_id) for e in batch}
    await events.wait_for(
        lambda log: sum(1 for s in log.records if s.topic == topics.DEPLOYMENT_SUCCEEDED and s.subject in ids) >= 3,
        what="the first deployments")
    if how == "kill":
        e2e.stack.kill(service)
    else:
        assert e2e.stack.stop(service) == 0  # a clean exit, within the grace period
    await publishing
    await client.publish(e2e.pipeline, batch[20:])
    e2e.stack.start(service)

    for event in batch:
        end = await events.wait_terminal(event.submission_id, timeout=120)
        assert end.topic == topics.DEPLOYMENT_SUCCEEDED
    installed = sorted(p.name for p in (e2e.model_store / model).iterdir() if p.is_dir())
    assert installed == sorted(str(i) for i in range(40))
    for event in batch:  # redelivery may repeat an event, never with a new id: one deployment each
        ids_seen = {s.headers["ce_id"] for s in events.about(event.submission_id, topics.DEPLOYMENT_SUCCEEDED)}
        assert len(ids_seen) == 1


def test_a_service_refuses_to_start_on_an_invalid_workflow(e2e: Env, tmp_path) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "bad.yaml").write_text(
        "name: bad\ndefault: true\nsteps:\n"
        "  - {name: checks, type: checks}\n"
        "  - {name: review, type: approval, inputs: {approvers: 'bob'}}\n")
    # A second policy beside the session's: its own HTTP port (the session's policy holds that one).
    env = {k: v for k, v in e2e.stack.env.items() if not k.endswith("_HTTP_PORT")}
    stack = Stack(tmp_path, {**env, "SIGNOFF_WORKFLOWS": str(folder)}, services=("policy",),
                  service_env=e2e.stack.service_env)
    with pytest.raises(RuntimeError) as failed:
        stack.start("policy", timeout=30)
    assert "approvers must be a list, such as ['bob']" in str(failed.value)
    assert "bad.yaml" in str(failed.value)
