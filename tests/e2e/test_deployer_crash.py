"""kill -9 of the deployer while it copies a large artifact into the model store, then a restart:
exactly one complete version, no staging leftovers, the production pointer intact throughout."""

from __future__ import annotations

import hashlib
import time

import pytest

from services.deployer.targets import _store_files as store_files
from shared import topics
from tests.e2e.conftest import Env
from tests.e2e.test_deployer_rollout import submit
from tests.eventlog import EventLog

pytestmark = pytest.mark.kafka

SIZE = 768 * 1024 * 1024  # zeros: quick to create (sparse), long enough to copy and hash to be caught


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def test_kill_9_mid_copy_then_restart_leaves_one_complete_version(
        e2e: Env, events: EventLog, unique: str) -> None:
    model = f"crash-{unique}"
    first = submit(e2e, model, "1")
    assert (await events.wait_terminal(first)).topic == topics.DEPLOYMENT_SUCCEEDED
    big = e2e.artifacts / f"{model}-2.onnx"
    with open(big, "wb") as f:
        f.truncate(SIZE)
    staging = e2e.model_store / store_files.STAGING
    try:
        sid = submit(e2e, model, "2", artifact=str(big))

        # Wait for the deployer to start copying version 2 (its staging folder appears), then kill it.
        deadline = time.monotonic() + 120
        partial = None
        while time.monotonic() < deadline and partial is None:
            partial = next((p for p in staging.glob(f"*~{model}-2-*/*") if p.stat().st_size > 0), None)
            time.sleep(0.005)  # polling the filesystem, bounded by the deadline
        assert partial is not None, "the deployer never started copying version 2"
        e2e.stack.kill("deployer")
        copied = partial.stat().st_size

        assert 0 < copied < SIZE, f"killed after {copied} of {SIZE} bytes: not mid-copy"
        assert not (e2e.model_store / model / "2").exists()  # nothing half-copied is visible
        assert store_files.production(e2e.model_store, model) == "1"
        assert events.about(sid, topics.DEPLOYMENT_SUCCEEDED) == []

        e2e.stack.start("deployer")  # cleans staging, then the uncommitted approval is redelivered
        end = await events.wait_terminal(sid, timeout=120)

        assert end.topic == topics.DEPLOYMENT_SUCCEEDED
        versions = sorted(p.name for p in (e2e.model_store / model).iterdir() if p.is_dir())
        assert versions == ["1", "2"]
        installed = e2e.model_store / model / "2" / big.name
        assert installed.stat().st_size == SIZE and _sha256(installed) == end.event.candidate.artifact_sha256
        assert not staging.exists() or not any(staging.iterdir())
        assert store_files.production(e2e.model_store, model) == "2"
        assert not list((e2e.model_store / model).glob(".*tmp*"))
        assert len({s.event.event_id for s in events.about(sid, topics.DEPLOYMENT_SUCCEEDED)}) == 1
        print(f"\nkill -9 after {copied} of {SIZE} bytes copied; after restart: versions {versions}, "
              f"PRODUCTION={store_files.production(e2e.model_store, model)}, staging empty")
    finally:
        big.unlink(missing_ok=True)  # the large files go once the evidence is checked: disk space
        (e2e.model_store / model / "2" / big.name).unlink(missing_ok=True)
        if "deployer" not in e2e.stack.procs:
            e2e.stack.start("deployer")
