"""An artifact published on an http registry, with the four services as real processes on the real
broker: the validator downloads and checks it, the policy approves it, the deployer downloads it
again, verifies it against the approved digest and installs exactly those bytes.

The module allows a local registry's prefix in the stack's validator and deployer (their
*_ARTIFACT_URL_PREFIXES) and restarts the two, as an operator would; the other tests use
file:// artifacts, which this does not change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from shared import topics
from tests.e2e.conftest import Env
from tests.eventlog import EventLog
from tests.unit.test_deployer_fetch import Registry

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def registry(e2e: Env) -> Iterator[Registry]:
    server = Registry()
    downloads = e2e.workdir / "downloads"
    e2e.stack.env.update({
        "VALIDATOR_ARTIFACT_URL_PREFIXES": json.dumps([server.prefix]),
        "VALIDATOR_DOWNLOAD_DIR": str(downloads / "validator"),
        "DEPLOYER_ARTIFACT_URL_PREFIXES": json.dumps([server.prefix]),
        "DEPLOYER_DOWNLOAD_DIR": str(downloads / "deployer"),
    })
    for service in ("validator", "deployer"):  # settings are read at start
        e2e.stack.stop(service)
        e2e.stack.start(service)
    yield server
    server.stop()


async def test_an_http_artifact_is_checked_approved_and_deployed_with_its_exact_bytes(
        e2e: Env, events: EventLog, registry: Registry, unique: str) -> None:
    model = f"e2ehttp-{unique}"
    weights = b"onnx-weights\n" + os.urandom(64 * 1024)
    uri, sha = registry.publish(f"{model}/{model}-1.0.0.onnx", weights)
    sid = e2e.cli("submit", "--model", model, "--version", "1.0.0", "--artifact", uri, "--sha256", sha,
                  "--metric", "accuracy=0.95", "--data-version", "2026-11-01", "--code-commit", "3f2c9ab",
                  "--submitter", "carol").stdout.strip()

    end = await events.wait_terminal(sid, timeout=90)

    assert end.topic == topics.DEPLOYMENT_SUCCEEDED, end.event
    assert [s.topic for s in events.about(sid)] == [topics.MODEL_SUBMITTED, topics.CHECKS_PASSED,
                                                    topics.REVIEW_DECIDED, topics.DEPLOYMENT_SUCCEEDED]
    passed = events.about(sid, topics.CHECKS_PASSED)[0].event
    assert next(r for r in passed.results if r.name == "integrity").measured == sha
    decision = events.about(sid, topics.REVIEW_DECIDED)[0].event
    assert decision.mode == "automatic" and decision.candidate.artifact_uri == uri
    version_dir = e2e.model_store / model / "1.0.0"
    assert end.event.location == str(version_dir.resolve())
    assert sorted(p.name for p in version_dir.iterdir()) == ["attestation.intoto.json", f"{model}-1.0.0.onnx",
                                                             "manifest.json"]
    assert (version_dir / f"{model}-1.0.0.onnx").read_bytes() == weights
    assert json.loads((version_dir / "manifest.json").read_text())["artifact_sha256"] == sha
    # Both services downloaded it (the validator to check, the deployer to install) and kept nothing.
    assert registry.requests.count(f"/registry/{model}/{model}-1.0.0.onnx") == 2
    assert list((e2e.workdir / "downloads" / "deployer").iterdir()) == []
