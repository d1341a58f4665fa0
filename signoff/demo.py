"""`make demo`: the four services as processes, sample models through every path, their timelines.

Reviewers answer through each channel: the CLI (HTTP API), Slack (a signed interactivity request
as Slack sends it, to a local stand-in of Slack's Web API) and email (a real local SMTP sink; the
link's confirmation page, then its form). Under Docker Compose, mailpit is the sink instead.

Run as `python -m signoff.demo WORKDIR` with KAFKA_BOOTSTRAP_SERVERS pointing at a running broker
and KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD_FILE its admin's (the Makefile starts a throw-away
secured one); the services and the CLI connect as their own principals, with the password files in
KAFKA_CREDENTIALS_DIR. Exits non-zero if any path ends other than expected.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.acl import Table
from shared.admin import apply_acls
from shared.topic_admin import apply_topics
from signoff.devstack import Stack, as_principal, credentials_env, signing_env
from signoff.settings import ClientSettings
from signoff.standins import MailSink, SlackStandIn, block_actions, links, signed_request

PORT = 8191
WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


@dataclass(frozen=True)
class Sample:
    title: str
    model: str
    version: str
    metrics: tuple[str, ...]  # --metric values
    review: tuple[str, str, str] | None  # (decision, approver, reason)
    expected: str  # what `signoff watch` ends with
    group_metrics: tuple[str, ...] = ()
    same_artifact_as: str | None = None  # reuse an earlier sample's bytes (same digest)
    channel: str = "http"  # how the reviewer answers: http (signoff review), slack, email


SLACK_USERS = {"U0ALICE": "alice", "U0BOB": "bob"}
EMAILS = {"alice": "alice@example.com", "bob": "bob@example.com"}


SAMPLES = (
    Sample("auto-approved and deployed (workflow fraud-models)", "fraud-detector", "1.4.0",
           ("accuracy=0.96", "recall=0.81"), None, "deployed",
           ("group_a:selection_rate=0.30", "group_b:selection_rate=0.27")),
    Sample("checks failed, stopped (workflow default)", "churn-model", "0.9.0", ("accuracy=0.71",),
           None, "rejected"),
    Sample("reviewed, approved, deployed", "credit-scorer", "2.1.0", ("accuracy=0.86",),
           ("approve", "alice", "0.86 is within the agreed band for credit-scorer"), "deployed"),
    Sample("reviewed, rejected, not deployed", "credit-scorer", "2.2.0", ("accuracy=0.84",),
           ("reject", "bob", "recall on the thin-file segment dropped"), "rejected"),
    Sample("the rejected artifact resubmitted: rejected at once, citing the first decision",
           "credit-scorer", "2.2.1", ("accuracy=0.84",), None, "rejected", same_artifact_as="2.2.0"),
    Sample("reviewed in Slack (signed interactivity request), approved, deployed", "credit-scorer", "2.3.0",
           ("accuracy=0.87",), ("approve", "alice", "segment recall back within the band"), "deployed",
           channel="slack"),
    Sample("reviewed by email (link, confirmation page, form), rejected, not deployed", "credit-scorer",
           "2.4.0", ("accuracy=0.85",), ("reject", "bob", "calibration drifted on new applicants"), "rejected",
           channel="email"),
)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM (make interrupted, CI cancelled) unwinds like an error: every `with` below stops what
    # it started (the services, the stand-ins); the Makefile's trap then stops the broker.
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    workdir = Path(sys.argv[1] if len(sys.argv) > 1 else ".data/demo").resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    artifacts = workdir / "artifacts"
    artifacts.mkdir(parents=True)
    settings = ClientSettings()  # the services inherit this environment: the same topic layout
    admin = settings.kafka  # the Makefile runs the demo as the admin of its broker
    # Each service, and the CLI (as the pipeline), as its own principal: kafka.sh's password files.
    credentials = Path(os.environ.get("KAFKA_CREDENTIALS_DIR", ".data/kafka-demo/credentials")).resolve()
    secured = admin.security_protocol != "PLAINTEXT"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": admin.bootstrap_servers,
        "VALIDATOR_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
        "DEPLOYER_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
        "DEPLOYER_MODEL_STORE": str(workdir / "model-store"),
        "DEPLOYER_STATE_DB": str(workdir / "state" / "deployer.db"),
        "REVIEW_NOTIFIER_STATE_DB": str(workdir / "state" / "reviews.db"),
        "REVIEW_NOTIFIER_HTTP_PORT": str(PORT),
        "SIGNOFF_TOKENS_FILE": str(workdir / "state" / "tokens.json"),  # reviewers' API tokens, hashed
        "POLICY_STATE_DB": str(workdir / "state" / "policy.db"),
        "SIGNOFF_WORKFLOWS": str(WORKFLOWS),
        "SIGNOFF_REVIEW_URL": f"http://127.0.0.1:{PORT}",
        **signing_env(workdir / "keys"),  # every service signs what it emits; signoff submits as the pipeline
    }
    asyncio.run(apply_topics(admin, settings.topic_layout))  # what `signoff topics create` does
    if secured:
        changes = asyncio.run(apply_acls(admin, Table()))
        print(f"signoff acl apply: {len(changes.create)} ACLs created" if changes else "signoff acl apply: no changes")
    failures = []
    with SlackStandIn() as slack, MailSink() as mail:
        signing_secret = secrets.token_urlsafe(24)
        env.update({
            "REVIEW_NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{PORT}",
            "REVIEW_NOTIFIER_SLACK_SIGNING_SECRET": signing_secret,
            "REVIEW_NOTIFIER_SLACK_BOT_TOKEN": "xoxb-demo",
            "REVIEW_NOTIFIER_SLACK_API_URL": slack.api_url,
            "REVIEW_NOTIFIER_SLACK_ALLOW_HTTP_LOOPBACK": "true",  # the stand-in is http://127.0.0.1
            "REVIEW_NOTIFIER_SLACK_CHANNEL": "C0REVIEWS",
            "REVIEW_NOTIFIER_SLACK_USERS": json.dumps(SLACK_USERS),
            "REVIEW_NOTIFIER_SMTP_HOST": mail.host,
            "REVIEW_NOTIFIER_SMTP_PORT": str(mail.port),
            "REVIEW_NOTIFIER_APPROVER_EMAILS": json.dumps(EMAILS),
            "REVIEW_NOTIFIER_TOKEN_KEY": secrets.token_urlsafe(32),
        })
        channels = Channels(slack, mail, signing_secret, f"http://127.0.0.1:{PORT}")
        print(f"Slack Web API stand-in on {slack.api_url}; SMTP sink (aiosmtpd) on {mail.host}:{mail.port}")
        print(f"starting validator, policy, review-notifier, deployer (logs in {workdir}/logs)")
        with Stack(workdir, env, service_env=credentials_env(credentials) if secured else None) as stack:
            stack.start_all()
            cli_env = as_principal(stack.env, credentials, "pipeline") if secured else stack.env
            for sample in SAMPLES:
                outcome = run_sample(sample, artifacts, cli_env, channels)
                if outcome != sample.expected:
                    failures.append(f"{sample.title}: ended {outcome}, expected {sample.expected}")
            print("\nstopping the services")
    print(f"\nmodel store: {workdir / 'model-store'}")
    for path in sorted((workdir / "model-store").glob("*/*/manifest.json")):
        print(f"  {path.parent.relative_to(workdir / 'model-store')}/")
    if failures:
        print("\nDEMO FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"\nall {len(SAMPLES)} submissions ended as expected")
    return 0


@dataclass(frozen=True)
class Channels:
    slack: SlackStandIn
    mail: MailSink
    signing_secret: str
    review_url: str


def run_sample(sample: Sample, artifacts: Path, env: dict[str, str], channels: Channels) -> str:
    print(f"\n=== {sample.title}: {sample.model} {sample.version} ===")
    artifact = artifacts / f"{sample.model}-{sample.version}.onnx"
    if sample.same_artifact_as:
        artifact.write_bytes((artifacts / f"{sample.model}-{sample.same_artifact_as}.onnx").read_bytes())
    else:
        artifact.write_bytes(b"demo weights\n" + os.urandom(64 * 1024))  # not pickle: no magic byte first
    flags = [f for m in sample.metrics for f in ("--metric", m)]
    flags += [f for g in sample.group_metrics for f in ("--group-metric", g)]
    sid = signoff(env, "submit", "--model", sample.model, "--version", sample.version,
                  "--artifact", str(artifact), *flags, "--data-version", "2026-11-01",
                  "--code-commit", "3f2c9ab", "--submitter", "carol",
                  "--training-run-id", f"run-{sample.version}").stdout.strip()
    if sample.review:
        decision, approver, reason = sample.review
        # The reviewer's own credential: the review API takes who votes from it, never from a name.
        token = signoff(env, "token", "create", approver, "--ttl", "1h").stdout.strip()
        wait_for_review(env["SIGNOFF_REVIEW_URL"], sid, token)
        if sample.channel == "slack":
            review_in_slack(channels, sid, decision, approver, reason)
        elif sample.channel == "email":
            review_by_email(channels, sid, approver, decision, reason)
        else:
            signoff({**env, "SIGNOFF_API_TOKEN": token}, "review", sid, decision, "--reason", reason)
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


def review_in_slack(channels: Channels, sid: str, decision: str, approver: str, reason: str) -> None:
    """What Slack does when `approver` clicks a button of the posted message: a signed POST."""
    (post,) = channels.slack.wait_for("chat.postMessage", sid)
    user = next(uid for uid, name in SLACK_USERS.items() if name == approver)
    print(f"  Slack: chat.postMessage to {post['body']['channel']}: {post['body']['text']!r}")
    action = "signoff_approve" if decision == "approve" else "signoff_reject"
    body, headers = signed_request(channels.signing_secret, block_actions(
        user, action, sid, reason=reason, response_url=f"{channels.slack.url}/response/{sid}"))
    response = httpx.post(f"{channels.review_url}/slack/actions", content=body, headers=headers, timeout=10)
    print(f"  Slack: {user} ({approver}) clicks {decision}: POST /slack/actions signed v0 -> "
          f"HTTP {response.status_code} {response.json()}")
    update = channels.slack.wait_for("chat.update", post["answer"]["ts"], where=lambda b: "blocks" in b
                                     and not any(x["type"] == "actions" for x in b["blocks"]))[-1]
    print(f"  Slack: chat.update, buttons removed: {update['body']['text']!r}")


def review_by_email(channels: Channels, sid: str, approver: str, decision: str, reason: str) -> None:
    """Open the mailed link (a confirmation page, nothing decided), then confirm with its form."""
    (mail,) = channels.mail.wait_for(EMAILS[approver], sid)
    link = links(mail)[decision]
    print(f"  email to {mail['To']}: {mail['Subject']!r}")
    page = httpx.get(link, timeout=10)
    print(f"  GET {link.split('?')[0]}?token=... -> HTTP {page.status_code}, confirmation page, nothing decided")
    token = httpx.URL(link).params["token"]
    result = httpx.post(f"{channels.review_url}/email/decide", data={"token": token, "reason": reason}, timeout=10)
    print(f"  POST /email/decide -> HTTP {result.status_code}: {'recorded' if result.is_success else result.text}")
    again = httpx.post(f"{channels.review_url}/email/decide", data={"token": token, "reason": reason}, timeout=10)
    print(f"  the same link again -> HTTP {again.status_code} (each link decides once)")


def wait_for_review(base_url: str, sid: str, token: str, timeout: float = 30.0) -> None:
    """A reviewer can only answer once the review-notifier has opened the review (reading it
    takes a credential too)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as http:
        while time.monotonic() < deadline:
            if http.get(f"/reviews/{sid}").status_code == 200:
                return
            time.sleep(0.1)
    raise SystemExit(f"the review of {sid} was not opened within {timeout}s")


if __name__ == "__main__":
    sys.exit(main())
