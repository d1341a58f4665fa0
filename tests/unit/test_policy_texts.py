"""A policy text reads the same to a person as to the services (issue 12): characters YAML takes as
a line break that editors do not show, other controls, bidi and invisible characters, and a key
written twice are refused in workflow files and groups.yaml, naming the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.deployer.targets import INPUTS
from shared.workflow.loading import load_file, load_folder
from shared.workflow.schema import WorkflowError
from tests.unit import factories as f
from tests.unit.test_workflows import VALID

GROUPS_HEAD = "# Approver groups\nleads: [bob, carol]\n"


def refused(folder: Path, *, groups: str = f.GROUPS, workflow: str = VALID) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "groups.yaml").write_bytes(groups.encode("utf-8"))  # bytes: no newline translation
    (folder / "workflow.yaml").write_bytes(workflow.encode("utf-8"))
    with pytest.raises(WorkflowError) as caught:
        load_folder(folder, INPUTS)
    return caught.value.problems


@pytest.mark.parametrize(("char", "name"), [
    ("\u2028", "U+2028 (LINE SEPARATOR) is a line break to YAML"),
    ("\u2029", "U+2029 (PARAGRAPH SEPARATOR) is a line break to YAML"),
    ("\x85", "U+0085 (a control character) is a line break to YAML"),
    ("\r", "U+000D (a control character) is a line break to YAML"),
    ("\x0b", "U+000B"),
    ("\x1b", "U+001B"),
    ("\x00", "U+0000"),
    ("\x9b", "U+009B"),
    ("\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE) is shown differently"),
    ("\u2067", "U+2067 (RIGHT-TO-LEFT ISOLATE)"),
    ("\u200b", "U+200B (ZERO WIDTH SPACE)"),
    ("\ufeff", "U+FEFF (ZERO WIDTH NO-BREAK SPACE)"),
])
def test_a_groups_file_that_would_display_otherwise_than_it_parses_is_refused(tmp_path, char, name):
    groups = GROUPS_HEAD + f"risk: [dave, erin]   # two-person rule{char}risk: [mallory]\n"
    [problem] = refused(tmp_path, groups=groups)
    assert problem.startswith(f"{tmp_path / 'groups.yaml'}: line 3, column 39: {name}"), problem
    assert problem.endswith((f'the escape "\\u{ord(char):04x}" in a double-quoted string, where it shows',
                             "save the file with LF line endings", "save it as UTF-8 without a BOM")), problem


def test_crlf_line_endings_are_refused_with_their_fix(tmp_path):
    problems = refused(tmp_path, groups=f.GROUPS.replace("\n", "\r\n"))
    assert problems[0] == f"{tmp_path / 'groups.yaml'}: line 1, column 20: U+000D (a control character) is a " \
        "line break to YAML that editors and terminals may not show: save the file with LF line endings"


def test_a_workflow_file_is_held_to_the_same_and_many_are_counted_not_listed(tmp_path):
    workflow = VALID.replace("quorum: 2", "quorum: 2\u2028") + "# " + "\u202e" * 7 + "\n"
    problems = refused(tmp_path, workflow=workflow)
    path = tmp_path / "workflow.yaml"
    assert problems[0].startswith(f"{path}: line 10, column 60: ") and "U+2028" in problems[0]
    assert len(problems) == 6 and problems[-1] == f"{path}: and 3 more such characters"


def test_tabs_and_ordinary_unicode_are_text(tmp_path):
    groups = "# Gruppen für die Freigabe — 审批 ✅\nleads: [bob, carol]  # tab\tseparated\nrisk: [dave, erin]\n"
    f.workflow_folder(tmp_path, groups, workflow=VALID)
    assert load_file(tmp_path / "workflow.yaml", INPUTS).groups["risk"] == ("dave", "erin")


@pytest.mark.parametrize(("groups", "line"), [
    (GROUPS_HEAD + "risk: [dave, erin]\nrisk: [mallory]\n", 4),
    (GROUPS_HEAD + "risk: [dave, erin]\n'risk': [mallory]\n", 4),  # the same key, spelled otherwise
])
def test_a_group_written_twice_is_refused(tmp_path, groups, line):
    [problem] = refused(tmp_path, groups=groups)
    assert problem.startswith(f"{tmp_path / 'groups.yaml'}: the key 'risk' is written twice (first on line 3), "
                              "and YAML would silently keep the last: keep one")
    assert f"line {line}, column 1" in problem


@pytest.mark.parametrize("workflow", [
    VALID + "name: lenient\n",                                             # a top-level key
    VALID.replace("quorum: 2,", "quorum: 2, quorum: 1,"),                   # in a flow mapping, one line
    VALID.replace("when: \"metrics.accuracy < 0.9\"", "when: \"metrics.accuracy < 0.9\"\n    when: \"true\""),
])
def test_a_workflow_key_written_twice_is_refused(tmp_path, workflow):
    [problem] = refused(tmp_path, workflow=workflow)
    assert problem.startswith(f"{tmp_path / 'workflow.yaml'}: the key ") and "is written twice" in problem


def test_a_yaml_merge_still_overrides_on_purpose(tmp_path):
    groups = "base: &base [bob, carol]\nleads: *base\nrisk: [dave, erin]\n"
    f.workflow_folder(tmp_path, groups, workflow=VALID)
    assert load_file(tmp_path / "workflow.yaml", INPUTS).groups["leads"] == ("bob", "carol")
