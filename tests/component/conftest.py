"""Each service's app module, imported afresh with its settings pointing into tmp_path.

Settings are read when an app module is imported, so the fixture sets the environment first and
then (re)imports the module: every test gets its own broker, emitter, state files and folders.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from faststream import Context
from faststream.kafka import KafkaBroker

from shared import codec, topics
from shared.events import Event
from tests.unit.factories import workflow_folder


@dataclass
class Artifact:
    path: Path
    sha256: str


@pytest.fixture
def artifact_root(tmp_path) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    return root


@pytest.fixture
def artifact(artifact_root) -> Artifact:
    path = artifact_root / "fraud-1.4.0.onnx"
    path.write_bytes(b"onnx weights")
    return Artifact(path, hashlib.sha256(b"onnx weights").hexdigest())


# Approve automatically at 90% accuracy and above, otherwise ask alice or the leads (bob).
WORKFLOW = """\
name: test-policy
default: true
steps:
  - name: automated_checks
    type: checks
    inputs: {min: {accuracy: 0.8}}
  - name: manual_approval
    type: approval
    when: "metrics.accuracy < 0.9"
    inputs: {approvers: ['alice', 'group:leads'], quorum: 1, timeout: 24h}
  - name: deploy
    type: deploy
"""
GROUPS = "leads: [bob]\n"


def write_workflows(folder: Path, groups: str = GROUPS, **files: str) -> Path:
    """A workflow folder: one `<name>.yaml` per keyword argument, and groups.yaml."""
    return workflow_folder(folder, groups, **files)


@pytest.fixture
def workflows(tmp_path) -> Path:
    return write_workflows(tmp_path / "workflows", default=WORKFLOW)


@pytest.fixture
def load_app(monkeypatch, tmp_path, artifact_root, workflows):
    """Import `services.<name>.app` with env pointing into tmp_path (plus any `env` given)."""
    loaded: list[ModuleType] = []

    def load(name: str, **env: str) -> ModuleType:
        defaults = {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # never contacted: TestKafkaBroker fakes it
            "SIGNOFF_MAX_ATTEMPTS": "2",
            "SIGNOFF_WORKFLOWS": str(workflows),
            "VALIDATOR_ARTIFACT_ROOTS": json.dumps([str(artifact_root)]),
            "POLICY_STATE_DB": str(tmp_path / "policy" / "state.db"),
            "DEPLOYER_ARTIFACT_ROOTS": json.dumps([str(artifact_root)]),
            "DEPLOYER_MODEL_STORE": str(tmp_path / "store"),
            "DEPLOYER_STATE_DB": str(tmp_path / "deployer" / "state.db"),
            "REVIEW_NOTIFIER_STATE_DB": str(tmp_path / "review" / "reviews.db"),
            "REVIEW_NOTIFIER_API_TOKEN": "s3cret",
        }
        for key, value in {**defaults, **env}.items():
            monkeypatch.setenv(key, value)
        module_name = f"services.{name}.app"
        module = importlib.reload(sys.modules[module_name]) if module_name in sys.modules \
            else importlib.import_module(module_name)
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        if store := getattr(module, "store", None):
            store.close()


async def _raw(msg: Any, original_decoder: Any = None) -> bytes:
    return msg.body


@dataclass
class Captured:
    """Records published to a topic, as the consumer would see them."""

    records: list[Any] = field(default_factory=list)

    @property
    def values(self) -> list[bytes]:
        return [r.value for r in self.records]

    def headers(self, i: int = 0) -> dict[str, str]:
        return {k: v.decode() for k, v in self.records[i].headers}

    def events(self) -> list[Event]:
        return [codec.decode(r.topic, r.value) for r in self.records]


def capture(broker: KafkaBroker, topic: str) -> Captured:
    """Subscribe to `topic` (before TestKafkaBroker starts) and keep every raw record."""
    captured = Captured()

    @broker.subscriber(topic, group_id=f"test-capture.{topic}", decoder=_raw)
    async def _keep(body: bytes, message=Context("message")) -> None:
        captured.records.append(message.raw_message)

    return captured


async def publish(broker: KafkaBroker, event: Event, source: str = "/test") -> None:
    record = codec.encode(event, source)
    await broker.publish(record.value, topic=record.topic, key=record.key, headers=record.headers)


async def publish_raw(broker: KafkaBroker, topic: str, value: bytes, key: bytes = b"fraud-detector") -> None:
    await broker.publish(value, topic=topic, key=key,
                         headers={"ce_id": "raw-1", "content-type": "application/json"})


DLQ = topics.dlq


def sent(publisher: Any, topic: str) -> Event:
    """The one event `publisher` published; its test mock records the body as the consumer decodes
    it (JSON content-type: a dict), so validate that against the topic's contract."""
    publisher.mock.assert_called_once()
    body = publisher.mock.call_args.args[0]
    return codec.decode(topic, body if isinstance(body, bytes) else json.dumps(body).encode())
