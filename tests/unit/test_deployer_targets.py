"""The target registry (typed inputs per target, start-up problems, stored inputs read back), the
model store's production pointer and traffic file, the webhook signature, and where the deployer's
webhook secrets come from."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.deployer import targets
from services.deployer.rollout import Release
from services.deployer.settings import DeployerSettings
from services.deployer.state import StateStore
from services.deployer.targets import _store_files as target
from services.deployer.targets import model_store, webhook
from services.deployer.targets.webhook import sign, verify
from shared.sources import ArtifactError
from shared.workflow.loading import load_folder
from shared.workflow.schema import DeployInputs
from tests.unit import factories as f

HOOK = {"target": "webhook", "url": "https://deploy.internal/hook", "secret_env": "HOOK_SECRET"}


# --- the registry ------------------------------------------------------------------------------------

def test_each_target_validates_its_own_keys():
    assert type(targets.INPUTS.validate_python({"target": "model-store"})) is model_store.Inputs
    hook = targets.INPUTS.validate_python({**HOOK, "strategy": "canary",
                                           "stages": [{"name": "full", "traffic_percent": 100}]})
    assert type(hook) is webhook.Inputs and (hook.url, hook.secret_env) == (HOOK["url"], "HOOK_SECRET")
    with pytest.raises(ValidationError, match="target webhook needs url and secret_env"):
        targets.INPUTS.validate_python({"target": "webhook", "url": HOOK["url"]})
    with pytest.raises(ValidationError, match="should match pattern"):
        targets.INPUTS.validate_python({**HOOK, "secret_env": "lower-case"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        targets.INPUTS.validate_python({"target": "model-store", "url": HOOK["url"]})
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        targets.INPUTS.validate_python({"target": "gcs"})


def test_a_stored_deploy_step_reads_back_as_its_targets_inputs(tmp_path):
    """A release stores its deploy step as plain DeployInputs (the webhook's keys as extras);
    building its target validates it again, as the webhook's own inputs."""
    hook = targets.INPUTS.validate_python(HOOK)
    cause = f.submitted()
    stored = Release(submission_id=cause.submission_id, candidate=cause.submission.candidate,
                     approval=f.decided(cause), deploy=hook)
    read = Release.model_validate_json(stored.model_dump_json()).deploy
    assert type(read) is DeployInputs and read.model_extra == {"url": HOOK["url"], "secret_env": "HOOK_SECRET"}
    assert targets.typed(read) == hook
    # An older state file wrote every target's keys, null when unused.
    old = DeployInputs.model_validate({"target": "model-store", "url": None, "secret_env": None})
    assert targets.typed(old) == model_store.Inputs()
    with pytest.raises(targets.TargetError, match="target 'gone' does not exist"):
        targets.typed(DeployInputs(target="gone"))


def test_build_picks_the_target_the_deploy_step_names(tmp_path):
    store = StateStore(tmp_path / "state.db")
    try:
        deps = targets.Deps.from_settings(DeployerSettings(model_store=tmp_path / "store"), store)
        assert targets.build(DeployInputs(), deps).name == "model-store"
        assert targets.build(DeployInputs.model_validate(HOOK), deps).name == "webhook"
    finally:
        store.close()


def test_target_problems_are_said_per_workflow(tmp_path, monkeypatch):
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    text = ("name: hooked\ndefault: true\nsteps:\n  - name: deploy\n    type: deploy\n"
            f"    inputs: {{target: webhook, url: '{HOOK['url']}', secret_env: HOOK_SECRET}}\n")
    workflows = load_folder(f.workflow_folder(tmp_path, hooked=text), targets.INPUTS)
    assert targets.problems(workflows, DeployerSettings()) == [
        "workflow 'hooked': secret_env HOOK_SECRET is not listed in DEPLOYER_WEBHOOK_SECRET_ENVS"]
    allowed = DeployerSettings(webhook_secret_envs=("HOOK_SECRET",))
    assert targets.problems(workflows, allowed) == [
        "workflow 'hooked': secret_env HOOK_SECRET is not set in the deployer's environment"]
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    assert targets.problems(workflows, allowed) == []


# --- the model store's files ---------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "store"
    for version in ("1", "2"):
        src = tmp_path / f"m-{version}.bin"
        src.write_bytes(version.encode())
        cand = f.candidate(version=version, artifact_sha256=hashlib.sha256(version.encode()).hexdigest())
        target.install(root, cand, src, {"artifact_sha256": cand.artifact_sha256})
    return root


def test_production_pointer_is_replaced_atomically(root, monkeypatch):
    replaced = []
    real = os.replace

    def spy(a, b):
        replaced.append((Path(a).name, Path(b).name))
        assert Path(a).read_text() == "2\n"  # complete before it becomes visible
        real(a, b)

    target.set_production(root, "fraud-detector", "1")
    monkeypatch.setattr(target.os, "replace", spy)
    target.set_production(root, "fraud-detector", "2")
    [(tmp, final)] = replaced
    assert tmp.startswith(".PRODUCTION.tmp-") and final == "PRODUCTION"
    assert target.production(root, "fraud-detector") == "2"
    assert not list((root / "fraud-detector").glob(".*tmp*"))


def test_pointer_refuses_a_version_not_installed_and_can_be_removed(root):
    with pytest.raises(ArtifactError, match="not installed"):
        target.set_production(root, "fraud-detector", "9")
    with pytest.raises(ArtifactError, match="not installed"):
        target.set_production(root, "fraud-detector", "..")
    target.set_production(root, "fraud-detector", "1")
    target.set_production(root, "fraud-detector", None)
    assert target.production(root, "fraud-detector") is None
    assert target.production(root, "never-deployed") is None


@pytest.mark.parametrize("model", ["..", ".staging", ".revoked", "a/../.."])
def test_pointer_and_traffic_refuse_names_outside_the_models(root, model):
    with pytest.raises(ArtifactError, match="escapes the store root"):
        target.set_production(root, model, "1")
    with pytest.raises(ArtifactError, match="escapes the store root"):
        target.set_traffic(root, model, {"1": 100}, "full")


def test_traffic_records_the_split_and_is_removed_when_empty(root):
    target.set_traffic(root, "fraud-detector", {"2": 10, "1": 90}, "canary")
    assert json.loads((root / "fraud-detector" / target.TRAFFIC).read_text()) == {
        "stage": "canary", "split": {"1": 90, "2": 10}}
    target.set_traffic(root, "fraud-detector", {}, "none")
    assert not (root / "fraud-detector" / target.TRAFFIC).exists()


def test_serving_moves_pointer_and_traffic_then_syncs_the_folder_once(root, monkeypatch):
    steps = []
    real_replace, real_sync = target.os.replace, target._fsync_dir
    monkeypatch.setattr(target.os, "replace", lambda a, b: (steps.append(Path(b).name), real_replace(a, b)))
    monkeypatch.setattr(target, "_fsync_dir", lambda path: (steps.append(("sync", path)), real_sync(path)))
    target.set_serving(root, "fraud-detector", "2", {"2": 100}, "full")
    folder = (root / "fraud-detector").resolve()
    assert steps == [target.POINTER, target.TRAFFIC, ("sync", folder)]
    assert target.production(root, "fraud-detector") == "2"
    assert json.loads((folder / target.TRAFFIC).read_text())["split"] == {"2": 100}

    steps.clear()  # back to nothing: both files gone, the folder synced
    target.set_serving(root, "fraud-detector", None, {}, "restore")
    assert steps == [("sync", folder)] and not (folder / target.TRAFFIC).exists()
    assert target.production(root, "fraud-detector") is None


def test_serving_refuses_a_version_not_installed_before_touching_the_traffic(root):
    target.set_traffic(root, "fraud-detector", {"1": 100}, "full")
    with pytest.raises(ArtifactError, match="not installed"):
        target.set_serving(root, "fraud-detector", "9", {"9": 100}, "full")
    assert json.loads((root / "fraud-detector" / target.TRAFFIC).read_text())["split"] == {"1": 100}


def test_retire_moves_a_version_out_of_the_serving_tree(root):
    moved = target.retire(root, "fraud-detector", "2")
    assert moved is not None and moved.parent == root / target.REVOKED / "fraud-detector"
    assert (moved / target.MANIFEST).exists() and not (root / "fraud-detector" / "2").exists()
    assert target.retire(root, "fraud-detector", "2") is None  # again: nothing to do
    with pytest.raises(ArtifactError, match="escapes"):
        target.retire(root, "fraud-detector", "..")


def test_clean_staging_also_removes_half_written_pointers(root):
    leftover = root / "fraud-detector" / ".PRODUCTION.tmp-deadbeef"
    leftover.write_text("1")
    target.clean_staging(root)
    assert leftover.exists()  # maybe another replica's write, a moment ago
    target.clean_staging(root, now=time.time() + 120)
    assert not leftover.exists() and (root / "fraud-detector" / "1").is_dir()


def test_signature_is_hmac_sha256_of_the_raw_body():
    body = b'{"a":1}'
    import hmac as _hmac
    expected = "sha256=" + _hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(b"k", body) == expected
    assert verify(b"k", body, expected)
    assert not verify(b"k", body + b" ", expected) and not verify(b"other", body, expected)


def test_webhook_secrets_only_from_allowed_variables_read_when_used(monkeypatch):
    monkeypatch.setenv("DEPLOYER_WEBHOOK_SECRET_ENVS", '["HOOK_SECRET"]')
    monkeypatch.setenv("HOOK_SECRET", "one")
    monkeypatch.setenv("OTHER", "x")
    settings = DeployerSettings()
    assert settings.secret("HOOK_SECRET") == b"one"
    monkeypatch.setenv("HOOK_SECRET", "two")  # rotated: no restart needed
    assert settings.secret("HOOK_SECRET") == b"two"
    with pytest.raises(KeyError, match="not listed in DEPLOYER_WEBHOOK_SECRET_ENVS"):
        settings.secret("OTHER")
    monkeypatch.delenv("HOOK_SECRET")
    with pytest.raises(KeyError, match="not set"):
        settings.secret("HOOK_SECRET")
    assert "two" not in repr(settings)
