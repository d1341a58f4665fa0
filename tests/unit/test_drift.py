"""The mlflow target's inputs and settings checks, how MLflow's failures are classified, and the drift
check's own rules (what it leaves alone, what it reports once), with a stand-in target. The target
against a real MLflow server: tests/unit/test_mlflow_target.py."""

from __future__ import annotations

from typing import Literal

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode
from pydantic import ValidationError

from services.deployer.lifecycle import Lifecycle
from services.deployer.rollout import Release
from services.deployer.service import Service
from services.deployer.settings import DeployerSettings
from services.deployer.state import StateStore
from services.deployer.targets import INPUTS, TargetError, mlflow
from services.deployer.targets._mlflow_registry import as_target_error
from shared.events import DeploymentDrifted, Event
from shared.workflow.matching import WorkflowSet
from tests.unit import factories as f


def test_inputs_default_to_the_champion_alias_reported_not_reverted():
    inputs = INPUTS.validate_python({"target": "mlflow"})
    assert isinstance(inputs, mlflow.Inputs)
    assert (inputs.registered_model, inputs.alias, inputs.on_drift) == (None, "champion", "report")


@pytest.mark.parametrize(("given", "says"), [
    ({"strategy": "canary", "stages": [{"name": "all", "traffic_percent": 100}]}, "use strategy direct"),
    ({"alias": "latest"}, "reserved by MLflow"),
    ({"alias": "v3"}, "reserved by MLflow"),
    ({"alias": "prod alias"}, "alias"),
    ({"registered_model": "a/b"}, "registered_model"),
    ({"on_drift": "ignore"}, "on_drift"),
    ({"url": "https://x"}, "url"),  # another target's key
])
def test_bad_inputs_are_refused_naming_the_key(given, says):
    with pytest.raises(ValidationError, match=says):
        INPUTS.validate_python({"target": "mlflow", **given})


def test_problems_name_the_missing_or_insecure_tracking_server():
    inputs = mlflow.Inputs()
    assert "DEPLOYER_MLFLOW_TRACKING_URI" in mlflow.problems(inputs, DeployerSettings())[0]
    insecure = DeployerSettings(mlflow_tracking_uri="http://mlflow.internal:5000")
    assert "https://" in mlflow.problems(inputs, insecure)[0]
    loopback = DeployerSettings(mlflow_tracking_uri="http://127.0.0.1:5000", mlflow_allow_http_loopback=True)
    assert mlflow.problems(inputs, loopback) == []
    assert mlflow.problems(inputs, DeployerSettings(mlflow_tracking_uri="https://mlflow.internal")) == []


def release(version: str = "3", target: str = "mlflow", promoted: int = 0) -> Release:
    cause = f.submitted(f.submission(f.candidate(model="churn", version=version)))
    return Release(submission_id=cause.submission_id, candidate=cause.submission.candidate,
                   approval=f.decided(cause), deploy=INPUTS.validate_python({"target": target}),
                   promoted=promoted)


def test_only_mlflow_version_numbers_are_deployed():
    assert mlflow.mlflow_version(release("12")) == "12"
    for bad in ("1.4.0", "0", "v3"):
        with pytest.raises(TargetError, match="not an MLflow version number"):
            mlflow.mlflow_version(release(bad))


@pytest.mark.parametrize(("error_code", "transient"), [
    ("RESOURCE_DOES_NOT_EXIST", False), ("PERMISSION_DENIED", False), ("INVALID_PARAMETER_VALUE", False),
    ("INTERNAL_ERROR", True), ("TEMPORARILY_UNAVAILABLE", True), ("REQUEST_LIMIT_EXCEEDED", True),
])
def test_server_errors_and_throttling_are_retried_the_rest_fail_at_once(error_code, transient):
    code = ErrorCode.Value(error_code)  # as the client raises them: a protocol code, named on the exception
    error = as_target_error("moving alias", MlflowException("it went wrong", error_code=code))
    assert error.transient is transient and str(error).startswith("moving alias: ")


def test_a_network_failure_is_retried():
    assert as_target_error("x", requests.ConnectionError("refused")).transient
    assert not as_target_error("x", ValueError("bad")).transient


class Stand_in:  # noqa: N801 - a Watched target whose alias the test sets
    name = "mlflow"

    def __init__(self, on_drift: Literal["report", "revert"] = "report") -> None:
        self.on_drift = on_drift
        self.found: str | None = None
        self.restored: list[str | None] = []

    def where(self, model: str) -> str:
        return f"models:/{model}@champion"

    async def live(self, model: str) -> str | None:
        return self.found

    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None:
        self.restored.append(release.version if release else None)
        self.found = release.version if release else None


@pytest.fixture
def watched(tmp_path):
    store = StateStore(tmp_path / "state.db")
    emitted: list[Event] = []

    async def emit(event: Event) -> None:
        emitted.append(event)

    target = Stand_in()
    service = Service(store, WorkflowSet(()), lambda inputs: target, emit)
    yield service, store, target, emitted
    store.close()


@pytest.mark.parametrize("under_way", ["a canary rolling out", "a deployment a crash stopped half-way"])
async def test_a_model_with_a_deployment_in_progress_is_left_alone(watched, under_way):
    service, store, target, emitted = watched
    live, coming = release("3"), release("4")
    for r in (live, coming):
        store.save_release(r)
    store.promote("churn", live.submission_id)
    if under_way == "a canary rolling out":
        store.save(Lifecycle(submission_id=coming.submission_id, status="rolling_out"))
        store.schedule(coming.submission_id, "churn", 0.0)
    else:  # started (its release recorded), not finished
        store.save(Lifecycle(submission_id=coming.submission_id, status="deploying", approval=coming.approval,
                             deploy=coming.deploy))
    target.found = "4"  # the alias moved, the deployer has not recorded it yet (or crashed in between)
    assert await service.check_drift() == []
    store.save(Lifecycle(submission_id=coming.submission_id, status="failed"))
    store.unschedule(coming.submission_id)
    [drifted] = await service.check_drift()
    assert (drifted.expected_version, drifted.found_version, drifted.action) == ("3", "4", "reported")
    assert emitted == [drifted] and drifted.submission_id == live.submission_id


async def test_a_model_in_an_unwatched_target_costs_no_read_of_its_releases(tmp_path, monkeypatch):
    # Every 30 s, for every model: reading all its releases stalled the loop as history grew.
    store = StateStore(tmp_path / "state.db")
    service = Service(store, WorkflowSet(()), lambda inputs: object(), lambda event: None)  # not Watched
    releases = [release(str(v), target="model-store") for v in range(1, 4)]
    for r in releases:
        store.save_release(r)
        store.promote("churn", r.submission_id)
    monkeypatch.setattr(store, "releases", lambda model: pytest.fail("every release read"))
    assert await service.check_drift() == []
    store.close()


async def test_a_watched_model_in_production_costs_no_read_of_its_releases(watched, monkeypatch):
    # Every 30 s: what decides is production, the schedule and the unfinished deployments.
    service, store, target, _ = watched
    for v in range(1, 4):
        r = release(str(v))
        store.save_release(r)
        store.promote("churn", r.submission_id)
    monkeypatch.setattr(store, "releases", lambda model: pytest.fail("every release read"))
    target.found = "5"
    [drifted] = await service.check_drift()
    assert (drifted.expected_version, drifted.found_version) == ("3", "5")


async def test_after_a_revocation_left_nothing_an_alias_set_by_hand_is_drift(watched):
    service, store, target, _ = watched
    gone = release("3")
    store.save_release(gone)
    store.promote("churn", gone.submission_id)
    store.promote("churn", None)  # revoked, nothing to fall back to
    target.on_drift, target.found = "revert", "3"
    [drifted] = await service.check_drift()
    assert (drifted.expected_version, drifted.found_version, drifted.action) == (None, "3", "reverted")
    assert target.restored == [None] and target.found is None
    assert "nothing (no version of it is in production)" in drifted.reason


async def test_a_drift_is_reported_again_only_once_it_was_over(watched):
    service, store, target, emitted = watched
    live = release("3")
    store.save_release(live)
    store.promote("churn", live.submission_id)
    target.found = "5"
    assert len(await service.check_drift()) == 1
    assert await service.check_drift() == []
    target.found = "3"  # put back by someone
    assert await service.check_drift() == []
    target.found = "5"
    assert len(await service.check_drift()) == 1
    assert [type(e) for e in emitted] == [DeploymentDrifted, DeploymentDrifted]


class Files_stand_in(Stand_in):  # noqa: N801 - a FilesWatched target whose files' digest the test sets
    files_every = 600.0

    def __init__(self, on_drift: Literal["report", "revert"] = "report") -> None:
        super().__init__(on_drift)
        self.digest = f.SHA
        self.digests = 0

    async def served_digest(self, release: Release) -> str:
        self.digests += 1
        return self.digest


@pytest.fixture
def files_watched(tmp_path):
    store = StateStore(tmp_path / "state.db")
    emitted: list[Event] = []
    now = [1000.0]

    async def emit(event: Event) -> None:
        emitted.append(event)

    target = Files_stand_in()
    service = Service(store, WorkflowSet(()), lambda inputs: target, emit, clock=lambda: now[0])
    live = release("3")
    store.save_release(live)
    store.promote("churn", live.submission_id)
    target.found = "3"
    yield service, target, emitted, now
    store.close()


async def test_files_replaced_after_the_alias_moved_are_drift_digested_every_period(files_watched):
    service, target, emitted, now = files_watched
    assert await service.check_drift() == [] and target.digests == 1  # digested at the first check
    target.digest = "e" * 64  # the version's files replaced in the artifact store
    assert await service.check_drift() == [] and target.digests == 1  # not due yet: one full read per period
    now[0] += 600
    [drifted] = await service.check_drift()
    assert (drifted.action, drifted.expected_version, drifted.found_version) == ("reported", "3", "3")
    assert f"now have digest {'e' * 64}, not the approved {f.SHA}" in drifted.reason
    assert "write-once" in drifted.reason and target.found == "3"  # on_drift: report leaves the alias
    now[0] += 600
    assert await service.check_drift() == [] and target.digests == 3  # the same finding: not repeated
    assert emitted == [drifted]


async def test_with_revert_changed_files_lose_the_alias_until_they_are_put_back(files_watched):
    service, target, emitted, now = files_watched
    target.on_drift, target.digest = "revert", "e" * 64
    [drifted] = await service.check_drift()
    assert drifted.action == "reverted" and "models:/churn@champion deleted" in drifted.reason
    assert target.restored == [None] and target.found is None
    assert await service.check_drift() == []  # the alias is gone on purpose: not a drift
    target.found = "3"  # someone points it at the changed files again
    [again] = await service.check_drift()
    assert (again.action, again.found_version, again.expected_version) == ("reverted", "3", None)
    assert "the files of its version 3 were found changed" in again.reason and target.found is None
    target.digest = f.SHA  # the approved bytes are back
    now[0] += 600
    assert await service.check_drift() == []  # digested: as approved again
    [back] = await service.check_drift()
    assert (back.action, back.found_version, back.expected_version) == ("reverted", None, "3")
    assert target.found == "3" and emitted == [drifted, again, back]
