"""`signoff workflow validate FILE...`: the check the services run at start-up, before a merge."""

from __future__ import annotations

import hashlib

from typer.testing import CliRunner

from signoff.cli import app
from tests.unit import factories as f
from tests.unit.test_workflows import VALID

runner = CliRunner()


def validate(*paths):
    return runner.invoke(app, ["workflow", "validate", *map(str, paths)])


def test_approvers_as_a_string_exits_non_zero_saying_it_must_be_a_list(tmp_path):
    f.workflow_folder(tmp_path, bad=VALID.replace("['alice', 'group:leads']", "'bob'"))
    result = validate(tmp_path / "bad.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'bad.yaml'}: step 'manual_approval' (steps[1]): inputs.approvers: "
        "approvers must be a list, such as ['bob']"]
    assert result.stdout == ""


def test_a_valid_file_exits_zero_and_prints_its_sha256(tmp_path):
    f.workflow_folder(tmp_path, strict=VALID)
    path = tmp_path / "strict.yaml"
    result = validate(path)
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.stdout == f"ok: {path}: workflow 'strict' (sha256 {digest})\n"
    assert result.stderr == ""


def test_every_file_is_reported_and_one_bad_file_fails_the_run(tmp_path):
    f.workflow_folder(tmp_path, strict=VALID, bad=VALID.replace("target: model-store", "target: s3"))
    result = validate(tmp_path / "strict.yaml", tmp_path / "bad.yaml")
    assert result.exit_code == 1
    assert f"ok: {tmp_path / 'strict.yaml'}: workflow 'strict'" in result.stdout
    assert f"error: {tmp_path / 'bad.yaml'}: step 'deploy' (steps[2]): inputs.target: " in result.stderr


def test_a_missing_file_fails(tmp_path):
    result = validate(tmp_path / "nope.yaml")
    assert result.exit_code == 1
    assert str(tmp_path / "nope.yaml") in result.stderr
