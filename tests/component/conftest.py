"""Each service built by its app factory from a settings object pointing into tmp_path.

`build_app("policy", workflows=folder)` returns the service's wiring (broker, emitter, stores,
handlers) with its resources opened, as the app's start-up hook would open them; nothing reads
the environment and no module is reloaded. The fixture closes what it opened.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faststream import Context
from faststream.kafka import KafkaBroker

from shared import codec, topics
from shared.events import BY_TOPIC, Event
from tests import keys
from tests.component import modes
from tests.component.modes import running, settle
from tests.unit.factories import workflow_folder

__all__ = ["running", "settle"]


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


SETTINGS = {
    "validator": "ValidatorSettings", "policy": "PolicySettings",
    "deployer": "DeployerSettings", "review_notifier": "ReviewNotifierSettings",
}


@pytest.fixture(scope="session")
def broker_mode(request: pytest.FixtureRequest) -> str:
    """`--broker`: memory (default), or kafka, which starts the real broker for the session."""
    modes.MODE = request.config.getoption("--broker")
    if modes.MODE == "kafka":
        modes.KAFKA = request.getfixturevalue("kafka")  # the admin: see tests/component/modes.py
    return modes.MODE


@pytest.fixture
async def build_app(tmp_path, artifact_root, workflows, broker_mode):
    """Build `services.<name>` from its settings (defaults into tmp_path, plus `fields`) and open it.
    On the real broker, the test starts on empty topics with consumer groups of its own."""
    built: list[Any] = []
    group_prefix = f"test-{uuid.uuid4().hex[:12]}"

    def build(name: str, **fields: Any) -> Any:
        if broker_mode == "kafka" and not built:
            modes.truncate_now()
        defaults: dict[str, Any] = {
            # In memory the address is never contacted: TestKafkaBroker fakes it.
            **modes.kafka_fields(),
            "consumer_group_prefix": group_prefix,
            "max_attempts": 2,
            "workflows": workflows,
            "artifact_roots": (artifact_root,),
            "download_dir": tmp_path / name / "downloads",
            "state_db": tmp_path / name / "state.db",
            "model_store": tmp_path / "store",
            "api_token": "s3cret",
            **keys.service_fields(name),  # its own signing key, and the trust file of the test keys
        }
        settings_module = importlib.import_module(f"services.{name}.settings")
        settings_cls = getattr(settings_module, SETTINGS[name])
        known = settings_cls.model_fields
        settings = settings_cls(**{k: v for k, v in {**defaults, **fields}.items() if k in known})
        wiring = importlib.import_module(f"services.{name}.app").build(settings)
        if hasattr(wiring, "facts"):  # in memory a publish is handled before it returns: no wait
            wiring.facts.in_memory = broker_mode == "memory"
        wiring.open()
        built.append(wiring)
        return wiring

    yield build
    for wiring in built:
        await wiring.close()


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

    @broker.subscriber(topic, group_id=f"test-capture-{uuid.uuid4().hex[:12]}.{topic}", decoder=_raw)
    async def _keep(body: bytes, message=Context("message")) -> None:
        captured.records.append(message.raw_message)

    return captured


async def publish(broker: KafkaBroker, event: Event, source: str = "/test", by: str | None = None) -> None:
    """Publish as a producer would, signed by the role that owns the event type (or the test
    principal `by`, tests.keys); returns once the app has handled it (and what followed)."""
    await publish_record(broker, keys.signed(event, source, by))


async def publish_record(broker: KafkaBroker, record: codec.Record) -> None:
    """Publish a record exactly as given (signed or not), and settle."""
    await broker.publish(record.value, topic=record.topic, key=record.key, headers=record.headers)
    await settle(broker)


async def publish_raw(broker: KafkaBroker, topic: str, value: bytes, key: bytes = b"fraud-detector") -> None:
    """Bytes that are no valid event, signed by the topic's role: they reach the parser."""
    headers = {"ce_id": "raw-1", "ce_type": BY_TOPIC[topic].type, "content-type": "application/json"}
    await publish_record(broker, keys.sign(codec.Record(topic, key, value, headers)))


DLQ = topics.dlq


def mocked_body(arg: Any) -> bytes:
    """What a publisher's test mock recorded, as bytes: the mock records what the topic's consumer
    in the same app decoded, a dict (a subscriber: JSON content-type) or the consumer records of a
    follower's batch (shared.broker.follow; in memory, one record a publish)."""
    if isinstance(arg, list) and arg and hasattr(arg[0], "value"):
        [record] = arg
        return record.value
    return arg if isinstance(arg, bytes) else json.dumps(arg).encode()


def sent_all(publisher: Any, topic: str) -> list[Event]:
    """Every event `publisher` published, decoded as its consumers would (see `sent`)."""
    return [codec.decode(topic, mocked_body(call.args[0])) for call in publisher.mock.call_args_list]


def sent(publisher: Any, topic: str) -> Event:
    """The one event `publisher` published (`mocked_body`), validated against the topic's contract."""
    publisher.mock.assert_called_once()
    return codec.decode(topic, mocked_body(publisher.mock.call_args.args[0]))
