"""`signoff workflow validate` refuses a workflow the deployer could not carry out: no deploy
step, or a deploy target not configured in the environment the deployer reads (the variable is
named). The deployer refuses to start on the same problems (tests/component/test_deployer_rollout.py)."""

from __future__ import annotations

from typer.testing import CliRunner

from signoff.cli import app
from tests.unit import factories as f
from tests.unit.test_workflows import VALID

runner = CliRunner()
NO_DEPLOY = VALID[:VALID.index("  - name: deploy")]
WEBHOOK = VALID.replace("inputs: {target: model-store}",
                        'inputs: {target: webhook, url: "https://deploy.example/hook", secret_env: HOOK_SECRET}')
S3 = VALID.replace("inputs: {target: model-store}", "inputs: {target: s3, bucket: serving, prefix: models}")
MLFLOW = VALID.replace("inputs: {target: model-store}", "inputs: {target: mlflow, alias: champion}")


def validate(*args):
    return runner.invoke(app, ["workflow", "validate", *map(str, args)])


def test_a_workflow_without_a_deploy_step_fails_saying_how_to_add_one(tmp_path):
    f.workflow_folder(tmp_path, strict=NO_DEPLOY)
    for path in (tmp_path, tmp_path / "strict.yaml"):
        result = validate(path)
        assert result.exit_code == 1, result.output
        assert "workflow 'strict'" in result.stderr and "has no deploy step" in result.stderr
        assert "{name: deploy, type: deploy, inputs: {target: model-store}}" in result.stderr
        assert "ok:" not in result.stdout


def test_a_webhook_secret_the_deployer_cannot_read_fails_naming_the_variable(tmp_path, monkeypatch):
    f.workflow_folder(tmp_path, strict=WEBHOOK)
    monkeypatch.delenv("DEPLOYER_WEBHOOK_SECRET_ENVS", raising=False)
    result = validate(tmp_path)
    assert result.exit_code == 1
    assert "secret_env HOOK_SECRET is not listed in DEPLOYER_WEBHOOK_SECRET_ENVS" in result.stderr
    monkeypatch.setenv("DEPLOYER_WEBHOOK_SECRET_ENVS", '["HOOK_SECRET"]')
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    assert "secret_env HOOK_SECRET is not set in the deployer's environment" in validate(tmp_path).stderr
    monkeypatch.setenv("HOOK_SECRET", "x" * 32)
    result = validate(tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: {tmp_path}: 1 workflow(s)")


def test_s3_and_mlflow_targets_need_their_settings(tmp_path, monkeypatch):
    for var in ("DEPLOYER_S3_TARGET_PREFIXES", "DEPLOYER_MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    f.workflow_folder(tmp_path / "s3", strict=S3)
    f.workflow_folder(tmp_path / "mlflow", strict=MLFLOW)
    assert "DEPLOYER_S3_TARGET_PREFIXES" in validate(tmp_path / "s3").stderr
    assert "DEPLOYER_MLFLOW_TRACKING_URI" in validate(tmp_path / "mlflow").stderr
    monkeypatch.setenv("DEPLOYER_S3_TARGET_PREFIXES", '["s3://serving/models/"]')
    monkeypatch.setenv("DEPLOYER_MLFLOW_TRACKING_URI", "https://mlflow.internal")
    assert validate(tmp_path / "s3").exit_code == 0
    assert validate(tmp_path / "mlflow").exit_code == 0


def test_no_targets_skips_the_configuration_check_but_not_the_deploy_step(tmp_path, monkeypatch):
    """A team's CI has no deployer environment: --no-targets checks the files alone."""
    monkeypatch.delenv("DEPLOYER_WEBHOOK_SECRET_ENVS", raising=False)
    f.workflow_folder(tmp_path, strict=WEBHOOK)
    assert validate("--no-targets", tmp_path).exit_code == 0
    assert validate(tmp_path).exit_code == 1
    f.workflow_folder(tmp_path / "bare", strict=NO_DEPLOY)
    result = validate("--no-targets", tmp_path / "bare")
    assert result.exit_code == 1 and "has no deploy step" in result.stderr
