"""Loading workflow files: YAML, strict validation, CEL conditions compiled and checked, groups.

A workflow folder holds one workflow per `*.yaml` file and, optionally, `groups.yaml` (group name ->
members). `load_folder` either loads every file or raises one `WorkflowError` listing every
problem, each naming the file, the step, the field and the fix: a folder never half-loads.

Each workflow keeps the texts it was read from, the file and groups.yaml (`PolicyDocuments`):
its digest, the policy digest decisions record, covers both, and decisions carry the texts.
Services read the folder once, at start: changes apply at restart (`shared.workflow.watch` says
when the folder changed under a running service; it never reloads).

`deploy_inputs`, when given (the deployer's target registry), validates each deploy step's
target-specific keys and replaces the step's inputs by the target's typed inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shared.values import PolicyDocuments
from shared.workflow import conditions
from shared.workflow.documents import load_yaml, read_groups, read_text
from shared.workflow.matching import ConditionError, Loaded, WorkflowSet
from shared.workflow.schema import DeployInputs, Workflow, WorkflowError

GROUPS_FILE = "groups.yaml"
# The deployer's target registry as one pydantic type: a discriminated union on `target`.
DeployTargets = TypeAdapter[Any]


def load_folder(folder: Path, targets: DeployTargets | None = None) -> WorkflowSet:
    """Load every workflow in `folder`, or raise WorkflowError with every problem found."""
    if not folder.is_dir():
        raise WorkflowError([f"{folder}: no such folder (set the workflow folder to one holding *.yaml files)"])
    files = sorted(p for p in folder.glob("*.y*ml") if p.name != GROUPS_FILE)
    if not files:
        raise WorkflowError([f"{folder}: holds no workflow (*.yaml) files"])
    loaded, problems = load_files(files, targets)
    names = [w.workflow.name for w in loaded]
    problems += [f"{folder}: workflow name {n!r} is used by more than one file"
                 for n in sorted(set(names)) if names.count(n) > 1]
    defaults = [w.source for w in loaded if w.workflow.default]
    if len(defaults) > 1:
        problems.append(f"{folder}: more than one default workflow ({', '.join(defaults)}); keep one `default: true`")
    if problems:
        raise WorkflowError(problems)
    return WorkflowSet(tuple(loaded))


def load_or_exit(folder: Path, log: Any, targets: DeployTargets | None = None) -> WorkflowSet:
    """For a service at start-up: an invalid workflow folder stops the service, with every problem."""
    try:
        workflows = load_folder(folder, targets)
    except WorkflowError as exc:
        for problem in exc.problems:
            log.error("invalid_workflow", problem=problem)
        raise SystemExit(f"refusing to start: invalid workflows in {folder}:\n{exc}") from None
    log.info("workflows_loaded", folder=str(folder), digest=workflows.digest,
             workflows={w.workflow.name: w.digest for w in workflows.workflows},
             changes="apply at restart: the folder is read once, at start")
    return workflows


def load_files(files: list[Path], targets: DeployTargets | None = None) -> tuple[list[Loaded], list[str]]:
    loaded, problems = [], []
    for path in files:
        try:
            loaded.append(load_file(path, targets))
        except WorkflowError as exc:
            problems.extend(exc.problems)
    return loaded, problems


def load_file(path: Path, targets: DeployTargets | None = None) -> Loaded:
    """One workflow file, validated, with `groups.yaml` from the same folder; with `targets`, its
    deploy step's inputs are the typed inputs of the target they name."""
    text = read_text(path)
    data = load_yaml(path, text)
    if not isinstance(data, dict):
        raise WorkflowError([f"{path}: expected a mapping with name, match and steps"])
    deploy, problems = _deploy_inputs(path, data, targets)
    try:
        workflow = Workflow.model_validate(data)
    except ValidationError as exc:
        found = [_explain(path, data, err) for err in exc.errors()]
        # A target's inputs extend the common ones: what both report is said once.
        raise WorkflowError(found + [p for p in problems if p not in found]) from None
    if problems:
        raise WorkflowError(problems)
    if deploy is not None and workflow.deploy is not None:
        steps = tuple(s.model_copy(update={"inputs": deploy}) if s is workflow.deploy else s for s in workflow.steps)
        workflow = workflow.model_copy(update={"steps": steps})
    groups_text, groups = read_groups(path.parent / GROUPS_FILE)
    problems = _semantics(path, workflow, groups)
    programs: dict[str, Any] = {}
    for step in workflow.steps:
        for attr, roots in (("when", conditions.SUBMISSION_ROOTS),
                            ("carry_forward_when", conditions.CARRY_FORWARD_ROOTS)):
            expr = getattr(step, attr, None)
            if expr is None:
                continue
            try:
                programs[expr] = conditions.compile_condition(expr, roots, workflow.checks.required_metrics)
            except ConditionError as exc:
                problems.append(f"{path}: step {step.name!r}: {attr}: {exc}")
    if problems:
        raise WorkflowError(problems)
    return Loaded(workflow, PolicyDocuments(workflow=text, groups=groups_text), str(path), groups, programs)



def _deploy_inputs(path: Path, data: dict, targets: DeployTargets | None) -> tuple[Any, list[str]]:
    """The deploy step's inputs as the target it names types them, or the problems found; checked
    on the file as written, so they are reported with every other problem of the file."""
    steps = data.get("steps")
    found = [(i, s) for i, s in enumerate(steps) if isinstance(s, dict) and s.get("type") == "deploy"] \
        if isinstance(steps, list) else []
    if targets is None or len(found) != 1 or not isinstance(found[0][1].get("inputs", {}), dict | None):
        return None, []  # no registry, no deploy step, or a shape the schema itself reports
    index, step = found[0]
    written = step.get("inputs") or {}
    target = written.get("target", DeployInputs.model_fields["target"].default)
    try:
        return targets.validate_python({**written, "target": target}), []
    except ValidationError as exc:
        errors = [{**err, "loc": ("steps", index, "inputs", *(err["loc"][1:] if err["loc"][:1] == (target,)
                                                              else err["loc"]))}
                  for err in exc.errors()]
        return None, [_explain(path, data, err) for err in errors]


def _semantics(path: Path, workflow: Workflow, groups: dict[str, tuple[str, ...]]) -> list[str]:
    problems = []
    kinds = [s.type for s in workflow.steps]
    names = [s.name for s in workflow.steps]
    for kind in ("checks", "approval", "deploy"):
        if kinds.count(kind) > 1:
            problems.append(f"{path}: steps: more than one {kind!r} step; keep one")
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{path}: steps: step name {name!r} is used twice")
    if "deploy" in kinds and kinds[-1] != "deploy":
        problems.append(f"{path}: steps: the deploy step must be the last step")
    if "checks" in kinds and "approval" in kinds and kinds.index("approval") < kinds.index("checks"):
        problems.append(f"{path}: steps: the approval step must come after the checks step")
    if not workflow.match and not workflow.default:
        problems.append(f"{path}: match: list the model name patterns this workflow is for, "
                        "such as ['fraud-*'], or set `default: true`")
    approval = workflow.approval
    if approval is not None:
        eligible: set[str] = set()
        for field_name in ("approvers", "escalate_to", "break_glass"):
            for entry in getattr(approval.inputs, field_name):
                if entry.startswith("group:") and entry[6:] not in groups:
                    problems.append(f"{path}: step {approval.name!r}: inputs.{field_name}: group {entry[6:]!r} "
                                    f"does not exist; define it in {path.parent / GROUPS_FILE}")
                elif field_name == "approvers":
                    eligible.update(groups[entry[6:]] if entry.startswith("group:") else (entry,))
        if eligible and approval.inputs.quorum > len(eligible):
            problems.append(f"{path}: step {approval.name!r}: inputs.quorum: {approval.inputs.quorum} "
                            f"approvals needed but only {len(eligible)} approvers can vote; lower the quorum "
                            "or add approvers")
    return problems


def _explain(path: Path, data: dict, err: Mapping[str, Any]) -> str:
    """A pydantic error as 'file: step 'x' (steps[1]): field: message'."""
    loc = list(err["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        index = loc[1]
        steps = data.get("steps") or []
        name = steps[index].get("name") if index < len(steps) and isinstance(steps[index], dict) else None
        where = f"step {name!r} (steps[{index}]): " if name else f"steps[{index}]: "
        loc = loc[2:]
        if loc and loc[0] in ("checks", "approval", "deploy"):
            loc = loc[1:]  # pydantic's discriminator tag
    field_path = ".".join(str(p) for p in loc) or "(step)"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}; check its spelling or remove it"
    elif err["type"] == "union_tag_invalid" and loc[-1:] == ["inputs"]:  # the deploy target
        ctx = err.get("ctx", {})
        field_path = "inputs.target"
        message = (f"target {ctx.get('tag')!r} does not exist; use one of: "
                   f"{str(ctx.get('expected_tags', '')).replace(chr(39), '')}")
    elif err["type"] == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        field_path = "type"
        message = f"step type {tag!r} does not exist; use one of: checks, approval, deploy"
    elif err["type"] == "union_tag_not_found":
        field_path = "type"
        message = "each step needs a type: checks, approval or deploy"
    elif err["type"] == "literal_error":
        message = f"{message} (got {err.get('input')!r})"
    elif err["type"] == "missing":
        message = "required"
    return f"{path}: {where}{field_path}: {message}"
