"""Approval workflows as code: the schema of a workflow file, strict about every key.

A workflow has up to three steps: `checks` (read by the validator), `approval` (the policy) and
`deploy` (the deployer). Pure: pydantic and the standard library only; reading YAML and compiling
CEL conditions is `shared.workflow.loading`, matching a model to its workflow `.matching`.

The deploy step's common keys (target, strategy, stages) are checked here; the keys a target owns
(a webhook's url and secret_env) are checked by the deployer's target registry
(`services/deployer/targets`), which the deployer and `signoff workflow validate` load with.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

LINEAGE_FIELDS = ("data_version", "code_commit", "training_run_id")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


def parse_duration(value: Any, field: str) -> Any:
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
        return parse_duration(value, info.field_name)


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
        return parse_duration(value, "bake")


class DeployInputs(Strict):
    """How a deployment runs, whatever the target. A target's own keys (a webhook's `url`) are
    kept as they are written here and validated by the deployer's target registry, whose typed
    inputs subclass this one."""

    model_config = ConfigDict(frozen=True, extra="allow")

    target: Name = "model-store"
    strategy: Literal["direct", "canary"] = "direct"
    stages: tuple[Stage, ...] = Field(default=(), description="canary: traffic stages, the last at 100")

    @model_validator(mode="after")
    def _staged(self) -> DeployInputs:
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
    require_signed_submission: bool = Field(
        default=False, description="Refuse submissions not signed by a pipeline key of the trust file: "
        "the validator fails them without reading anything they point to")
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


