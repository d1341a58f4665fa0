"""The deployer and the policy, in memory, with their state in PostgreSQL (SIGNOFF_DATABASE_URL, as
replicas share it): the same wiring as on the SQLite default. Replicas racing on it:
tests/integration/test_deployer_policy_replicas.py."""

from __future__ import annotations

from shared import topics
from shared.events import DeploymentSucceeded, ReviewDecided
from tests.component.conftest import publish, running, sent
from tests.unit import factories as f


async def test_the_deployer_keeps_its_state_in_postgresql_when_told(build_app, artifact, postgres, tmp_path):
    deployer = build_app("deployer", database_url=postgres.database())
    assert deployer.store.db.dialect == "postgresql"
    cause = f.submitted(f.submission(f.candidate(artifact_uri=artifact.path.as_uri(),
                                                 artifact_sha256=artifact.sha256)))
    approval = f.decided(cause)
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))
        await publish(br, approval)
        await publish(br, approval)  # redelivered
        sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
    assert deployer.store.load(cause.submission_id).status == "deployed"
    assert not (tmp_path / "deployer" / "state.db").exists()  # not in the SQLite default


async def test_the_policy_keeps_its_state_in_postgresql_when_told(build_app, postgres, tmp_path):
    policy = build_app("policy", database_url=postgres.database())
    assert policy.store.db.dialect == "postgresql"
    cause = f.checks_passed(f.submitted(f.submission(metrics={"accuracy": 0.95})))
    async with running(policy.broker) as br:
        await publish(br, cause)
        await publish(br, cause)  # redelivered: decided once
        sent(policy.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert policy.store.has_decided(cause.submission_id)
    assert not (tmp_path / "policy" / "state.db").exists()
