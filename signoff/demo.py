"""`make demo`: the four services as processes, four sample models, every path, four timelines.

Run as `python -m signoff.demo WORKDIR` with KAFKA_BOOTSTRAP_SERVERS pointing at a running broker
(the Makefile starts a throw-away one). Exits non-zero if any path ends other than expected.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.admin import ensure_topics
from signoff.devstack import Stack
from signoff.settings import ClientSettings

PORT = 8191


@dataclass(frozen=True)
class Sample:
    title: str
    model: str
    version: str
    accuracy: float
    review: tuple[str, str, str] | None  # (decision, approver, reason)
    expected: str  # what `signoff watch` ends with


SAMPLES = (
    Sample("auto-approved and deployed", "fraud-detector", "1.4.0", 0.95, None, "deployed"),
    Sample("checks failed, stopped", "churn-model", "0.9.0", 0.71, None, "rejected"),
    Sample("reviewed, approved, deployed", "credit-scorer", "2.1.0", 0.86,
           ("approve", "alice", "0.86 is within the agreed band for credit-scorer"), "deployed"),
    Sample("reviewed, rejected, not deployed", "credit-scorer", "2.2.0", 0.84,
           ("reject", "bob", "recall on the thin-file segment dropped"), "rejected"),
)


def main() -> int:
    workdir = Path(sys.argv[1] if len(sys.argv) > 1 else ".data/demo").resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    artifacts = workdir / "artifacts"
    artifacts.mkdir(parents=True)
    bootstrap = ClientSettings().kafka_bootstrap_servers
    token = secrets.token_urlsafe(24)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "VALIDATOR_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
        "VALIDATOR_MIN_METRICS": json.dumps({"accuracy": 0.8}),
        "DEPLOYER_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
        "DEPLOYER_MODEL_STORE": str(workdir / "model-store"),
        "DEPLOYER_STATE_DB": str(workdir / "state" / "deployer.db"),
        "REVIEW_NOTIFIER_STATE_DB": str(workdir / "state" / "reviews.db"),
        "REVIEW_NOTIFIER_HTTP_PORT": str(PORT),
        "REVIEW_NOTIFIER_API_TOKEN": token,
        "POLICY_AUTO_APPROVE_MIN": json.dumps({"accuracy": 0.9}),
        "POLICY_APPROVERS": json.dumps(["alice", "bob"]),
        "SIGNOFF_REVIEW_URL": f"http://127.0.0.1:{PORT}",
        "SIGNOFF_API_TOKEN": token,
    }
    asyncio.run(ensure_topics(bootstrap, partitions=3))
    print(f"starting validator, policy, review-notifier, deployer (logs in {workdir}/logs)")
    failures = []
    with Stack(workdir, env) as stack:
        stack.start_all()
        for sample in SAMPLES:
            outcome = run_sample(sample, artifacts, stack.env)
            if outcome != sample.expected:
                failures.append(f"{sample.title}: ended {outcome}, expected {sample.expected}")
        print("\nstopping the services")
    print(f"\nmodel store: {workdir / 'model-store'}")
    for path in sorted((workdir / "model-store").glob("*/*/manifest.json")):
        print(f"  {path.parent.relative_to(workdir / 'model-store')}/")
    if failures:
        print("\nDEMO FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("\nall four paths ended as expected")
    return 0


def run_sample(sample: Sample, artifacts: Path, env: dict[str, str]) -> str:
    print(f"\n=== {sample.title}: {sample.model} {sample.version} ===")
    artifact = artifacts / f"{sample.model}-{sample.version}.onnx"
    artifact.write_bytes(os.urandom(64 * 1024))
    sid = signoff(env, "submit", "--model", sample.model, "--version", sample.version,
                  "--artifact", str(artifact), "--metric", f"accuracy={sample.accuracy}",
                  "--data-version", "2026-11-01", "--code-commit", "3f2c9ab",
                  "--submitter", "carol", "--training-run-id", f"run-{sample.version}").stdout.strip()
    if sample.review:
        decision, approver, reason = sample.review
        wait_for_review(env["SIGNOFF_REVIEW_URL"], sid)
        signoff(env, "review", sid, decision, "--as", approver, "--reason", reason)
    watched = signoff(env, "watch", sid, "--timeout", "60", check=False)
    return watched.stdout.strip().rsplit("=> ", 1)[-1] if "=> " in watched.stdout else "pending"


def signoff(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    shown = " ".join(shlex.quote(a) for a in args)
    print(f"$ signoff {shown}")
    result = subprocess.run([sys.executable, "-m", "signoff.cli", *args], env=env,
                            capture_output=True, text=True, timeout=120)
    for line in (result.stdout + result.stderr).rstrip().splitlines():
        print(f"  {line}")
    if check and result.returncode != 0:
        raise SystemExit(f"signoff {args[0]} failed with exit code {result.returncode}")
    return result


def wait_for_review(base_url: str, sid: str, timeout: float = 30.0) -> None:
    """A reviewer can only answer once the review-notifier has opened the review."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url) as http:
        while time.monotonic() < deadline:
            if http.get(f"/reviews/{sid}").status_code == 200:
                return
            time.sleep(0.1)
    raise SystemExit(f"the review of {sid} was not opened within {timeout}s")


if __name__ == "__main__":
    sys.exit(main())
