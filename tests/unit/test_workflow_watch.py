"""Workflow changes apply at restart: a service says at start which policy digests it loaded, and a
running service that finds its folder changed warns once per change (never reloading), with the
digest in force and the new one, or why a restart would refuse to start."""

from __future__ import annotations

import asyncio

from services.deployer.targets import INPUTS
from shared.workflow.loading import load_folder, load_or_exit
from shared.workflow.watch import FolderWatch
from tests.unit import factories as f
from tests.unit.test_workflows import VALID


class Log:
    """Records what a structlog logger would be told."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def _record(self, level: str):
        return lambda event, **kw: self.lines.append((level, event, kw))

    def __getattr__(self, level: str):
        return self._record(level)

    def named(self, event: str) -> list[dict]:
        return [kw for _, name, kw in self.lines if name == event]


def started(tmp_path) -> tuple[FolderWatch, Log, str]:
    folder = f.workflow_folder(tmp_path, strict=VALID)
    log = Log()
    workflows = load_or_exit(folder, log, INPUTS)
    return FolderWatch(folder, workflows, log, INPUTS), log, workflows.digest


def test_start_logs_the_set_digest_each_workflows_digest_and_that_changes_apply_at_restart(tmp_path):
    _, log, digest = started(tmp_path)
    (loaded,) = log.named("workflows_loaded")
    assert loaded["digest"] == digest
    assert loaded["workflows"] == {"strict": load_folder(tmp_path).workflows[0].digest}
    assert loaded["changes"] == "apply at restart: the folder is read once, at start"


def test_an_unchanged_folder_says_nothing(tmp_path):
    watch, log, _ = started(tmp_path)
    assert watch.check() is None and watch.check() is None
    assert log.named("workflows_changed_restart_needed") == []


def test_a_person_added_to_a_group_is_a_change_waiting_for_a_restart_said_once(tmp_path):
    watch, log, in_force = started(tmp_path)
    (tmp_path / "groups.yaml").write_text(f.GROUPS.replace("[bob, carol]", "[bob, carol, mallory]"))
    new = load_folder(tmp_path, INPUTS)
    warned = watch.check()
    assert warned is not None and warned["old_digest"] == in_force and warned["new_digest"] == new.digest
    assert warned["workflows"] == {"strict": new.workflows[0].digest}
    assert [(level, name) for level, name, _ in log.lines[-1:]] == [("warning", "workflows_changed_restart_needed")]
    assert log.named("workflows_changed_restart_needed") == [{**warned}]
    assert watch.check() is None  # the same change is not said again
    assert len(log.named("workflows_changed_restart_needed")) == 1
    assert watch.in_force == in_force  # nothing reloaded


def test_a_folder_that_would_not_load_says_a_restart_would_refuse_to_start(tmp_path):
    watch, log, in_force = started(tmp_path)
    (tmp_path / "strict.yaml").write_text(VALID.replace("quorum: 2", "quorum: 0"))
    warned = watch.check()
    assert warned is not None and warned["old_digest"] == in_force and warned["new_digest"] is None
    assert len(warned["problems"]) == 1 and "inputs.quorum" in warned["problems"][0]
    assert warned["restart"].startswith("would refuse to start")
    (tmp_path / "strict.yaml").write_text(VALID)  # put back: what is in force again
    assert watch.check() is None
    assert log.named("workflows_back_to_in_force") == [{"folder": str(tmp_path), "digest": in_force}]


async def test_the_background_look_runs_and_stops_with_the_service(tmp_path):
    watch, log, _ = started(tmp_path)
    (tmp_path / "groups.yaml").write_text(f.GROUPS + "extra: [zoe]\n")
    watch.start(every=0.01)
    async with asyncio.timeout(10):  # a deadline, not a sleep: done as soon as the warning is logged
        while not log.named("workflows_changed_restart_needed"):
            await asyncio.sleep(0.01)
    await watch.stop()
    assert watch._task is None


def test_zero_seconds_never_looks(tmp_path):
    watch, _, _ = started(tmp_path)
    watch.start(every=0)
    assert watch._task is None
