"""`signoff workflow validate PATH...`: check workflow files, or whole folders, exactly as the services
load them at start, and print each workflow's policy digest: what decisions under it will record.

A file is checked on its own, with the groups.yaml beside it; a folder is checked whole, as a
service loads it (every file, names used once, at most one default). groups.yaml given as a file
(`workflows/*.yaml` names it) is not a workflow: it is skipped, saying it is read beside each one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from services.deployer import targets as deploy_targets
from shared.workflow.loading import GROUPS_FILE, load_files, load_folder
from shared.workflow.matching import Loaded
from shared.workflow.schema import WorkflowError

RESTART_NOTE = ("services read the workflow folder once, at start: changes apply when they restart "
                "(until then each logs workflows_changed_restart_needed)")

Echo = Callable[[str], None]


def validate(paths: list[Path], out: Echo, err: Echo) -> int:
    """Check every path, print what loaded to `out` and every problem to `err`; the exit code."""
    failed = False
    for path in paths:
        if path.is_dir():
            try:
                workflows = load_folder(path, deploy_targets.INPUTS)
            except WorkflowError as exc:
                problems, loaded = exc.problems, []
            else:
                problems, loaded = [], list(workflows.workflows)
                out(f"ok: {path}: {len(loaded)} workflow(s), set digest {workflows.digest}")
        elif path.name == GROUPS_FILE:
            out(f"skipped: {path}: groups file, read beside each workflow")
            continue
        else:
            loaded, problems = load_files([path], deploy_targets.INPUTS)
        for problem in problems:
            err(f"error: {problem}")
        for workflow in loaded:
            out(_line(workflow))
        failed = failed or bool(problems)
    if not failed:
        out(RESTART_NOTE)
    return 1 if failed else 0


def _line(workflow: Loaded) -> str:
    groups = "groups.yaml" if workflow.documents.groups else "no groups.yaml"
    return (f"ok: {workflow.source}: workflow {workflow.workflow.name!r} "
            f"(policy digest {workflow.digest}, of the file and {groups})")
