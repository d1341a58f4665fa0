"""`signoff verify` on what the four services, as real processes on the real broker, deployed:
it passes on the deployed version, fails on a changed model, and, once the release is revoked,
fails on a copy taken before (online, from the topics) and on the version the deployer retired."""

from __future__ import annotations

import shutil

import pytest

from shared import topics
from tests.e2e.conftest import Env
from tests.e2e.test_paths import submit
from tests.eventlog import EventLog

pytestmark = pytest.mark.kafka


async def test_verify_passes_on_a_deployed_model_and_fails_once_tampered_or_revoked(
        e2e: Env, events: EventLog, unique: str) -> None:
    model = f"verified-{unique}"
    sid = submit(e2e, model, "1.0.0", accuracy=0.95)
    assert (await events.wait_terminal(sid)).topic == topics.DEPLOYMENT_SUCCEEDED
    folder = e2e.model_store / model / "1.0.0"

    ok = e2e.cli("verify", str(folder))
    assert ok.stdout.startswith(f"ok: {model} 1.0.0 sha256 ") and "attested by deployer" in ok.stdout
    assert e2e.cli("verify", str(folder), "--online").returncode == 0  # nothing revoked yet

    tampered = e2e.workdir / f"tampered-{unique}"
    shutil.copytree(folder, tampered)
    artifact = tampered / f"{model}-1.0.0.bin"
    data = bytearray(artifact.read_bytes())
    data[0] ^= 0x01
    artifact.write_bytes(bytes(data))
    served_as = ("--model", model, "--version", "1.0.0")  # copies outside the store say what they are served as
    refused = e2e.cli("verify", str(tampered), *served_as, check=False)
    assert refused.returncode == 1 and "the file was changed" in refused.stderr

    copy = e2e.workdir / f"copy-{unique}"  # what a serving node copied before the revocation
    shutil.copytree(folder, copy)
    e2e.cli("revoke", sid, "--reason", "trained on PII", "--wait", "--timeout", "60")
    assert e2e.cli("verify", str(copy), *served_as).returncode == 0  # offline, a copy elsewhere cannot know
    online = e2e.cli("verify", str(copy), *served_as, "--online", check=False)
    assert online.returncode == 1 and "was revoked" in online.stderr and "trained on PII" in online.stderr
    [kept] = (e2e.model_store / ".revoked" / model).iterdir()
    retired = e2e.cli("verify", str(kept), check=False)
    assert retired.returncode == 1 and "was revoked" in retired.stderr
