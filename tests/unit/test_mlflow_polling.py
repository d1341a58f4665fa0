"""The bridge's handling of versions without servers (attack13, finding 5 and (d)): one version
that keeps failing never holds up the others, the poll cursor never waits on it, and it is refused
for good once its retries are spent; ids come from the version MLflow names; and `resolve` refuses
what it can before reading a byte of the model's files."""

from __future__ import annotations

import asyncio
import time
import types
from pathlib import Path
from typing import Any, cast

import pytest

from services.mlflow_bridge import bridge as b
from services.mlflow_bridge.state import BridgeState
from shared.events import Submission
from shared.sources import ArtifactError
from signoff import mlflow_mapping
from signoff.mlflow_mapping import MappingError, VersionFacts
from signoff.mlflow_source import MlflowSourceSettings, Resolved, VersionPending, resolve

URI = "http://mlflow:5000"
NAMES = {"attacker": "attacker", "Churn Model": "churn-model"}


class Page(list):
    token = None


def registry(*versions: tuple[str, str, int]) -> Any:
    """An MLflow client whose registry holds (name, version, created ms), searched newest first."""
    found = [types.SimpleNamespace(name=n, version=v, creation_timestamp=c, status="READY") for n, v, c in versions]
    return types.SimpleNamespace(search_model_versions=lambda **kw: Page(sorted(
        found, key=lambda v: v.creation_timestamp, reverse=True)))


def resolved(name: str, version: str) -> Resolved:
    facts = VersionFacts(name=name, version=version, run_id="r1", download_uri="s3://b/k", user="carol",
                         run_tags={mlflow_mapping.GIT_COMMIT_TAG: "3f2c9ab", "data_version": "d1"})
    data = mlflow_mapping.submission_data(facts, "a" * 64, names=NAMES, metric_names={},
                                          data_version_tag="data_version", strict_names=True)
    return Resolved(facts, Submission.model_validate(data))


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list:
    """The events the bridge publishes (Kafka stands in a list here)."""
    events: list = []

    async def publish(kafka: object, batch: list, **kw: object) -> None:
        events.extend(batch)

    monkeypatch.setattr(b.signoff_client, "publish", publish)
    return events


def bridge(state: BridgeState, mlflow: Any = None, **retries: Any) -> b.Bridge:
    return b.Bridge(mlflow=mlflow, tracking_uri=URI, rules=MlflowSourceSettings(model_names=NAMES),
                    artifacts=cast(Any, None), kafka=cast(Any, None), signer=cast(Any, None), state=state, **retries)


async def test_a_version_that_keeps_failing_holds_up_neither_the_cursor_nor_later_versions(
        tmp_path: Path, published: list, monkeypatch: pytest.MonkeyPatch) -> None:
    now = int(time.time() * 1000)
    tries: list[str] = []

    async def resolve(ref: Any, *args: object) -> Resolved:
        tries.append(ref.name)
        if ref.name == "attacker":  # e.g. files too large to digest within the fetch timeout
            raise ArtifactError("did not finish within 600 s", transient=True)
        return resolved(ref.name, ref.version)

    monkeypatch.setattr(b, "resolve", resolve)
    state = BridgeState(tmp_path / "b.db")
    state.cursor(now)
    br = bridge(state, registry(("attacker", "1", now + 1), ("Churn Model", "7", now + 2)),
                retry_attempts=3, retry_seconds=0)
    await br.poll()
    assert [e.submission.candidate.model for e in published] == ["churn-model"]
    assert state.cursor(0) == now + 2  # past the failing version: the next poll starts after both
    assert state.handled("attacker", "1") is None and state.retrying("attacker", "1")
    await br.poll()  # retried once per poll (the walk skips it; the retry pass tries it)
    assert tries.count("attacker") == 2 and state.handled("attacker", "1") is None
    await br.poll()
    outcome = state.handled("attacker", "1")
    assert outcome and outcome.startswith("refused: gave up after 3 attempts") and "600 s" in outcome
    assert not state.retrying("attacker", "1")
    await br.poll()
    assert tries.count("attacker") == 3 and len(published) == 1


async def test_new_versions_come_before_those_on_the_retry_list(tmp_path: Path, published: list,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    now = int(time.time() * 1000)
    tries: list[str] = []

    async def resolve(ref: Any, *args: object) -> Resolved:
        tries.append(ref.name)
        if ref.name == "attacker":
            raise ArtifactError("did not finish within 600 s", transient=True)
        return resolved(ref.name, ref.version)

    monkeypatch.setattr(b, "resolve", resolve)
    state = BridgeState(tmp_path / "b.db")
    state.cursor(now)
    br = bridge(state, registry(("attacker", "1", now + 1), ("Churn Model", "7", now + 2)))
    assert not await br.handle("attacker", "1")  # its webhook came first, and it failed
    tries.clear()
    await br.poll()
    assert tries == ["Churn Model", "attacker"]  # the walk leaves it to the retry pass, after the new one


async def test_retries_last_at_least_the_retry_period(tmp_path: Path, published: list,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    async def resolve(ref: Any, *args: object) -> Resolved:
        raise ArtifactError("S3 throttled", transient=True)

    monkeypatch.setattr(b, "resolve", resolve)
    state = BridgeState(tmp_path / "b.db")
    br = bridge(state, retry_attempts=2, retry_seconds=3600)
    for _ in range(4):
        assert not await br.handle("attacker", "1")
    assert state.handled("attacker", "1") is None  # 4 attempts, but not an hour yet


async def test_kafka_unreachable_is_not_counted_against_the_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def resolve(ref: Any, *args: object) -> Resolved:
        return resolved(ref.name, ref.version)

    async def publish(*args: object, **kw: object) -> None:
        raise ConnectionError("no broker")

    monkeypatch.setattr(b, "resolve", resolve)
    monkeypatch.setattr(b.signoff_client, "publish", publish)
    state = BridgeState(tmp_path / "b.db")
    br = bridge(state, retry_attempts=1, retry_seconds=0)
    for _ in range(3):
        assert not await br.handle("Churn Model", "7")
    assert state.handled("Churn Model", "7") is None and state.retrying("Churn Model", "7")


async def test_a_version_not_yet_registered_is_retried_not_refused_and_does_not_stop_the_walk(
        tmp_path: Path, published: list, monkeypatch: pytest.MonkeyPatch) -> None:
    now = int(time.time() * 1000)

    async def resolve(ref: Any, *args: object) -> Resolved:
        if ref.name == "attacker":
            raise VersionPending(f"{ref} is PENDING_REGISTRATION")
        return resolved(ref.name, ref.version)

    monkeypatch.setattr(b, "resolve", resolve)
    state = BridgeState(tmp_path / "b.db")
    state.cursor(now)
    await bridge(state, registry(("attacker", "1", now + 1), ("Churn Model", "7", now + 2))).poll()
    assert [e.submission.candidate.model for e in published] == ["churn-model"]
    assert state.retrying("attacker", "1") and state.cursor(0) == now + 2


async def test_a_slow_version_does_not_hold_up_another(tmp_path: Path, published: list,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    release = asyncio.Event()

    async def resolve(ref: Any, *args: object) -> Resolved:
        if ref.name == "attacker":
            await release.wait()  # a digest that takes up to the fetch timeout
        return resolved(ref.name, ref.version)

    monkeypatch.setattr(b, "resolve", resolve)
    br = bridge(BridgeState(tmp_path / "b.db"))
    slow = asyncio.create_task(br.handle("attacker", "1"))
    try:
        assert await asyncio.wait_for(br.handle("Churn Model", "7"), timeout=10)
    finally:
        release.set()
        await slow
    assert [e.submission.candidate.model for e in published] == ["churn-model", "attacker"]


async def test_ids_are_those_of_the_version_mlflow_names(tmp_path: Path, published: list,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    async def resolve(ref: Any, *args: object) -> Resolved:
        return resolved("Churn Model", str(int(ref.version)))  # MLflow reads "0003" as version 3

    monkeypatch.setattr(b, "resolve", resolve)
    state = BridgeState(tmp_path / "b.db")
    assert await bridge(state).handle("Churn Model", "0003")
    assert published[0].submission_id == mlflow_mapping.submission_id(URI, "Churn Model", "3")
    assert published[0].event_id == mlflow_mapping.event_id(URI, "Churn Model", "3")
    assert state.handled("Churn Model", "3") == state.handled("Churn Model", "0003") is not None


class Registry:
    """An MLflow client for `resolve`: one version of `name`."""

    def __init__(self, name: str, status: str = "READY", tags: dict | None = None) -> None:
        self.version = types.SimpleNamespace(name=name, version="3", run_id="r1", user_id="carol", status=status)
        self.run = types.SimpleNamespace(
            data=types.SimpleNamespace(tags=tags if tags is not None else {
                mlflow_mapping.GIT_COMMIT_TAG: "3f2c9ab", "data_version": "d1"}, metrics={}),
            info=types.SimpleNamespace(user_id="carol"), inputs=None)

    def get_model_version(self, name: str, version: str) -> Any:
        return self.version

    def get_model_version_download_uri(self, name: str, version: str) -> str:
        return "s3://models/0/r1/artifacts/model"

    def get_run(self, run_id: str) -> Any:
        return self.run


class Source:
    """An artifact source that records whether it was asked to read anything."""

    def __init__(self) -> None:
        self.read: list[str] = []

    async def digest(self, uri: str) -> Any:
        self.read.append(uri)
        return types.SimpleNamespace(sha256="b" * 64)


@pytest.mark.parametrize(("client", "error"), [
    (Registry("Look\u2010alike"), "not listed in SIGNOFF_MLFLOW_MODEL_NAMES"),
    (Registry("Churn Model", tags={}), "candidate.code_commit"),
    (Registry("Churn Model", status="PENDING_REGISTRATION"), "PENDING_REGISTRATION"),
    (Registry("Churn Model", status="FAILED_REGISTRATION"), "FAILED_REGISTRATION"),
])
async def test_resolve_refuses_what_it_can_before_reading_the_files(client: Registry, error: str) -> None:
    source = Source()
    with pytest.raises((MappingError, LookupError), match=error):
        await resolve(mlflow_mapping.Reference("x", "3"), cast(Any, client), MlflowSourceSettings(model_names=NAMES),
                      cast(Any, source))
    assert source.read == []


async def test_resolve_digests_and_submits_a_listed_ready_version() -> None:
    source = Source()
    got = await resolve(mlflow_mapping.Reference("Churn Model", "3"), cast(Any, Registry("Churn Model")),
                        MlflowSourceSettings(model_names=NAMES), cast(Any, source))
    assert source.read == ["s3://models/0/r1/artifacts/model"]
    assert (got.submission.candidate.model, got.submission.candidate.artifact_sha256) == ("churn-model", "b" * 64)
