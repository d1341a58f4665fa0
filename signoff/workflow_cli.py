"""`signoff workflow validate PATH...`: check workflow files, or whole folders, exactly as the services
load them at start, and print each workflow's policy digest: what decisions under it will record.

A file is checked on its own, with the groups.yaml beside it; a folder is checked whole, as a
service loads it (every file, names used once, at most one default). groups.yaml given as a file
(`workflows/*.yaml` names it) is not a workflow: it is skipped, saying it is read beside each one.

A workflow must also be deployable as the deployer would run it here: it has a deploy step, and
its target is configured in the environment (a webhook's secret_env set and listed, an s3 prefix
allowed, an MLflow tracking URI): the same check that keeps the deployer from starting. A CI job
without the deployer's environment skips that part with `--no-targets`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from services.deployer import targets as deploy_targets
from services.deployer.settings import DeployerSettings
from shared import codec
from shared.workflow.loading import GROUPS_FILE, load_files, load_folder
from shared.workflow.matching import Loaded
from shared.workflow.schema import WorkflowError

RESTART_NOTE = ("services read the workflow folder once, at start: changes apply when they restart "
                "(until then each logs workflows_changed_restart_needed)")

Echo = Callable[[str], None]


def validate(paths: list[Path], out: Echo, err: Echo, check_targets: bool = True) -> int:
    """Check every path, print what loaded to `out` and every problem to `err`; the exit code.
    With `check_targets`, each workflow's deploy step must exist and its target be configured in
    this environment, read as the deployer reads it (DEPLOYER_* variables)."""
    failed, folder_line = False, ""
    settings = _deployer_settings(err) if check_targets else None
    for path in paths:
        if path.is_dir():
            try:
                workflows = load_folder(path, deploy_targets.INPUTS)
            except WorkflowError as exc:
                problems, loaded = exc.problems, []
            else:
                problems, loaded = [], list(workflows.workflows)
                folder_line = f"ok: {path}: {len(loaded)} workflow(s), set digest {workflows.digest}"
        elif path.name == GROUPS_FILE:
            out(f"skipped: {path}: groups file, read beside each workflow")
            continue
        else:
            loaded, problems = load_files([path], deploy_targets.INPUTS)
        undeployable = {w.source: _undeployable(w, settings) for w in loaded}
        problems = [*problems, *(p for found in undeployable.values() for p in found)]
        loaded = [w for w in loaded if not undeployable[w.source]]
        if path.is_dir() and not problems:
            out(folder_line)
        for problem in problems:
            err(f"error: {problem}")
        for workflow in loaded:
            out(_line(workflow))
        failed = failed or bool(problems)
    if not failed:
        out(RESTART_NOTE)
    return 1 if failed else 0


def _undeployable(workflow: Loaded, settings: DeployerSettings | None) -> list[str]:
    """Why the deployer could not carry `workflow` out: with `settings`, as it checks at start; without,
    only the missing deploy step (a property of the file)."""
    if settings is not None:
        return deploy_targets.problems_of([workflow], settings)
    if workflow.workflow.deploy is None:
        return [f"workflow {workflow.workflow.name!r} ({workflow.source}) {deploy_targets.NO_DEPLOY_STEP}"]
    return []


def _deployer_settings(err: Echo) -> DeployerSettings | None:
    """The deployer's settings from this environment; None (said once) when they do not load."""
    try:
        return DeployerSettings()
    except ValidationError as exc:
        err(f"error: the deployer's settings (DEPLOYER_* variables) do not load, so deploy targets cannot be "
            f"checked: {codec.describe(exc)}")
        raise SystemExit(1) from None


def _line(workflow: Loaded) -> str:
    groups = "groups.yaml" if workflow.documents.groups else "no groups.yaml"
    return (f"ok: {workflow.source}: workflow {workflow.workflow.name!r} "
            f"(policy digest {workflow.digest}, of the file and {groups})")
