"""The deployer in memory (TestKafkaBroker) with the targets for real: canary stages, the webhook
target against a local signed-request receiver, failures, rollback and revocation."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import pytest

from services.deployer.targets import _store_files as store_files
from shared import codec, topics
from shared.events import (
    DeploymentFailed,
    DeploymentProgressed,
    DeploymentRevoked,
    DeploymentRolledBack,
    DeploymentSucceeded,
    RevocationRequested,
    RollbackRequested,
)
from tests.component.conftest import capture, mocked_body, publish, running, settle
from tests.unit import factories as f
from tests.webhook_receiver import Receiver

SECRET = "hook-secret-for-tests"

CANARY = """\
name: canary-models
match: ["canary-*"]
steps:
  - {name: checks, type: checks, inputs: {min: {accuracy: 0.8}}}
  - name: deploy
    type: deploy
    inputs:
      target: model-store
      strategy: canary
      stages: [{name: canary, traffic_percent: 10, bake: 1s}, {name: full, traffic_percent: 100}]
"""
HOOK = """\
name: hook-models
match: ["hook-*"]
steps:
  - {{name: checks, type: checks, inputs: {{min: {{accuracy: 0.8}}}}}}
  - name: deploy
    type: deploy
    inputs: {{target: webhook, url: "{url}", secret_env: {env}, strategy: {strategy}{stages}}}
"""
HOOK_STAGES = ", stages: [{name: canary, traffic_percent: 25, bake: 1s}, {name: full, traffic_percent: 100}]"
NO_DEPLOY = """\
name: manual-models
match: ["manual-*"]
steps:
  - {name: checks, type: checks, inputs: {min: {accuracy: 0.8}}}
"""


@pytest.fixture
def receiver():
    r = Receiver(SECRET.encode()).start()
    yield r
    r.stop()


@pytest.fixture
def start(build_app, workflows, receiver, monkeypatch):
    """Build the deployer with the extra workflows; `strategy` is the webhook workflow's, `env`
    the variable its secret_env names."""
    def load(strategy: str = "direct", env: str = "HOOK_SECRET", no_deploy: bool = False, **extra: object):
        (workflows / "canary.yaml").write_text(CANARY)
        if no_deploy:
            (workflows / "manual.yaml").write_text(NO_DEPLOY)
        (workflows / "hook.yaml").write_text(HOOK.format(
            url=receiver.url, env=env, strategy=strategy, stages=HOOK_STAGES if strategy == "canary" else ""))
        monkeypatch.setenv("HOOK_SECRET", SECRET)  # the secret itself stays in the environment
        return build_app("deployer", webhook_secret_envs=("HOOK_SECRET",), retry_attempts=4,
                         retry_backoff_seconds=0.01, webhook_allow_http_loopback=True, **extra)
    return load


class Models:
    """Submissions of one model, each version with its own bytes under the artifact root."""

    def __init__(self, artifact_root, model: str) -> None:
        self.root, self.model = artifact_root, model

    def cause(self, version: str, content: bytes | None = None):
        content = content if content is not None else f"{self.model} {version}".encode()
        path = self.root / f"{self.model}-{version}.bin"
        path.write_bytes(content)
        cand = f.candidate(model=self.model, version=version, artifact_uri=path.as_uri(),
                           artifact_sha256=hashlib.sha256(content).hexdigest())
        return f.submitted(f.submission(cand))


async def approve(br, cause):
    await publish(br, f.checks_passed(cause))
    await publish(br, f.decided(cause))


def emitted(deployer, cls) -> list:
    mock = deployer.emitter.publishers[cls].mock
    return [codec.decode(cls.topic, mocked_body(c.args[0])) for c in mock.call_args_list]


def later(deployer, seconds: float) -> None:
    """Move the deployer's clock forward, as if the bake time had passed."""
    deployer.service.clock = lambda: time.time() + seconds


# --- canary on the model store -------------------------------------------------------------------

async def test_canary_moves_through_its_stages_after_the_bake(start, artifact_root, tmp_path):
    deployer = start()
    models, root = Models(artifact_root, "canary-a"), tmp_path / "store"
    v1, v2 = models.cause("1"), models.cause("2")
    async with running(deployer.broker) as br:
        await approve(br, v1)
        later(deployer, 5)
        assert await deployer.service.run_due() == 1
        await settle(deployer.broker)  # what the stage emitted has gone round
        assert store_files.production(root, "canary-a") == "1"
        deployer.service.clock = time.time

        await approve(br, v2)
        assert store_files.production(root, "canary-a") == "1"  # the canary takes 10%, v1 stays
        assert json.loads((root / "canary-a" / "traffic.json").read_text())["split"] == {"2": 10, "1": 90}
        assert await deployer.service.run_due() == 0  # baking
        await settle(deployer.broker)  # what the stage emitted has gone round
        await approve(br, v2)  # a redelivered approval mid-rollout starts nothing
        later(deployer, 5)
        assert await deployer.service.run_due() == 1
        await settle(deployer.broker)  # what the stage emitted has gone round

        progressed = [(e.candidate.version, e.stage, e.traffic_percent)
                      for e in emitted(deployer, DeploymentProgressed)]
        succeeded = [e.candidate.version for e in emitted(deployer, DeploymentSucceeded)]
    assert progressed == [("1", "canary", 10), ("1", "full", 100), ("2", "canary", 10), ("2", "full", 100)]
    assert succeeded == ["1", "2"]
    assert store_files.production(root, "canary-a") == "2"
    assert json.loads((root / "canary-a" / "traffic.json").read_text())["split"] == {"2": 100}


async def test_a_scheduled_stage_resumes_after_a_restart(start, artifact_root, tmp_path):
    deployer = start()
    models = Models(artifact_root, "canary-b")
    async with running(deployer.broker) as br:
        await approve(br, models.cause("1"))
    restarted = start()  # same state file: the schedule survived
    async with running(restarted.broker):
        later(restarted, 5)
        assert await restarted.service.run_due() == 1
        await settle(restarted.broker)  # what the stage emitted has gone round
        [done] = emitted(restarted, DeploymentSucceeded)
    assert done.candidate.version == "1"
    assert store_files.production(tmp_path / "store", "canary-b") == "1"


# --- webhook ---------------------------------------------------------------------------------------

async def test_webhook_gets_one_signed_request_despite_transient_errors_and_redelivery(start, artifact_root, receiver):
    deployer = start()
    cause = Models(artifact_root, "hook-a").cause("1.0.0")
    receiver.failures = [503, 429]  # retried with backoff
    async with running(deployer.broker) as br:
        await approve(br, cause)
        await approve(br, cause)  # redelivered
        [done] = emitted(deployer, DeploymentSucceeded)
    assert [r.headers["x-test-status"] for r in receiver.requests] == ["503", "429", "200"]
    assert all(r.signed for r in receiver.requests)
    assert {r.key for r in receiver.requests} == {str(done.event_id)}  # one idempotency key
    body = receiver.accepted[0].body
    assert (body["action"], body["model"], body["version"], body["traffic_percent"]) == (
        "deploy", "hook-a", "1.0.0", 100)
    assert body["artifact_sha256"] == cause.submission.candidate.artifact_sha256
    assert body["approval"]["decided_by"] == "alice" and body["previous"] is None
    assert SECRET not in json.dumps(done.model_dump(mode="json"))
    assert done.target == "webhook" and done.location == receiver.url


async def test_webhook_refusal_fails_at_once_and_says_why(start, artifact_root, receiver, tmp_path):
    deployer = start()
    receiver.failures = [422]
    async with running(deployer.broker) as br:
        await approve(br, Models(artifact_root, "hook-b").cause("1"))
        [failed] = emitted(deployer, DeploymentFailed)
    # A 4xx is not retried; what the deployment may have moved is then given back (nothing served
    # before, so nothing serves: the restore names no version).
    deploy, restore = receiver.requests
    assert (deploy.body["action"], restore.body["action"], restore.body["operation"]) == ("deploy", "restore", "abort")
    assert restore.body["to"] is None
    assert "HTTP 422" in failed.reason and failed.target == "webhook"


async def test_webhook_that_stays_down_fails_after_the_retries(start, artifact_root, receiver):
    deployer = start()
    receiver.failures = [500] * 10
    async with running(deployer.broker) as br:
        await approve(br, Models(artifact_root, "hook-c").cause("1"))
        [failed] = emitted(deployer, DeploymentFailed)
        assert emitted(deployer, DeploymentSucceeded) == []
    # 4 tries to deploy, then 4 to give back what a half-done deploy may have moved: the reason says both.
    assert [r.body["action"] for r in receiver.requests] == ["deploy"] * 4 + ["restore"] * 4
    assert "gave up after 4 tries" in failed.reason and "restoring the previous version failed too" in failed.reason


def test_webhook_secret_not_allowed_keeps_the_deployer_from_starting(start, receiver):
    """A workflow naming a variable the deployer does not allow: refused at start, naming the
    setting to fix, rather than every approved model failing to deploy."""
    with pytest.raises(SystemExit, match="secret_env PATH is not listed in DEPLOYER_WEBHOOK_SECRET_ENVS"):
        start(env="PATH")
    assert receiver.requests == []


async def test_webhook_canary_failing_at_the_last_stage_returns_to_the_previous_version(
        start, artifact_root, receiver):
    deployer = start(strategy="canary")
    models = Models(artifact_root, "hook-e")
    async with running(deployer.broker) as br:
        await approve(br, models.cause("1"))
        later(deployer, 5)
        await deployer.service.run_due()
        await settle(deployer.broker)  # what the stage emitted has gone round
        deployer.service.clock = time.time
        await approve(br, models.cause("2"))
        receiver.failures = [503] * 4
        later(deployer, 5)
        await deployer.service.run_due()
        await settle(deployer.broker)  # what the stage emitted has gone round
        [failed] = emitted(deployer, DeploymentFailed)
        assert await deployer.service.run_due() == 0  # the schedule is gone
        await settle(deployer.broker)  # what the stage emitted has gone round
        succeeded = [e.candidate.version for e in emitted(deployer, DeploymentSucceeded)]
    stages = [(r.body["action"], r.body.get("version"), r.body.get("traffic_percent")) for r in receiver.accepted]
    assert stages == [("deploy", "1", 25), ("deploy", "1", 100), ("deploy", "2", 25), ("restore", None, None)]
    assert receiver.accepted[-1].body["to"]["version"] == "1"
    assert "stage full (100% of traffic) failed" in failed.reason and "1 stays in production" in failed.reason
    assert succeeded == ["1"]


# --- what is refused --------------------------------------------------------------------------------

def test_a_workflow_without_deploy_step_keeps_the_deployer_from_starting(start, tmp_path):
    """Started, it would end every model that workflow approves in deployment.failed: it refuses
    to start instead, naming the workflow and the fix (as `signoff workflow validate` does)."""
    with pytest.raises(SystemExit, match=r"workflow 'manual-models' \(.*manual.yaml\) has no deploy step.*add one"):
        start(no_deploy=True)


async def test_an_artifact_outside_the_allowed_roots_writes_nothing(start, tmp_path):
    deployer = start()
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"x")
    cand = f.candidate(model="plain-a", artifact_uri=outside.as_uri(), artifact_sha256=hashlib.sha256(b"x").hexdigest())
    async with running(deployer.broker) as br:
        await approve(br, f.submitted(f.submission(cand)))
        [failed] = emitted(deployer, DeploymentFailed)
    assert "outside the allowed roots" in failed.reason
    assert not (tmp_path / "store" / "plain-a").exists()


# --- rollback -----------------------------------------------------------------------------------------

def rollback(model: str, to: str | None = None) -> RollbackRequested:
    return RollbackRequested(submission_id=uuid.uuid4(), model=model, to_version=to, requested_by="oncall",
                             reason="p99 latency doubled")


async def test_rollback_restores_the_last_healthy_version_once(start, artifact_root, tmp_path):
    deployer = start()
    models, root = Models(artifact_root, "plain-b"), tmp_path / "store"
    request = rollback("plain-b")
    async with running(deployer.broker) as br:
        for version in ("1", "2", "3"):
            await approve(br, models.cause(version))
        assert store_files.production(root, "plain-b") == "3"
        await publish(br, request)
        await publish(br, request)  # redelivered: done already
        assert store_files.production(root, "plain-b") == "2"
        [rolled] = emitted(deployer, DeploymentRolledBack)
        await publish(br, rollback("plain-b"))  # 3 was rolled back from: not healthy, so 1
        assert store_files.production(root, "plain-b") == "1"
        await publish(br, rollback("plain-b", to="3"))  # but it may be named
        assert store_files.production(root, "plain-b") == "3"
        assert len(emitted(deployer, DeploymentRolledBack)) == 3
    assert (rolled.submission_id, rolled.causation_id) == (request.submission_id, request.event_id)
    assert (rolled.from_version, rolled.to_version, rolled.requested_by) == ("3", "2", "oncall")
    assert rolled.reason == "p99 latency doubled"


async def test_rollback_with_nothing_to_go_back_to_fails_with_the_reason(start, artifact_root, tmp_path):
    deployer = start()
    request = rollback("plain-c")
    async with running(deployer.broker) as br:
        await approve(br, Models(artifact_root, "plain-c").cause("1"))
        await publish(br, request)
        await publish(br, rollback("plain-c", to="9"))
        first, second = emitted(deployer, DeploymentFailed)
    assert first.submission_id == request.submission_id
    assert "nothing to roll back to" in first.reason and first.candidate.version == "1"
    assert "plain-c 9 was never deployed (deployed versions: 1)" in second.reason
    assert store_files.production(tmp_path / "store", "plain-c") == "1"


async def test_rollback_of_a_model_never_deployed_is_dead_lettered(start):
    deployer = start()
    dlq = capture(deployer.broker, topics.dlq(topics.ROLLBACK_REQUESTED))
    async with running(deployer.broker) as br:
        await publish(br, rollback("never-deployed"))
    [headers] = [dict((k, v.decode()) for k, v in r.headers) for r in dlq.records]
    assert headers["dlq_reason"].startswith("refused: ") and "never deployed" in headers["dlq_reason"]


async def test_rollback_aborts_a_canary_in_progress(start, artifact_root, tmp_path):
    deployer = start()
    models, root = Models(artifact_root, "canary-c"), tmp_path / "store"
    async with running(deployer.broker) as br:
        for version in ("1", "2"):
            await approve(br, models.cause(version))
            later(deployer, 5)
            await deployer.service.run_due()
            await settle(deployer.broker)  # what the stage emitted has gone round
            deployer.service.clock = time.time
        await approve(br, models.cause("3"))  # canary at 10%
        await publish(br, rollback("canary-c"))
        later(deployer, 5)
        assert await deployer.service.run_due() == 0
        await settle(deployer.broker)  # what the stage emitted has gone round
        [aborted] = emitted(deployer, DeploymentFailed)
    assert aborted.candidate.version == "3" and "rollout aborted: rollback to 1" in aborted.reason
    assert store_files.production(root, "canary-c") == "1"
    assert json.loads((root / "canary-c" / "traffic.json").read_text())["split"] == {"1": 100}


# --- revocation ------------------------------------------------------------------------------------------

def revocation(cause, model: str) -> RevocationRequested:
    return RevocationRequested(submission_id=cause.submission_id, model=model, requested_by="oncall",
                               reason="training data included customer PII")


async def test_revoking_the_live_version_rolls_back_and_bans_it(start, artifact_root, tmp_path):
    deployer = start()
    models, root = Models(artifact_root, "plain-d"), tmp_path / "store"
    v1, v2 = models.cause("1"), models.cause("2")
    async with running(deployer.broker) as br:
        await approve(br, v1)
        await approve(br, v2)
        request = revocation(v2, "plain-d")
        await publish(br, request)
        await publish(br, request)  # redelivered
        assert store_files.production(root, "plain-d") == "1"
        again = f.submitted(v2.submission)  # the same bytes, submitted again
        await approve(br, again)
        await publish(br, rollback("plain-d", to="2"))
        [revoked] = emitted(deployer, DeploymentRevoked)
        [rolled] = emitted(deployer, DeploymentRolledBack)
        refused_again, refused_rollback = emitted(deployer, DeploymentFailed)
    assert revoked.was_in_production and revoked.requested_by == "oncall"
    assert revoked.submission_id == v2.submission_id and revoked.candidate.version == "2"
    assert (rolled.from_version, rolled.to_version) == ("2", "1")
    assert not (root / "plain-d" / "2").exists() and len(list((root / ".revoked" / "plain-d").iterdir())) == 1
    assert "was revoked" in refused_again.reason and "never deployed again" in refused_again.reason
    assert "plain-d 2 was revoked" in refused_rollback.reason
    assert store_files.production(root, "plain-d") == "1"


async def test_revoking_the_only_version_leaves_nothing_in_production(start, artifact_root, tmp_path):
    deployer = start()
    v1 = Models(artifact_root, "plain-e").cause("1")
    async with running(deployer.broker) as br:
        await approve(br, v1)
        await publish(br, revocation(v1, "plain-e"))
        [revoked] = emitted(deployer, DeploymentRevoked)
        assert emitted(deployer, DeploymentRolledBack) == []
    assert revoked.was_in_production
    assert store_files.production(tmp_path / "store", "plain-e") is None


async def test_a_submission_revoked_before_the_deployer_saw_it_never_deploys(start, artifact_root, tmp_path):
    deployer = start()
    v1 = Models(artifact_root, "plain-f").cause("1")
    async with running(deployer.broker) as br:
        await publish(br, revocation(v1, "plain-f"))
        assert emitted(deployer, DeploymentRevoked) == []  # its candidate is not known yet
        await approve(br, v1)
        [revoked] = emitted(deployer, DeploymentRevoked)
        assert emitted(deployer, DeploymentSucceeded) == []
    assert not revoked.was_in_production and revoked.candidate.version == "1"
    assert not (tmp_path / "store" / "plain-f").exists()
    assert deployer.store.load(v1.submission_id).status == "revoked"


async def test_revoking_a_canary_in_progress_gives_the_traffic_back(start, artifact_root, tmp_path):
    deployer = start()
    models, root = Models(artifact_root, "canary-d"), tmp_path / "store"
    v2 = models.cause("2")
    async with running(deployer.broker) as br:
        await approve(br, models.cause("1"))
        later(deployer, 5)
        await deployer.service.run_due()
        await settle(deployer.broker)  # what the stage emitted has gone round
        deployer.service.clock = time.time
        await approve(br, v2)
        await publish(br, revocation(v2, "canary-d"))
        later(deployer, 5)
        assert await deployer.service.run_due() == 0
        await settle(deployer.broker)  # what the stage emitted has gone round
        [revoked] = emitted(deployer, DeploymentRevoked)
        assert [e.candidate.version for e in emitted(deployer, DeploymentSucceeded)] == ["1"]
    assert revoked.was_in_production  # it served canary traffic
    assert store_files.production(root, "canary-d") == "1"
    assert json.loads((root / "canary-d" / "traffic.json").read_text())["split"] == {"1": 100}


async def test_a_revocation_naming_another_model_is_refused_and_bans_nothing(start, artifact_root, tmp_path):
    deployer = start()
    v1 = Models(artifact_root, "plain-g").cause("1")
    dlq = capture(deployer.broker, topics.dlq(topics.REVOCATION_REQUESTED))
    async with running(deployer.broker) as br:
        await approve(br, v1)
        await publish(br, revocation(v1, "plain-other"))
        assert emitted(deployer, DeploymentRevoked) == []
    [headers] = [dict((k, v.decode()) for k, v in r.headers) for r in dlq.records]
    assert headers["dlq_reason"].startswith("refused: ")
    assert "is model 'plain-g', not 'plain-other'" in headers["dlq_reason"]
    assert store_files.production(tmp_path / "store", "plain-g") == "1"
    assert deployer.store.revocation(v1.submission_id, v1.submission.candidate.artifact_sha256, "plain-g", "1") is None
