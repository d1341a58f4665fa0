"""`signoff workflow validate PATH...`: the check the services run at start-up, before a merge: each
workflow's policy digest, the repository's own folder as files or as a folder, and the restart note."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from shared.values import policy_digest
from signoff.cli import app
from signoff.workflow_cli import RESTART_NOTE
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


ROOT = Path(__file__).resolve().parents[2]


def test_a_valid_file_exits_zero_and_prints_its_policy_digest_then_the_restart_note(tmp_path):
    f.workflow_folder(tmp_path, strict=VALID)
    path = tmp_path / "strict.yaml"
    result = validate(path)
    assert result.exit_code == 0, result.output
    digest = policy_digest(VALID, f.GROUPS)  # the workflow and the groups.yaml beside it
    assert result.stdout.splitlines() == [
        f"ok: {path}: workflow 'strict' (policy digest {digest}, of the file and groups.yaml)", RESTART_NOTE]
    assert result.stderr == ""


def test_the_repositorys_own_workflows_as_files_skip_groups_yaml(monkeypatch):
    """`signoff workflow validate workflows/*.yaml`: the shell names groups.yaml too; it is no workflow."""
    monkeypatch.chdir(ROOT)
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "workflows").glob("*.yaml"))
    assert "workflows/groups.yaml" in files
    result = validate(*files)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "skipped: workflows/groups.yaml: groups file, read beside each workflow" in lines
    assert sum(line.startswith("ok: workflows/") for line in lines) == len(files) - 1
    assert lines[-1] == RESTART_NOTE and result.stderr == ""


def test_the_repositorys_own_folder_is_checked_whole(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = validate("workflows")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok: workflows: 2 workflow(s), set digest ")
    assert {line.split("'")[1] for line in lines[1:-1]} == {"default", "fraud-models"}
    assert lines[-1] == RESTART_NOTE


def test_a_folder_is_checked_as_a_service_loads_it(tmp_path):
    """Each file is valid alone; together they break a folder rule, which only the folder check sees."""
    f.workflow_folder(tmp_path, one=VALID, two=VALID)  # the same name twice
    assert validate(tmp_path / "one.yaml", tmp_path / "two.yaml").exit_code == 0
    result = validate(tmp_path)
    assert result.exit_code == 1
    assert result.stderr == f"error: {tmp_path}: workflow name 'strict' is used by more than one file\n"
    assert RESTART_NOTE not in result.stdout


def test_adding_a_person_to_a_group_changes_the_printed_digest(tmp_path):
    f.workflow_folder(tmp_path, strict=VALID)
    before = validate(tmp_path / "strict.yaml").stdout
    (tmp_path / "groups.yaml").write_text(f.GROUPS.replace("[bob, carol]", "[bob, carol, mallory]"))
    after = validate(tmp_path / "strict.yaml").stdout
    assert before != after and policy_digest(VALID, f.GROUPS) in before


def test_every_file_is_reported_and_one_bad_file_fails_the_run(tmp_path):
    f.workflow_folder(tmp_path, strict=VALID, bad=VALID.replace("target: model-store", "target: gcs"))
    result = validate(tmp_path / "strict.yaml", tmp_path / "bad.yaml")
    assert result.exit_code == 1
    assert f"ok: {tmp_path / 'strict.yaml'}: workflow 'strict'" in result.stdout
    assert f"error: {tmp_path / 'bad.yaml'}: step 'deploy' (steps[2]): inputs.target: " in result.stderr


def test_a_missing_file_fails(tmp_path):
    result = validate(tmp_path / "nope.yaml")
    assert result.exit_code == 1
    assert str(tmp_path / "nope.yaml") in result.stderr
