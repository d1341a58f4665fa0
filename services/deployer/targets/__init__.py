"""Where a release goes: one module per deploy target, listed in REGISTRY.

Each target module owns everything about its target:

- `NAME`, what a workflow's deploy step writes as `target:`;
- `Inputs`, its typed deploy inputs: a subclass of `DeployInputs` with `target: Literal[NAME]` and
  the target's own keys, validated when the workflows are loaded (`INPUTS`);
- `problems(inputs, settings)`, what keeps a deploy step from working with these settings, said
  at start-up (a webhook's secret that cannot be read);
- `build(inputs, deps)`, the `Target` that carries out the steps (see `base.Target`).

Adding a target is one module and one line in REGISTRY (docs/deployer.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Annotated, Any, Protocol, Union, cast

from pydantic import Field, TypeAdapter, ValidationError

from services.deployer.rollout import dump_inputs
from services.deployer.settings import DeployerSettings
from services.deployer.targets.base import Deliveries, Deps, RetryPolicy, Target, TargetError, retrying
from shared.workflow.matching import Loaded, WorkflowSet
from shared.workflow.schema import DeployInputs

__all__ = ["INPUTS", "REGISTRY", "Deliveries", "Deps", "RetryPolicy", "Target", "TargetError", "build",
           "problems", "retrying"]


class TargetModule(Protocol):
    NAME: str
    Inputs: type[DeployInputs]

    def problems(self, inputs: Any, settings: DeployerSettings) -> list[str]: ...
    def build(self, inputs: Any, deps: Deps) -> Target: ...


def _registry(*modules: str) -> dict[str, TargetModule]:
    loaded = [cast(TargetModule, importlib.import_module(f"{__name__}.{m}")) for m in modules]
    return {module.NAME: module for module in loaded}


REGISTRY = _registry(
    "model_store",
    "webhook",
    "s3",
    "mlflow",
)

# Every target's inputs as one pydantic type, told apart by `target`: what the workflow loader
# validates each deploy step with (`load_folder(..., targets=INPUTS)`). Built from the registry at
# import, so a type checker cannot see its members: hence Any.
_ANY_TARGET: Any = Annotated[Union[tuple(m.Inputs for m in REGISTRY.values())],  # noqa: UP007
                             Field(discriminator="target")]
INPUTS: TypeAdapter[DeployInputs] = TypeAdapter(_ANY_TARGET)


def typed(inputs: DeployInputs) -> DeployInputs:
    """`inputs` as its target's `Inputs`. A deploy step stored with a release or a lifecycle reads
    back as plain `DeployInputs` with the target's keys as extras: validated again here."""
    module = REGISTRY.get(inputs.target)
    if module is None:
        raise TargetError(f"target {inputs.target!r} does not exist; use one of: {', '.join(REGISTRY)}")
    if isinstance(inputs, module.Inputs):
        return inputs
    # Keys stored as null are the defaults of an older DeployInputs that had every target's keys.
    stored = {k: v for k, v in dump_inputs(inputs).items() if v is not None}
    try:
        return INPUTS.validate_python(stored)
    except ValidationError as exc:
        raise TargetError(f"the stored deploy step for target {inputs.target!r} is not valid: {exc}") from None


def build(inputs: DeployInputs, deps: Deps) -> Target:
    """The target a deploy step names, built from its typed inputs."""
    typed_inputs = typed(inputs)
    return REGISTRY[typed_inputs.target].build(typed_inputs, deps)


NO_DEPLOY_STEP = ("has no deploy step, so every model it approves would end in deployment.failed: add one, "
                  "such as `- {name: deploy, type: deploy, inputs: {target: model-store}}`")


def problems(workflows: WorkflowSet, settings: DeployerSettings) -> list[str]:
    """What keeps a workflow's approved models from being deployed: no deploy step, or one whose
    target these settings cannot serve (checked by the target). The deployer refuses to start on
    any, and `signoff workflow validate` reports them."""
    return problems_of(workflows.workflows, settings)


def problems_of(workflows: Iterable[Loaded], settings: DeployerSettings) -> list[str]:
    """`problems` of workflows loaded one by one (`signoff workflow validate FILE...`)."""
    found = []
    for loaded in workflows:
        step = loaded.workflow.deploy
        if step is None:
            found.append(f"workflow {loaded.workflow.name!r} ({loaded.source}) {NO_DEPLOY_STEP}")
        elif step.inputs.target in REGISTRY:
            found += [f"workflow {loaded.workflow.name!r}: {problem}"
                      for problem in REGISTRY[step.inputs.target].problems(typed(step.inputs), settings)]
    return found
