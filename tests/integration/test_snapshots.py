"""A service's views restored from their snapshots on the real broker (shared/replay.py): a restart
reads only the records written since the snapshot, at start and in its followers (counted, not
timed); a corrupt snapshot falls back to reading from the beginning, with the same book.

The validator is built by its app factory and started as FastStream would (start-up hook, broker,
shutdown), as its own principal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.policy.app import build as build_policy
from services.policy.settings import PolicySettings
from services.validator.app import build
from services.validator.settings import ValidatorSettings
from shared import reader, signing, topics
from shared.events import DeploymentSucceeded
from shared.production import EVENTS, ProductionBook
from shared.replay import rebuild
from shared.snapshot_store import SnapshotStore
from signoff import client
from signoff.devstack import Cluster
from tests import keys
from tests.unit import factories as f

pytestmark = pytest.mark.kafka


def deployed(model: str, version: str) -> DeploymentSucceeded:
    return f.deployment_succeeded(f.submitted(f.submission(f.candidate(model=model, version=version))))


def fields(cluster: Cluster, tmp_path: Any, service: str) -> dict[str, Any]:
    access = cluster.access(service.replace("_", "-"))
    return dict(kafka_bootstrap_servers=access.bootstrap_servers, kafka_security_protocol=access.security_protocol,
                kafka_sasl_username=access.sasl_username, kafka_sasl_password=access.sasl_password,
                kafka_ssl_cafile=access.ssl_cafile,
                workflows=f.workflow_folder(tmp_path / "workflows", default=WORKFLOW),
                state_db=tmp_path / service / "state.db", **keys.service_fields(service))


def validator(cluster: Cluster, tmp_path: Any) -> Any:
    return build(ValidatorSettings(**fields(cluster, tmp_path, "validator"), download_dir=tmp_path / "downloads"))


WORKFLOW = "name: w\ndefault: true\nsteps:\n  - {name: c, type: checks}\n  - {name: d, type: deploy}\n"


async def run(service: Any, until: Any = None) -> int:
    """Start the service as FastStream does, wait (with a deadline) until `until()` holds, stop
    it; returns how many records its start-up read for production."""
    await service.start()
    read_at_start = service.kept.read_at_start
    await service.broker.start()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while until is not None and not until():
            assert asyncio.get_running_loop().time() < deadline, "the followers did not get there in 30 s"
            await asyncio.sleep(0.05)  # polling the book, bounded by the deadline
    finally:
        await service.broker.stop()
        await service.close()
    return read_at_start


async def on_topics(cluster: Cluster) -> int:
    first, end = await reader.bounds(cluster.admin, [cls.topic for cls in EVENTS])
    return sum(end[tp] - first[tp] for tp in first)


async def test_a_restart_reads_only_what_came_after_its_snapshot(kafka_cluster: Cluster, unique: str,
                                                                 tmp_path: Any) -> None:
    model = f"snap-{unique}"
    deployer = keys.signer("deployer")
    await client.publish(kafka_cluster.admin, [deployed(model, str(i)) for i in range(20)], signer=deployer)

    first = validator(kafka_cluster, tmp_path)
    assert await run(first) == await on_topics(kafka_cluster)  # no snapshot yet: everything
    assert first.production.known(model).candidate.version == "19"

    # While it is down: two more. The restart reads those two, not the history.
    await client.publish(kafka_cluster.admin, [deployed(model, "20"), deployed(model, "21")], signer=deployer)
    second = validator(kafka_cluster, tmp_path)
    live = deployed(model, "22")

    def after_live() -> bool:
        known = second.production.known(model)
        return known is not None and known.candidate.version == "22"

    async def publish_live() -> None:
        while second.broker.running is False:
            await asyncio.sleep(0.01)
        await client.publish(kafka_cluster.admin, [live], signer=deployer)

    publishing = asyncio.create_task(publish_live())
    assert await run(second, after_live) == 2
    await publishing
    # Its followers went on from the snapshot's offsets: they handled the live record only.
    assert second.kept.followed == 1

    full = ProductionBook()
    await rebuild(kafka_cluster.admin, full.apply, *EVENTS, keyring=signing.load_trust(keys.keys().trust))
    assert second.production.to_snapshot() == full.to_snapshot()


async def test_a_corrupt_snapshot_is_read_from_the_beginning(kafka_cluster: Cluster, unique: str,
                                                             tmp_path: Any) -> None:
    model = f"snap-{unique}"
    await client.publish(kafka_cluster.admin, [deployed(model, "1")], signer=keys.signer("deployer"))
    await run(validator(kafka_cluster, tmp_path))
    store = SnapshotStore(tmp_path / "validator" / "state.db")
    store.db.execute("UPDATE snapshot SET state = '{\"version\": 1, \"releases\": 7}'")
    store.close()

    again = validator(kafka_cluster, tmp_path)
    assert await run(again) == await on_topics(kafka_cluster)
    assert again.production.known(model).candidate.version == "1"
    assert topics.DEPLOYMENT_SUCCEEDED in again.kept.topics


def rejection(digest: str) -> Any:
    return f.decided(outcome="rejected", cand=f.candidate(artifact_sha256=digest), final_for_artifact=True)


async def test_the_policy_restores_the_rejections_and_its_barrier_holds(kafka_cluster: Cluster, unique: str,
                                                                         tmp_path: Any) -> None:
    """shared.facts: the rejections come back from the snapshot; the restart reads the one
    written since, and the barrier before a decision is already passed (what was read counts)."""
    people = keys.signer("review-notifier")  # a person's rejection is the review-notifier's to sign
    digests = [f"{unique}{i:054d}" for i in range(5)]
    await client.publish(kafka_cluster.admin, [rejection(d) for d in digests[:4]], signer=people)
    first = build_policy(PolicySettings(**fields(kafka_cluster, tmp_path, "policy")))
    await run(first)
    assert first.facts.kept is not None and first.facts.kept.read_at_start >= 4

    await client.publish(kafka_cluster.admin, [rejection(digests[4])], signer=people)
    second = build_policy(PolicySettings(**fields(kafka_cluster, tmp_path, "policy")))
    await second.start()
    try:
        assert second.facts.kept is not None and second.facts.kept.read_at_start == 1
        assert all(second.rejections.get(d) is not None for d in digests)
        await asyncio.wait_for(second.facts.caught_up(), 10)  # nothing left to wait for
    finally:
        await second.close()


async def test_a_fact_skipped_as_untrusted_is_read_again_at_the_next_start(kafka_cluster: Cluster, unique: str,
                                                                            tmp_path: Any) -> None:
    """A rejection whose signature the policy does not trust (yet: a key rotated before the trust
    file) is skipped; the snapshot resumes before it, so the next start reads it again, and counts
    it once the trust file trusts its key: a rejection is never lost to a snapshot."""
    people = keys.signer("review-notifier")
    digests = [f"{unique}{i:054d}" for i in range(3)]
    await client.publish(kafka_cluster.admin, [rejection(digests[0])], signer=people)
    _, end = await reader.bounds(kafka_cluster.admin, [topics.REVIEW_DECIDED])
    await client.publish(kafka_cluster.admin, [rejection(digests[1])], signer=keys.signer("pipeline-test"))
    _, after = await reader.bounds(kafka_cluster.admin, [topics.REVIEW_DECIDED])
    [(skipped_at, tp)] = [(end[tp], tp) for tp in after if after[tp] > end[tp]]
    await client.publish(kafka_cluster.admin, [rejection(digests[2])], signer=people)

    first = build_policy(PolicySettings(**fields(kafka_cluster, tmp_path, "policy")))
    await run(first)
    assert first.rejections.get(digests[1]) is None  # untrusted: not a fact
    assert first.rejections.get(digests[0]) and first.rejections.get(digests[2])
    store = SnapshotStore(tmp_path / "policy" / "state.db")
    saved = store.load("policy.rejections")
    store.close()
    partition = (tp.topic, tp.partition)
    assert saved is not None and (partition, skipped_at) in saved.skipped  # listed, to be read again
    assert saved.offsets[partition] > skipped_at  # and nothing else read again for it

    second = build_policy(PolicySettings(**fields(kafka_cluster, tmp_path, "policy")))
    await second.start()
    try:  # the skipped record is read again (alone), still untrusted: listed again
        kept = second.facts.kept
        assert kept is not None and kept.read_again >= 1 and (partition, skipped_at) in kept.cursor.skipped
        assert all(second.rejections.get(d) is not None for d in (digests[0], digests[2]))
    finally:
        await second.close()
