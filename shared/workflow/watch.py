"""Workflow changes apply at restart, and a running service says when one is waiting.

Services read the workflow folder once, at start, and never reload it. A reload could not be made
consistent: the validator, the policy and the deployer each read the folder, and one submission
passes through all three, so reloading each on its own would judge its checks under one policy and
its approval or deployment under another (a review requested under the old groups could be decided
under new ones). Restarting the services is the one switch-over everyone sees.

What a running service does instead is notice. `FolderWatch.check` loads the folder as a restart
would and, when the result differs from what is in force, logs `workflows_changed_restart_needed`
with the policy digest in force and the folder's new one, or, when the folder would not load, its
problems (a restart would refuse to start). Each change is said once, not at every look.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from shared.workflow.loading import DeployTargets, load_folder
from shared.workflow.matching import WorkflowSet
from shared.workflow.schema import WorkflowError

_MAX_PROBLEMS = 10  # listed in the warning; the rest are counted (`signoff workflow validate` lists all)


class FolderWatch:
    """Compares the workflow folder with the set a service loaded at start (`in_force`)."""

    def __init__(self, folder: Path, in_force: WorkflowSet, log: Any, targets: DeployTargets | None = None) -> None:
        self.folder, self.log, self.targets = folder, log, targets
        self.in_force = in_force.digest
        self._seen = in_force.digest  # what the last look found: a digest, or the folder's problems
        self._task: asyncio.Task[None] | None = None

    def check(self) -> dict[str, Any] | None:
        """Look once. Returns (and logs as a warning) what changed when the folder differs from what
        is in force and from what the previous look saw; None otherwise."""
        try:
            now = load_folder(self.folder, self.targets)
        except WorkflowError as exc:
            seen = "\n".join(exc.problems)
            found: dict[str, Any] = {
                "new_digest": None, "problems": exc.problems[:_MAX_PROBLEMS],
                "more_problems": max(0, len(exc.problems) - _MAX_PROBLEMS),
                "restart": "would refuse to start until the folder is fixed (signoff workflow validate)"}
        else:
            seen = now.digest
            found = {"new_digest": now.digest, "workflows": {w.workflow.name: w.digest for w in now.workflows},
                     "restart": "applies the new workflows"}
        if seen == self._seen:
            return None
        self._seen = seen
        if seen == self.in_force:
            self.log.info("workflows_back_to_in_force", folder=str(self.folder), digest=self.in_force)
            return None
        fields = {"folder": str(self.folder), "old_digest": self.in_force, **found}
        self.log.warning("workflows_changed_restart_needed", **fields)
        return fields

    def start(self, every: float) -> None:
        """Look every `every` seconds in the background, until `stop` (0: never look)."""
        if every > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(every))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)  # a period between looks, not a wait for something to happen
            try:
                await asyncio.to_thread(self.check)  # file reads and CEL compiling stay off the loop
            except Exception as exc:  # noqa: BLE001 -- a failed look must never stop the service
                self.log.warning("workflows_check_failed", folder=str(self.folder), error=repr(exc))
