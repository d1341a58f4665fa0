"""The deployer's targets, canary, rollback and revocation with the four services as real processes
on the real broker, and the CLI as a user runs it.

The module adds two workflows to the stack's workflow folder (webhook models `e2ehook-*`, canary
models `e2ecanary-*`) and restarts the policy and the deployer to load them, as an operator would.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer

from services.deployer.targets import _store_files as store_files
from shared import topics
from tests.e2e.conftest import Env
from tests.eventlog import EventLog
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.kafka

SECRET = "e2e-webhook-secret"
HOOK = """\
name: e2e-hook
match: ["e2ehook-*"]
steps:
  - {{name: checks, type: checks, inputs: {{min: {{accuracy: 0.80}}}}}}
  - {{name: deploy, type: deploy, inputs: {{target: webhook, url: "{url}", secret_env: E2E_HOOK_SECRET}}}}
"""
CANARY = """\
name: e2e-canary
match: ["e2ecanary-*"]
steps:
  - {name: checks, type: checks, inputs: {min: {accuracy: 0.80}}}
  - name: deploy
    type: deploy
    inputs:
      target: model-store
      strategy: canary
      stages: [{name: canary, traffic_percent: 10, bake: 1s}, {name: full, traffic_percent: 100}]
"""


@pytest.fixture(scope="module")
def receiver(e2e: Env) -> Iterator[Receiver]:
    receiver = Receiver(SECRET.encode()).start()
    folder = e2e.workdir / "workflows"
    (folder / "e2e-hook.yaml").write_text(HOOK.format(url=receiver.url))
    (folder / "e2e-canary.yaml").write_text(CANARY)
    e2e.stack.env.update({"E2E_HOOK_SECRET": SECRET, "DEPLOYER_WEBHOOK_SECRET_ENVS": '["E2E_HOOK_SECRET"]',
                          "DEPLOYER_SCHEDULE_POLL_SECONDS": "0.1", "DEPLOYER_RETRY_BACKOFF_SECONDS": "0.05",
                          "DEPLOYER_WEBHOOK_ALLOW_HTTP_LOOPBACK": "true"})  # the receiver is http://127.0.0.1
    for service in ("policy", "deployer"):  # workflows are read at start
        e2e.stack.stop(service)
        e2e.stack.start(service)
    yield receiver
    receiver.stop()


def submit(e2e: Env, model: str, version: str, accuracy: float = 0.95, artifact: str | None = None) -> str:
    """Through the CLI, as a training job does; the artifact is an .onnx file of its own bytes."""
    if artifact is None:
        path, _ = e2e.artifact(f"{model}-{version}.onnx", b"onnx-weights\n" + os.urandom(2048))
        artifact = str(path)
    return e2e.cli("submit", "--model", model, "--version", version, "--artifact", artifact,
                   "--metric", f"accuracy={accuracy}", "--data-version", "2026-11-01",
                   "--code-commit", "3f2c9ab", "--submitter", "carol").stdout.strip()


async def barrier(e2e: Env, events: EventLog, model: str) -> None:
    """Everything published for `model` before this call has been handled once a later
    submission of the same model (same key, so same partitions, in order) has been deployed."""
    sid = submit(e2e, model, f"barrier-{uuid.uuid4().hex[:8]}")
    assert (await events.wait_terminal(sid)).topic == topics.DEPLOYMENT_SUCCEEDED


async def redeliver(e2e: Env, record) -> None:
    """The very same record again, twice: what a redelivery looks like to the deployer."""
    producer = AIOKafkaProducer(**e2e.admin.client_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait(record.topic, record.value, key=record.key,
                                         headers=[(k, v.encode()) for k, v in record.headers.items()])
    finally:
        await producer.stop()


async def test_webhook_gets_one_signed_request_per_deployment_despite_redelivery(
        e2e: Env, events: EventLog, receiver: Receiver, unique: str) -> None:
    model = f"e2ehook-{unique}"
    sid = submit(e2e, model, "1.0.0", accuracy=0.95)
    end = await events.wait_terminal(sid)
    assert end.topic == topics.DEPLOYMENT_SUCCEEDED
    await redeliver(e2e, events.about(sid, topics.REVIEW_DECIDED)[0])
    await barrier(e2e, events, model)  # a later deployment of the same model: the redelivery was handled

    mine = [r for r in receiver.requests if r.body.get("model") == model and r.body["version"] == "1.0.0"]
    assert len(mine) == 1 and mine[0].signed
    assert mine[0].key == str(end.event.event_id)  # Idempotency-Key: the deployment's event id
    body = mine[0].body
    assert (body["action"], body["traffic_percent"], body["submission_id"]) == ("deploy", 100, sid)
    assert body["artifact_sha256"] == end.event.candidate.artifact_sha256
    assert len({s.event.event_id for s in events.about(sid, topics.DEPLOYMENT_SUCCEEDED)}) == 1
    assert end.event.target == "webhook" and SECRET not in end.value.decode()


async def test_canary_goes_through_its_stages_with_the_bake_time(
        e2e: Env, events: EventLog, receiver: Receiver, unique: str) -> None:
    model = f"e2ecanary-{unique}"
    first = submit(e2e, model, "1", accuracy=0.95)
    assert (await events.wait_terminal(first)).topic == topics.DEPLOYMENT_SUCCEEDED
    sid = submit(e2e, model, "2", accuracy=0.95)

    end = await events.wait_terminal(sid)

    assert end.topic == topics.DEPLOYMENT_SUCCEEDED
    stages = [s.event for s in events.about(sid, topics.DEPLOYMENT_PROGRESSED)]
    assert [(p.stage, p.traffic_percent) for p in stages] == [("canary", 10), ("full", 100)]
    assert (stages[1].occurred_at - stages[0].occurred_at).total_seconds() >= 1.0  # baked
    assert store_files.production(e2e.model_store, model) == "2"
    assert json.loads((e2e.model_store / model / "traffic.json").read_text())["split"] == {"2": 100}
    watched = e2e.cli("watch", sid, "--timeout", "30")
    assert "stage canary at 10% of traffic" in watched.stdout and "=> deployed" in watched.stdout


async def test_rollback_and_revocation_through_kafka_with_their_history(
        e2e: Env, events: EventLog, unique: str) -> None:
    model = f"ops-{unique}"
    sids = {}
    for version in ("1", "2", "3"):
        sids[version] = submit(e2e, model, version, accuracy=0.95)
        assert (await events.wait_terminal(sids[version])).topic == topics.DEPLOYMENT_SUCCEEDED
    assert store_files.production(e2e.model_store, model) == "3"

    rolled = e2e.cli("rollback", model, "--reason", "p99 latency doubled", "--wait", "--timeout", "60",
                     signer="oncall")  # who asked is the holder of the signing key
    op = rolled.stdout.splitlines()[0]
    assert "=> rolled back" in rolled.stdout and f"{model} 3 -> 2, by oncall" in rolled.stdout
    assert store_files.production(e2e.model_store, model) == "2"

    revoked = e2e.cli("revoke", sids["2"], "--reason", "trained on PII", "--wait", "--timeout", "60",
                      signer="security")
    assert "=> revoked" in revoked.stdout
    assert store_files.production(e2e.model_store, model) == "1"
    assert not (e2e.model_store / model / "2").exists()

    watched = e2e.cli("watch", sids["2"], "--timeout", "30")  # the whole story of version 2
    lines = watched.stdout
    for expected in ("deployment.succeeded", "revocation.requested", "asked by security: trained on PII",
                     f"{model} 2 -> 1, by security", "revoked by security (was in production)", "=> revoked"):
        assert expected in lines, (expected, lines)

    nothing = e2e.cli("rollback", model, "--to", "2", "--reason", "try 2 again",
                      "--wait", "--timeout", "60", check=False)
    assert nothing.returncode == 4 and "was revoked; a revoked version is never redeployed" in nothing.stdout

    # The revoked bytes under a new version: approved by the policy, refused by the deployer.
    again, _ = e2e.artifact(f"{model}-again.bin", (e2e.artifacts / f"{model}-2.onnx").read_bytes())
    resubmitted = submit(e2e, model, "4", accuracy=0.95, artifact=str(again))
    end = await events.wait_terminal(resubmitted)
    assert end.topic == topics.DEPLOYMENT_FAILED and "was revoked" in end.event.reason
    assert store_files.production(e2e.model_store, model) == "1"

    history = e2e.cli("history", model).stdout
    assert f"op {op[:8]}" in history and "asked by oncall: p99 latency doubled" in history
    assert "revoked by security (was in production): trained on PII" in history
    assert history.count("deployment.succeeded") == 3 and "deployment.failed" in history
    assert "approved (automatic) by policy:e2e-default" in history


async def test_rollback_with_nothing_to_go_back_to_is_refused(e2e: Env, events: EventLog, unique: str) -> None:
    model = f"lonely-{unique}"
    sid = submit(e2e, model, "1", accuracy=0.95)
    assert (await events.wait_terminal(sid)).topic == topics.DEPLOYMENT_SUCCEEDED

    result = e2e.cli("rollback", model, "--reason", "bad", "--wait", "--timeout", "60",
                     check=False)

    assert result.returncode == 4 and "nothing to roll back to" in result.stdout
    assert store_files.production(e2e.model_store, model) == "1"
