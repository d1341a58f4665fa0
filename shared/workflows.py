"""Approval workflows as code: the YAML format, its strict validation, and matching models to it.

A workflow folder holds one workflow per `*.yaml` file and, optionally, `groups.yaml` (group name ->
members). The validator reads the `checks` step, the policy the `approval` step, the deployer the
`deploy` step; all through `load_folder`, which either loads every file or raises one
`WorkflowError` listing every problem: a folder never half-loads.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator,
)

from shared import conditions

GROUPS_FILE = "groups.yaml"
LINEAGE_FIELDS = ("data_version", "code_commit", "training_run_id")
TARGETS = ("model-store", "webhook")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


def _parse_duration(value: Any, field: str) -> Any:
    """'30m', '24h', '7d' -> timedelta; what pydantic already parsed passes through."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, str) and value.startswith("P"):
        return value  # ISO 8601 (PT10M), as a dumped workflow writes it: pydantic parses it
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match and (int(match[1]) > 0 or field == "bake"):
            return timedelta(**{_UNITS[match[2]]: int(match[1])})
    raise ValueError(f"{field} {value!r} is not a duration: write a number and a unit, such as 30m, 24h or 7d")


class WorkflowError(ValueError):
    """Every problem found, one per line, each naming the file, the step, the field and the fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Fairness(Strict):
    min_parity_ratio: float = Field(default=0.8, gt=0, le=1)
    max_equalized_odds_difference: float | None = Field(default=None, ge=0, le=1)


GlobalName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")]


class Security(Strict):
    allowed_globals: tuple[GlobalName, ...] = Field(
        default=(), description="module.name globals a pickle-based artifact may import; any other blocks")


class Regression(Strict):
    """How much worse than the model in production a candidate may be, per metric."""

    higher_is_better: dict[str, Annotated[float, Field(ge=0)]] = {}
    lower_is_better: dict[str, Annotated[float, Field(ge=0)]] = {}


class ChecksInputs(Strict):
    min: dict[str, float] = {}
    max: dict[str, float] = {}
    fairness: Fairness | None = None
    lineage: tuple[Literal["data_version", "code_commit", "training_run_id"], ...] = (
        "data_version", "code_commit")
    security: Security = Security()
    regression: Regression | None = None
    model_card: bool = Field(default=False, description="Require a model card (model_card_uri)")


class ChecksStep(Strict):
    name: Name
    type: Literal["checks"]
    inputs: ChecksInputs = ChecksInputs()

    @property
    def required_metrics(self) -> set[str]:
        regression = self.inputs.regression or Regression()
        return (set(self.inputs.min) | set(self.inputs.max)
                | set(regression.higher_is_better) | set(regression.lower_is_better))


Approvers = tuple[Annotated[str, StringConstraints(min_length=1)], ...]


class ApprovalInputs(Strict):
    approvers: Approvers = Field(min_length=1)
    quorum: int = Field(default=1, ge=1)
    timeout: timedelta = Field(default=timedelta(hours=24), gt=timedelta(0))
    on_timeout: Literal["reject", "escalate"] = "reject"
    escalate_to: Approvers = Field(default=(), description="Asked when on_timeout is escalate")
    escalation_timeout: timedelta = Field(default=timedelta(hours=24), gt=timedelta(0))
    remind_every: timedelta | None = Field(default=None, description="Remind pending approvers this often")
    break_glass: Approvers = Field(default=(), description="May approve alone with a written justification")
    veto: bool = Field(default=True, description="One rejection rejects (else rejections need the quorum)")

    @field_validator("approvers", "escalate_to", "break_glass", mode="before")
    @classmethod
    def _a_list(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):  # the classic mistake that silently disables approval elsewhere
            raise ValueError(f"{info.field_name} must be a list, such as ['{value}']")
        return value

    @model_validator(mode="after")
    def _escalation(self) -> ApprovalInputs:
        if self.on_timeout == "escalate" and not self.escalate_to:
            raise ValueError("on_timeout: escalate needs escalate_to, such as ['group:leads']")
        return self

    @field_validator("timeout", "escalation_timeout", "remind_every", mode="before")
    @classmethod
    def _duration(cls, value: Any, info: Any) -> Any:
        return _parse_duration(value, info.field_name)


class ApprovalStep(Strict):
    name: Name
    type: Literal["approval"]
    when: str | None = Field(default=None, description="CEL: review only when true; otherwise approve")
    carry_forward_when: str | None = Field(
        default=None, description="CEL over the submission and `production`: skip review when true")
    inputs: ApprovalInputs
    on_reject: Literal["fail_pipeline"] = "fail_pipeline"


class Stage(Strict):
    name: Name
    traffic_percent: int = Field(ge=1, le=100)
    bake: timedelta = Field(default=timedelta(0), description="Wait before the next stage")

    @field_validator("bake", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return _parse_duration(value, "bake")


class DeployInputs(Strict):
    target: str = "model-store"
    url: str | None = Field(default=None, description="webhook target: where the signed request goes")
    secret_env: str | None = Field(
        default=None, pattern=r"^[A-Z][A-Z0-9_]*$",
        description="webhook target: the environment variable holding the HMAC secret (never the secret)")
    strategy: Literal["direct", "canary"] = "direct"
    stages: tuple[Stage, ...] = Field(default=(), description="canary: traffic stages, the last at 100")

    @field_validator("target")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in TARGETS:
            raise ValueError(f"target {value!r} does not exist; use one of: {', '.join(TARGETS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DeployInputs:
        if self.target == "webhook" and not (self.url and self.secret_env):
            raise ValueError("target webhook needs url and secret_env (the name of the variable "
                             "holding the HMAC secret)")
        if self.strategy == "canary":
            if not self.stages or self.stages[-1].traffic_percent != 100:
                raise ValueError("strategy canary needs stages ending at traffic_percent 100, such as "
                                 "[{name: canary, traffic_percent: 10, bake: 10m}, {name: full, traffic_percent: 100}]")
            percents = [st.traffic_percent for st in self.stages]
            if percents != sorted(set(percents)):
                raise ValueError(f"stages must increase their traffic_percent, got {percents}")
        elif self.stages:
            raise ValueError("stages are only for strategy: canary")
        return self


class DeployStep(Strict):
    name: Name
    type: Literal["deploy"]
    inputs: DeployInputs = DeployInputs()


Step = Annotated[ChecksStep | ApprovalStep | DeployStep, Field(discriminator="type")]


class Workflow(Strict):
    name: Name
    match: tuple[Annotated[str, StringConstraints(min_length=1)], ...] = ()
    default: bool = False
    steps: tuple[Step, ...] = Field(min_length=1)

    @field_validator("match", mode="before")
    @classmethod
    def _match_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"match must be a list of name patterns, such as ['{value}']")
        return value

    def step(self, kind: type[Any]) -> Any:
        return next((s for s in self.steps if isinstance(s, kind)), None)

    @property
    def checks(self) -> ChecksStep:
        return self.step(ChecksStep) or ChecksStep(name="checks", type="checks")

    @property
    def approval(self) -> ApprovalStep | None:
        return self.step(ApprovalStep)

    @property
    def deploy(self) -> DeployStep | None:
        return self.step(DeployStep)


@dataclass(frozen=True)
class Loaded:
    """A validated workflow, the sha256 of its file, and its compiled conditions."""

    workflow: Workflow
    digest: str
    source: str
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    programs: dict[str, conditions.Condition] = field(default_factory=dict)

    def approvers(self) -> tuple[str, ...]:
        """The approval step's approvers with each `group:x` replaced by its members."""
        approval = self.workflow.approval
        return self.expand(approval.inputs.approvers) if approval else ()

    def expand(self, entries: tuple[str, ...]) -> tuple[str, ...]:
        """Users and `group:x` entries as the users they name, each once, in order."""
        out: list[str] = []
        for entry in entries:
            members = self.groups[entry[6:]] if entry.startswith("group:") else (entry,)
            out.extend(m for m in members if m not in out)
        return tuple(out)


@dataclass(frozen=True)
class WorkflowSet:
    workflows: tuple[Loaded, ...]

    @property
    def digest(self) -> str:
        """sha256 over every workflow's file digest: identifies the whole set, for decisions that
        no single workflow made (a model that no workflow matches)."""
        lines = sorted(f"{w.source}:{w.digest}" for w in self.workflows)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def match(self, model: str) -> tuple[Loaded | None, str]:
        """The workflow for `model` (most specific pattern wins), or None with the reason."""
        best: list[tuple[int, Loaded]] = []
        for loaded in self.workflows:
            lengths = [len(p) for p in loaded.workflow.match if fnmatch.fnmatchcase(model, p)]
            if lengths:
                best.append((max(lengths), loaded))
        if best:
            best.sort(key=lambda item: -item[0])
            if len(best) > 1 and best[0][0] == best[1][0]:
                names = ", ".join(b[1].workflow.name for b in best if b[0] == best[0][0])
                return None, f"model {model!r} matches several workflows equally ({names}); make one pattern more specific"
            return best[0][1], ""
        default = next((w for w in self.workflows if w.workflow.default), None)
        if default is None:
            return None, f"no workflow matches model {model!r} and no default workflow is configured"
        return default, ""


def load_folder(folder: Path) -> WorkflowSet:
    """Load every workflow in `folder`, or raise WorkflowError with every problem found."""
    if not folder.is_dir():
        raise WorkflowError([f"{folder}: no such folder (set the workflow folder to one holding *.yaml files)"])
    files = sorted(p for p in folder.glob("*.y*ml") if p.name != GROUPS_FILE)
    if not files:
        raise WorkflowError([f"{folder}: holds no workflow (*.yaml) files"])
    loaded, problems = load_files(files)
    names = [w.workflow.name for w in loaded]
    problems += [f"{folder}: workflow name {n!r} is used by more than one file" for n in sorted(set(names)) if names.count(n) > 1]
    defaults = [w.source for w in loaded if w.workflow.default]
    if len(defaults) > 1:
        problems.append(f"{folder}: more than one default workflow ({', '.join(defaults)}); keep one `default: true`")
    if problems:
        raise WorkflowError(problems)
    return WorkflowSet(tuple(loaded))


def load_or_exit(folder: Path, log: Any) -> WorkflowSet:
    """For a service at start-up: an invalid workflow folder stops the service, with every problem."""
    try:
        workflows = load_folder(folder)
    except WorkflowError as exc:
        for problem in exc.problems:
            log.error("invalid_workflow", problem=problem)
        raise SystemExit(f"refusing to start: invalid workflows in {folder}:\n{exc}") from None
    log.info("workflows_loaded", folder=str(folder),
             workflows={w.workflow.name: w.digest[:12] for w in workflows.workflows})
    return workflows


def load_files(files: list[Path]) -> tuple[list[Loaded], list[str]]:
    loaded, problems = [], []
    for path in files:
        try:
            loaded.append(load_file(path))
        except WorkflowError as exc:
            problems.extend(exc.problems)
    return loaded, problems


def load_file(path: Path) -> Loaded:
    """One workflow file, validated, with `groups.yaml` from the same folder."""
    try:
        raw = path.read_bytes()
        data = yaml.safe_load(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise WorkflowError([f"{path}: {exc}"]) from None
    if not isinstance(data, dict):
        raise WorkflowError([f"{path}: expected a mapping with name, match and steps"])
    try:
        workflow = Workflow.model_validate(data)
    except ValidationError as exc:
        raise WorkflowError([_explain(path, data, err) for err in exc.errors()]) from None
    groups = _load_groups(path.parent / GROUPS_FILE)
    problems = _semantics(path, workflow, groups)
    programs: dict[str, conditions.Condition] = {}
    for step in workflow.steps:
        for attr, roots in (("when", conditions.SUBMISSION_ROOTS),
                            ("carry_forward_when", conditions.CARRY_FORWARD_ROOTS)):
            expr = getattr(step, attr, None)
            if expr is None:
                continue
            try:
                programs[expr] = conditions.compile_condition(expr, roots, workflow.checks.required_metrics)
            except conditions.ConditionError as exc:
                problems.append(f"{path}: step {step.name!r}: {attr}: {exc}")
    if problems:
        raise WorkflowError(problems)
    return Loaded(workflow, hashlib.sha256(raw).hexdigest(), str(path), groups, programs)


def _load_groups(path: Path) -> dict[str, tuple[str, ...]]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise WorkflowError([f"{path}: {exc}"]) from None
    if not isinstance(data, dict) or not all(
            isinstance(v, list) and v and all(isinstance(m, str) and m for m in v) for v in data.values()):
        raise WorkflowError([f"{path}: expected group names mapped to lists of members, such as risk: ['dave', 'erin']"])
    return {str(k): tuple(v) for k, v in data.items()}


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


def _explain(path: Path, data: dict, err: dict) -> str:
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
