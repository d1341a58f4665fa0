"""Workflow files: strict validation whose every message names the file, the step, the field and the
fix; a folder that loads whole or not at all; matching a model to its workflow; digests; groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.deployer.targets import INPUTS
from shared.values import PolicyDocuments, policy_digest
from shared.workflow.loading import load_file, load_folder, load_or_exit
from shared.workflow.matching import WorkflowSet
from shared.workflow.schema import ApprovalStep, ChecksStep, WorkflowError
from tests.unit import factories as f

ROOT = Path(__file__).resolve().parents[2]

VALID = """\
name: strict
match: ["fraud-*"]
steps:
  - name: automated_checks
    type: checks
    inputs: {min: {accuracy: 0.8}, max: {latency_ms: 50}, fairness: {min_parity_ratio: 0.75}}
  - name: manual_approval
    type: approval
    when: "metrics.accuracy < 0.9"
    inputs: {approvers: ['alice', 'group:leads'], quorum: 2, timeout: 30m}
  - name: deploy
    type: deploy
    inputs: {target: model-store}
"""


def problems(folder: Path, text: str, groups: str | None = f.GROUPS) -> tuple[Path, list[str]]:
    """The problems load_file reports for `text`, and the file's path."""
    f.workflow_folder(folder, groups, workflow=text)
    path = folder / "workflow.yaml"
    with pytest.raises(WorkflowError) as caught:
        load_file(path, INPUTS)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return path, caught.value.problems


def only_problem(folder: Path, text: str, groups: str | None = f.GROUPS) -> str:
    path, found = problems(folder, text, groups)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}: "), "every problem names its file"
    return found[0]


def workflow(name: str, match: str | None = None, default: bool = False) -> str:
    head = f"name: {name}\n" + (f"match: {match}\n" if match else "") + ("default: true\n" if default else "")
    return head + "steps:\n  - {name: automated_checks, type: checks}\n"


# --- a valid file ----------------------------------------------------------------------------

def test_a_valid_workflow_loads_with_its_digest_and_compiled_conditions(tmp_path):
    loaded = f.load_workflow(tmp_path, VALID)
    path = tmp_path / "workflow.yaml"
    assert loaded.digest == policy_digest(path.read_text(), f.GROUPS)
    assert loaded.policy_documents() == PolicyDocuments(workflow=VALID, groups=f.GROUPS)
    assert loaded.source == str(path)
    assert loaded.workflow.name == "strict" and loaded.workflow.match == ("fraud-*",)
    assert isinstance(loaded.workflow.checks, ChecksStep)
    assert loaded.workflow.checks.required_metrics == {"accuracy", "latency_ms"}
    assert loaded.workflow.checks.inputs.fairness.min_parity_ratio == 0.75
    approval = loaded.workflow.approval
    assert isinstance(approval, ApprovalStep)
    assert approval.inputs.timeout.total_seconds() == 30 * 60
    assert approval.inputs.quorum == 2 and approval.inputs.on_timeout == "reject"
    assert set(loaded.programs) == {"metrics.accuracy < 0.9"}
    assert loaded.workflow.deploy.inputs.target == "model-store"


def test_digest_is_of_the_file_bytes_so_a_comment_changes_it(tmp_path):
    first = f.load_workflow(tmp_path / "a", VALID)
    second = f.load_workflow(tmp_path / "b", "# reviewed by risk\n" + VALID)
    assert first.workflow == second.workflow
    assert first.digest != second.digest
    assert second.digest == policy_digest("# reviewed by risk\n" + VALID, f.GROUPS)


@pytest.mark.parametrize(("timeout", "seconds"), [("45s", 45), ("30m", 1800), ("24h", 86400), ("7d", 604800)])
def test_timeout_units(tmp_path, timeout, seconds):
    loaded = f.load_workflow(tmp_path, VALID.replace("timeout: 30m", f"timeout: {timeout}"))
    assert loaded.workflow.approval.inputs.timeout.total_seconds() == seconds


def test_the_shipped_example_workflows_load():
    workflows = load_folder(ROOT / "workflows", INPUTS)
    assert {w.workflow.name for w in workflows.workflows} == {"default", "fraud-models"}
    assert workflows.match("fraud-detector")[0].workflow.name == "fraud-models"
    assert workflows.match("churn-model")[0].workflow.name == "default"
    assert workflows.match("fraud-detector")[0].approvers() == ("dave", "erin")


# --- each problem names the file, the step, the field and the fix ------------------------------

def test_approvers_as_a_string_must_be_a_list(tmp_path):
    problem = only_problem(tmp_path, VALID.replace("['alice', 'group:leads']", "'bob'"))
    assert problem.endswith(
        "step 'manual_approval' (steps[1]): inputs.approvers: approvers must be a list, such as ['bob']")


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("name: strict\n", "name: strict\ncolour: red\n",
     "colour: unknown key 'colour'; check its spelling or remove it"),
    ("    type: approval\n", "    type: approval\n    escalate_to: carol\n",
     "step 'manual_approval' (steps[1]): escalate_to: unknown key 'escalate_to'; check its spelling or remove it"),
    ("quorum: 2,", "quorum: 2, reminder: 1h,",
     "step 'manual_approval' (steps[1]): inputs.reminder: unknown key 'reminder'; check its spelling or remove it"),
    ("{min: {accuracy: 0.8},", "{minimum: {accuracy: 0.8},",
     "step 'automated_checks' (steps[0]): inputs.minimum: unknown key 'minimum'; check its spelling or remove it"),
    ("fairness: {min_parity_ratio: 0.75}", "fairness: {parity: 0.75}",
     "step 'automated_checks' (steps[0]): inputs.fairness.parity: unknown key 'parity'; "
     "check its spelling or remove it"),
], ids=["top-level", "in-a-step", "in-inputs", "in-checks-inputs", "in-fairness"])
def test_unknown_keys(tmp_path, old, new, expected):
    assert only_problem(tmp_path, VALID.replace(old, new)).endswith(expected)


def test_unknown_step_type(tmp_path):
    text = VALID.replace("  - name: deploy\n    type: deploy\n", "  - name: deploy\n    type: ship\n")
    assert only_problem(tmp_path, text).endswith(
        "step 'deploy' (steps[2]): type: step type 'ship' does not exist; use one of: checks, approval, deploy")


def test_step_without_a_type(tmp_path):
    text = VALID.replace("  - name: deploy\n    type: deploy\n", "  - name: deploy\n")
    assert only_problem(tmp_path, text).endswith(
        "step 'deploy' (steps[2]): type: each step needs a type: checks, approval or deploy")


def test_unknown_target(tmp_path):
    assert only_problem(tmp_path, VALID.replace("target: model-store", "target: gcs")).endswith(
        "step 'deploy' (steps[2]): inputs.target: target 'gcs' does not exist; use one of: "
        "model-store, webhook, s3, mlflow")


def test_unknown_group_names_the_groups_file(tmp_path):
    text = VALID.replace("'group:leads'], quorum: 2", "'group:risk-leads'], quorum: 1")
    problem = only_problem(tmp_path, text)
    assert problem.endswith(f"step 'manual_approval': inputs.approvers: group 'risk-leads' does not "
                            f"exist; define it in {tmp_path / 'groups.yaml'}")


def test_a_group_without_a_groups_file_is_unknown(tmp_path):
    problem = only_problem(tmp_path, VALID.replace("quorum: 2", "quorum: 1"), groups=None)
    assert "inputs.approvers: group 'leads' does not exist" in problem


@pytest.mark.parametrize(("approvers", "quorum", "eligible"), [
    ("['alice', 'group:leads']", 4, 3),
    ("['bob', 'group:leads', 'bob']", 3, 2),  # people are counted once, however they are listed
])
def test_quorum_above_the_number_of_eligible_approvers(tmp_path, approvers, quorum, eligible):
    text = VALID.replace("approvers: ['alice', 'group:leads'], quorum: 2",
                         f"approvers: {approvers}, quorum: {quorum}")
    assert only_problem(tmp_path, text).endswith(
        f"step 'manual_approval': inputs.quorum: {quorum} approvals needed but only {eligible} approvers "
        "can vote; lower the quorum or add approvers")


def test_quorum_equal_to_the_eligible_approvers_is_fine(tmp_path):
    text = VALID.replace("quorum: 2", "quorum: 3")
    assert f.load_workflow(tmp_path, text).workflow.approval.inputs.quorum == 3


@pytest.mark.parametrize(("timeout", "message"), [
    ("24 hours", "timeout '24 hours' is not a duration: write a number and a unit, such as 30m, 24h or 7d"),
    ("1w", "timeout '1w' is not a duration: write a number and a unit, such as 30m, 24h or 7d"),
    ("0h", "timeout '0h' is not a duration: write a number and a unit, such as 30m, 24h or 7d"),
    ("3600", "timeout 3600 is not a duration: write a number and a unit, such as 30m, 24h or 7d"),
])
def test_bad_timeout(tmp_path, timeout, message):
    problem = only_problem(tmp_path, VALID.replace("timeout: 30m", f"timeout: {timeout}"))
    assert problem.endswith(f"step 'manual_approval' (steps[1]): inputs.timeout: {message}")


def test_duplicate_step_types(tmp_path):
    text = VALID.replace("  - name: deploy\n", "  - name: more_checks\n    type: checks\n  - name: deploy\n")
    assert only_problem(tmp_path, text).endswith("steps: more than one 'checks' step; keep one")


def test_duplicate_step_names(tmp_path):
    text = VALID.replace("  - name: deploy\n", "  - name: manual_approval\n")
    assert only_problem(tmp_path, text).endswith("steps: step name 'manual_approval' is used twice")


def test_deploy_must_be_last(tmp_path):
    steps = VALID.split("steps:\n")[1].split("  - ")[1:]
    text = VALID.split("steps:\n")[0] + "steps:\n" + "".join("  - " + s for s in (steps[0], steps[2], steps[1]))
    assert only_problem(tmp_path, text).endswith("steps: the deploy step must be the last step")


def test_approval_must_come_after_checks(tmp_path):
    steps = VALID.split("steps:\n")[1].split("  - ")[1:]
    text = VALID.split("steps:\n")[0] + "steps:\n" + "".join("  - " + s for s in (steps[1], steps[0], steps[2]))
    assert only_problem(tmp_path, text).endswith("steps: the approval step must come after the checks step")


def test_match_as_a_string(tmp_path):
    assert only_problem(tmp_path, VALID.replace('match: ["fraud-*"]', "match: fraud-*")).endswith(
        "match: match must be a list of name patterns, such as ['fraud-*']")


def test_no_match_and_not_default(tmp_path):
    assert only_problem(tmp_path, VALID.replace('match: ["fraud-*"]\n', "")).endswith(
        "match: list the model name patterns this workflow is for, such as ['fraud-*'], "
        "or set `default: true`")


def test_not_a_mapping(tmp_path):
    assert only_problem(tmp_path, "- just\n- a list\n").endswith(
        "expected a mapping with name, match and steps")


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    text = (VALID.replace("name: strict\n", "name: strict\ncolour: red\n")
            .replace("['alice', 'group:leads']", "'bob'").replace("target: model-store", "target: gcs"))
    path, found = problems(tmp_path, text)
    assert len(found) == 3
    assert all(p.startswith(f"{path}: ") for p in found)
    assert {p.split(": ", 2)[1] for p in found} == {
        "colour", "step 'manual_approval' (steps[1])", "step 'deploy' (steps[2])"}


# --- conditions are checked when the workflow loads ------------------------------------------

def test_a_condition_that_does_not_parse_reports_its_column(tmp_path):
    text = VALID.replace('"metrics.accuracy < 0.9"', '"metrics.accuracy < < 0.9"')
    problem = only_problem(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'workflow.yaml'}: step 'manual_approval': when: ")
    assert "does not parse at line 1, column 20" in problem  # the second '<'
    assert "check the operators and parentheses" in problem


def test_a_condition_naming_a_field_the_submission_does_not_have(tmp_path):
    text = VALID.replace('"metrics.accuracy < 0.9"', '"metrics.accuracy < 0.9 || team == \'risk\'"')
    problem = only_problem(tmp_path, text)
    assert "step 'manual_approval': when: " in problem
    assert "names 'team' at column 27, which a submission does not have; use one of: " in problem


def test_a_condition_naming_a_metric_the_checks_step_does_not_require(tmp_path):
    text = VALID.replace('"metrics.accuracy < 0.9"', '"metrics.recall < 0.7"')
    problem = only_problem(tmp_path, text)
    assert "step 'manual_approval': when: " in problem
    assert ("names metrics.recall at column 1, which the checks step does not require "
            "(it requires: accuracy, latency_ms); add it to the checks step's inputs.min or "
            "inputs.max, or fix the name") in problem


def test_when_cannot_see_production_but_carry_forward_when_can(tmp_path):
    text = VALID.replace('"metrics.accuracy < 0.9"', '"version == production.version"')
    assert "names 'production' at column 12, which a submission does not have" in only_problem(tmp_path / "a", text)
    carry = VALID.replace('when: "metrics.accuracy < 0.9"', 'carry_forward_when: "version != production.version"')
    assert set(f.load_workflow(tmp_path / "b", carry).programs) == {"version != production.version"}


def test_carry_forward_when_naming_an_unknown_production_field(tmp_path):
    text = VALID.replace('when: "metrics.accuracy < 0.9"', 'carry_forward_when: "production.owner == submitter"')
    problem = only_problem(tmp_path, text)
    assert "step 'manual_approval': carry_forward_when: " in problem
    assert "names production.owner at column 1; production has: artifact_sha256, code_commit, " \
           "data_version, metrics, version" in problem


# --- a folder loads whole or not at all --------------------------------------------------------

def test_a_folder_loads_every_workflow_and_skips_groups(tmp_path):
    folder = f.workflow_folder(tmp_path, strict=VALID, default=workflow("fallback", default=True))
    workflows = load_folder(folder, INPUTS)
    assert sorted(w.workflow.name for w in workflows.workflows) == ["fallback", "strict"]


def test_an_invalid_file_stops_the_whole_folder_and_every_file_is_reported(tmp_path):
    folder = f.workflow_folder(
        tmp_path, good=VALID,
        bad_approvers=VALID.replace("name: strict", "name: one").replace("['alice', 'group:leads']", "'bob'"),
        bad_target=VALID.replace("name: strict", "name: two").replace("target: model-store", "target: gcs"))
    with pytest.raises(WorkflowError) as caught:
        load_folder(folder, INPUTS)
    found = caught.value.problems
    assert len(found) == 2
    assert any(p.startswith(f"{folder / 'bad_approvers.yaml'}: ") and "approvers must be a list" in p for p in found)
    assert any(p.startswith(f"{folder / 'bad_target.yaml'}: ") and "target 'gcs' does not exist" in p for p in found)


def test_two_defaults(tmp_path):
    folder = f.workflow_folder(tmp_path, a=workflow("a", default=True), b=workflow("b", default=True))
    with pytest.raises(WorkflowError) as caught:
        load_folder(folder, INPUTS)
    assert caught.value.problems == [
        f"{folder}: more than one default workflow ({folder / 'a.yaml'}, {folder / 'b.yaml'}); "
        "keep one `default: true`"]


def test_duplicate_workflow_names(tmp_path):
    folder = f.workflow_folder(tmp_path, a=workflow("same", '["a-*"]'), b=workflow("same", '["b-*"]'))
    with pytest.raises(WorkflowError) as caught:
        load_folder(folder, INPUTS)
    assert caught.value.problems == [f"{folder}: workflow name 'same' is used by more than one file"]


def test_a_missing_or_empty_folder(tmp_path):
    with pytest.raises(WorkflowError, match="no such folder"):
        load_folder(tmp_path / "nowhere")
    with pytest.raises(WorkflowError, match=r"holds no workflow \(\*\.yaml\) files"):
        load_folder(f.workflow_folder(tmp_path / "only-groups"))


def test_a_malformed_groups_file(tmp_path):
    folder = f.workflow_folder(tmp_path, "leads: bob\n", strict=VALID)
    with pytest.raises(WorkflowError) as caught:
        load_folder(folder, INPUTS)
    assert caught.value.problems == [
        f"{folder / 'groups.yaml'}: expected group names mapped to lists of members, such as "
        "risk: ['dave', 'erin']"]


def test_load_or_exit_logs_every_problem_and_refuses_to_start(tmp_path):
    folder = f.workflow_folder(tmp_path, a=workflow("a", default=True), b=workflow("b", "fraud-*"))

    class Log:
        def __init__(self):
            self.errors = []

        def error(self, event, **kw):
            self.errors.append((event, kw["problem"]))

    log = Log()
    with pytest.raises(SystemExit) as caught:
        load_or_exit(folder, log)
    assert str(caught.value).startswith(f"refusing to start: invalid workflows in {folder}:")
    assert log.errors == [("invalid_workflow", f"{folder / 'b.yaml'}: match: match must be a list of "
                                               "name patterns, such as ['fraud-*']")]


# --- matching ----------------------------------------------------------------------------------

@pytest.fixture
def workflows(tmp_path) -> WorkflowSet:
    return load_folder(f.workflow_folder(
        tmp_path,
        fraud=workflow("fraud", '["fraud-*"]'),
        detector=workflow("detector", '["fraud-detector", "x-*"]'),
        fallback=workflow("fallback", default=True),
    ))


@pytest.mark.parametrize(("model", "expected"), [
    ("fraud-detector", "detector"),  # the exact name is more specific than fraud-*
    ("fraud-scorer", "fraud"),
    ("x-ray", "detector"),
    ("churn-model", "fallback"),  # nothing matches: the default
])
def test_most_specific_pattern_wins_else_the_default(workflows, model, expected):
    loaded, reason = workflows.match(model)
    assert (loaded.workflow.name, reason) == (expected, "")


def test_equally_specific_patterns_are_ambiguous_even_with_a_default(tmp_path):
    workflows = load_folder(f.workflow_folder(
        tmp_path, a=workflow("prefix", '["fraud-d*"]'), b=workflow("suffix", '["*etector"]'),
        c=workflow("fallback", default=True)))
    loaded, reason = workflows.match("fraud-detector")
    assert loaded is None
    assert reason == ("model 'fraud-detector' matches several workflows equally (prefix, suffix); "
                      "make one pattern more specific")
    assert workflows.match("fraud-dog")[0].workflow.name == "prefix"


def test_no_match_and_no_default_says_why(tmp_path):
    workflows = load_folder(f.workflow_folder(tmp_path, fraud=workflow("fraud", '["fraud-*"]')))
    assert workflows.match("churn-model") == (
        None, "no workflow matches model 'churn-model' and no default workflow is configured")


def test_set_digest_is_stable_and_changes_when_a_file_changes(tmp_path):
    folder = f.workflow_folder(tmp_path, strict=VALID, fallback=workflow("fallback", default=True))
    first = load_folder(folder, INPUTS).digest
    assert load_folder(folder, INPUTS).digest == first
    (folder / "fallback.yaml").write_text(workflow("fallback", default=True) + "# changed\n")
    assert load_folder(folder, INPUTS).digest != first
    assert len(first) == 64 and int(first, 16) >= 0


# --- groups ------------------------------------------------------------------------------------

def test_group_expansion_keeps_order_and_lists_each_person_once(tmp_path):
    text = VALID.replace("['alice', 'group:leads']", "['alice', 'group:leads', 'bob', 'group:risk']")
    loaded = f.load_workflow(tmp_path, text)
    assert loaded.approvers() == ("alice", "bob", "carol", "dave", "erin")


def test_no_approval_step_has_no_approvers(tmp_path):
    loaded = f.load_workflow(tmp_path, workflow("checks-only", '["a-*"]'))
    assert loaded.workflow.approval is None and loaded.approvers() == ()


def test_iso_8601_durations_are_accepted_as_a_dumped_workflow_writes_them(tmp_path):
    loaded = f.load_workflow(tmp_path, VALID.replace("timeout: 30m", "timeout: PT30M"))
    assert loaded.workflow.approval.inputs.timeout.total_seconds() == 1800
    problem = only_problem(tmp_path, VALID.replace("timeout: 30m", "timeout: PT0S"))
    assert "inputs.timeout" in problem
