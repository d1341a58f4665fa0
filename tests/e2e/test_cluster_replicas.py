"""Issue 15's acceptance run: two replicas of each service (two devstack Stacks, one consumer group
per service and topic) on a three-broker KRaft cluster of the test's own (topics with 3 replicas,
min.insync.replicas 2), sharing one PostgreSQL (SIGNOFF_DATABASE_URL). A stream of submissions
mixes automatic approvals, failing checks (the security scan: the digest is banned for good; the
declared metrics: it is not), banned artifacts resubmitted under other model names with good
metrics, and human reviews voted by Slack-style signed clicks sent to either review-notifier (the
same request to both, too). Mid-stream one broker and one replica of each service are killed -9.

Once every submission has ended and every consumer group has committed all it read, the topics
and the model store must show: 0 lost, 0 stuck, 0 dead letters, one decision per submission and
the right one (quorum 2 of alice, bob and carol, one rejection vetoes), every vote counted once,
exactly one deployment per approved submission and none of anything rejected.

"Duplicate deployment" (docs/deployer.md): a redelivered step may repeat `deployment.succeeded`
with the *same* event id (the id derives from the approval); a second id for one submission is a
second deployment, and so is a second copy into the model store (install's staging rename failing
because another copy landed first: a `target_retry` of `install` in a deployer's log).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import os
import pickle
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.review_notifier.channels.slack.blocks import APPROVE, REJECT
from shared import topics
from shared.acl import Table
from shared.admin import apply_acls
from shared.events import Candidate, ModelSubmitted, ReviewDecided, Submission
from signoff import client
from signoff.kafka_cluster import LocalCluster, throwaway_cluster
from signoff.standins import SlackStandIn
from tests import keys
from tests.e2e.conftest import PEOPLE, people_tokens
from tests.eventlog import EventLog, Seen
from tests.integration.test_cluster import partitions_of, topics_create
from tests.postgres_server import PostgresServer
from tests.replicas import Click, Clicks, Replicas, log_lines, settle, snapshot

pytestmark = pytest.mark.kafka

SECRET = secrets.token_urlsafe(24)
USERS = {"U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol"}
WORKFLOW = """
name: replicas
default: true
steps:
  - name: automated_checks
    type: checks
    inputs: {min: {accuracy: 0.80}}
  - name: review
    type: approval
    when: "metrics.accuracy <= 0.90"
    inputs: {approvers: ['alice', 'bob', 'carol'], quorum: 2, timeout: 1h}
  - name: deploy
    type: deploy
    inputs: {target: model-store}
"""
# A human review's clicks (who, which button, the same request to every replica at once), and the
# decision they must make: quorum 2, and one rejection rejects (the approval step's veto default).
VOTES = {
    "approve2": ((("alice", APPROVE, False), ("bob", APPROVE, False)), "approved"),
    "twice": ((("alice", APPROVE, True), ("carol", APPROVE, False)), "approved"),
    "veto": ((("alice", APPROVE, False), ("bob", REJECT, False)), "rejected"),
    "reject": ((("carol", REJECT, True),), "rejected"),
}
DEPLOYED = {"auto", "approve2", "twice"}  # the kinds that must deploy, once; every other is rejected
AUTO, FAILING, REUSED, PER_REVIEW_KIND = 24, 8, 6, 2  # 46 submissions; REUSED <= FAILING // 2 + 4


def unsafe_pickle(i: int) -> bytes:
    """A pickle importing collections.OrderedDict: harmless, but no global is allowed by default."""
    return pickle.dumps(collections.OrderedDict(w=os.urandom(32).hex(), i=i), protocol=4)


# Killed mid-stream, and left down: a replica of each service (of both stacks), besides a broker.
VICTIMS = {"validator": 0, "policy": 1, "review_notifier": 0, "deployer": 1}
TIMEOUT = 240.0  # from the first submission until every one has ended (about a minute when green)


@dataclass(frozen=True)
class Planned:
    event: ModelSubmitted
    kind: str  # auto, unsafe, failing (metrics), reused (a banned digest), or a key of VOTES
    reuses: str | None = None  # the rejected submission whose artifact this one submits again

    @property
    def sid(self) -> str:
        return str(self.event.submission_id)

    @property
    def candidate(self) -> Candidate:
        return self.event.submission.candidate

    @property
    def deploys(self) -> bool:
        return self.kind in DEPLOYED

    def __str__(self) -> str:
        return f"submission {self.sid} ({self.kind}, {self.candidate.model} {self.candidate.version})"


def submission(artifacts: Path, model: str, version: str, accuracy: float,
               content: bytes | None = None) -> ModelSubmitted:
    path = artifacts / f"{model}-{version}.bin"
    path.write_bytes(content if content is not None else b"weights\n" + os.urandom(2048))
    return ModelSubmitted(submission_id=uuid.uuid4(), submission=Submission(
        candidate=Candidate(model=model, version=version, artifact_uri=path.as_uri(),
                            artifact_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                            data_version="d1", code_commit="abcdef1"),
        metrics={"accuracy": accuracy}, submitter="erin"))


def plan(artifacts: Path, unique: str) -> tuple[list[Planned], list[Planned], list[Planned]]:
    """The first wave (sent at once), the second (sent after the kills), and the resubmissions of
    rejected artifacts (each sent once its original's rejection is seen). Several model names, so
    the partitions (and the replicas holding them) all take part."""
    autos = [Planned(submission(artifacts, f"ok{i % 4}-{unique}", str(i), 0.95), "auto") for i in range(AUTO)]
    # Half fail the security scan (a pickle importing a global no workflow allows: the bytes are
    # condemned, the digest rejected for good), half their declared metrics (which bans nothing).
    failing = [Planned(submission(artifacts, f"bad{i}-{unique}", "1", 0.95, unsafe_pickle(i)), "unsafe")
               for i in range(FAILING // 2)]
    failing += [Planned(submission(artifacts, f"low{i}-{unique}", "1", 0.5), "failing") for i in range(FAILING // 2)]
    reviews = [Planned(submission(artifacts, f"rv-{kind}{i}-{unique}", "1", 0.85), kind)
               for kind in VOTES for i in range(PER_REVIEW_KIND)]
    banned = [p for p in failing if p.kind == "unsafe"] + [p for p in reviews if VOTES[p.kind][1] == "rejected"]
    reused = [Planned(submission(artifacts, f"re{i}-{unique}", "1", 0.95,
                                 Path(o.candidate.artifact_uri.removeprefix("file://")).read_bytes()),
                      "reused", reuses=o.sid) for i, o in enumerate(banned[:REUSED])]
    first = autos[:AUTO // 2] + failing + reviews
    random.Random(unique).shuffle(first)
    return first, autos[AUTO // 2:], reused


@pytest.mark.timeout(900)
async def test_replicas_on_a_cluster_lose_nothing_deploy_once_and_count_each_vote_once(
        tmp_path: Path, postgres: PostgresServer, unique: str) -> None:
    started = time.monotonic()
    with throwaway_cluster(tmp_path / "cluster") as nodes, SlackStandIn() as slack:
        cluster = nodes.cluster
        created = topics_create(cluster)  # as the admin: 3 replicas, min.insync.replicas 2
        assert created.returncode == 0, created.stderr
        await apply_acls(cluster.admin, Table())
        artifacts, store = tmp_path / "artifacts", tmp_path / "model-store"
        artifacts.mkdir()
        (tmp_path / "workflows").mkdir()
        (tmp_path / "workflows" / "default.yaml").write_text(WORKFLOW)
        tokens = people_tokens(tmp_path / "tokens.json")
        env = {
            "SIGNOFF_DATABASE_URL": postgres.database(),  # one schema, every replica of every service
            "VALIDATOR_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
            "DEPLOYER_ARTIFACT_ROOTS": json.dumps([str(artifacts)]),
            "DEPLOYER_MODEL_STORE": str(store),  # one store, as a shared volume
            "SIGNOFF_WORKFLOWS": str(tmp_path / "workflows"),
            "SIGNOFF_TOKENS_FILE": str(tmp_path / "tokens.json"),
            "SIGNOFF_KNOWN_USERS": json.dumps(PEOPLE),
            "REVIEW_NOTIFIER_SLACK_SIGNING_SECRET": SECRET,
            "REVIEW_NOTIFIER_SLACK_BOT_TOKEN": "xoxb-e2e",
            "REVIEW_NOTIFIER_SLACK_API_URL": slack.api_url,
            "REVIEW_NOTIFIER_SLACK_ALLOW_HTTP_LOOPBACK": "true",  # the stand-in is http://127.0.0.1
            "REVIEW_NOTIFIER_SLACK_CHANNEL": "C0REVIEWS",
            "REVIEW_NOTIFIER_SLACK_USERS": json.dumps(USERS),
            **keys.env(),
        }
        replicas = Replicas(tmp_path, env, cluster.services_env())
        log = EventLog(cluster.admin)
        try:
            await replicas.start()
            ready = time.monotonic()
            await log.start()
            first, second, reused = plan(artifacts, unique)
            everything = [*first, *second, *reused]
            clicks = Clicks(SECRET, replicas, tokens["dave"], USERS)
            killed = await run_stream(nodes, replicas, log, clicks, first, second, reused)
            await all_ended(log, everything, TIMEOUT)
            ended = time.monotonic() - ready
            lags = await settle(cluster.admin, 90.0)
            final = await snapshot(cluster.admin)
        finally:
            await log.stop()
            replicas.stop()
        problems = check(everything, final, store, clicks, replicas, lags)
        print(f"\ncluster replicas: {len(everything)} submissions; broker {killed} and "
              f"{', '.join(f'{s}[{r}]' for s, r in VICTIMS.items())} killed; set-up "
              f"{ready - started:.0f}s, first submission to the last end {ended:.0f}s, whole test "
              f"{time.monotonic() - started:.0f}s; {len(final)} records; "
              f"{figures(everything, final, replicas, clicks)}")
        assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


async def run_stream(nodes: LocalCluster, replicas: Replicas, log: EventLog, clicks: Clicks,
                     first: list[Planned], second: list[Planned], reused: list[Planned]) -> int:
    """Send the stream, vote on its reviews, kill a broker and a replica of each service once the
    first deployments are out; returns the node killed."""
    pipeline = nodes.cluster.access("pipeline")
    await client.publish(pipeline, [p.event for p in first])
    voters = [asyncio.create_task(vote(clicks, p)) for p in first if p.kind in VOTES]
    resubmits = [asyncio.create_task(resubmit(log, pipeline, p)) for p in reused]
    ours = {p.sid for p in first}
    await log.wait_for(lambda lg: sum(1 for s in lg.records if s.topic == topics.DEPLOYMENT_SUCCEEDED
                                      and s.subject in ours) >= 3, 120, "the first deployments")
    # The leader of a partition every submission passes through: its clients must move.
    node = (await partitions_of(nodes.cluster.admin, topics.MODEL_SUBMITTED))[0]["leader"]
    await asyncio.gather(asyncio.to_thread(nodes.kill, node),
                         *(asyncio.to_thread(replicas.kill, r, s) for s, r in VICTIMS.items()))
    await client.publish(pipeline, [p.event for p in second])
    await asyncio.gather(*voters, *resubmits)
    return node


async def vote(clicks: Clicks, p: Planned) -> None:
    await clicks.open(p.sid, TIMEOUT)
    for person, action, everywhere in VOTES[p.kind][0]:
        await clicks.click(person, action, p.sid, everywhere)


async def resubmit(log: EventLog, pipeline, p: Planned) -> None:  # noqa: ANN001 - a KafkaAccess
    """Submit a rejected artifact again, under another model name, once its rejection is out."""
    assert p.reuses is not None
    await log.wait_terminal(p.reuses, TIMEOUT)
    await client.publish(pipeline, [p.event])


def terminal(records: Iterable[Seen]) -> Seen | None:
    """What ended a submission: a deployment.* or a rejecting review.decided (EventLog.wait_terminal)."""
    for s in records:
        if s.topic in (topics.DEPLOYMENT_SUCCEEDED, topics.DEPLOYMENT_FAILED, topics.DEPLOYMENT_SUPERSEDED):
            return s
        if s.topic == topics.REVIEW_DECIDED and isinstance(s.event, ReviewDecided) and s.event.outcome == "rejected":
            return s
    return None


async def all_ended(log: EventLog, planned: list[Planned], timeout: float) -> None:
    """Wait until every submission has ended; what did not is reported by `check`."""
    try:
        await log.wait_for(lambda lg: all(terminal(lg.about(p.sid)) for p in planned), timeout,
                           "every submission to end")
    except AssertionError:
        pass  # `check` names each submission that did not end, and where it stopped


def check(planned: list[Planned], final: list[Seen], store: Path, clicks: Clicks, replicas: Replicas,
          lags: dict[str, str]) -> list[str]:
    """Every assertion of the run, as one line per problem naming the submission."""
    problems = [f"consumer group {group} has not committed all it handled: {lag}" for group, lag in lags.items()]
    problems += [f"dead letter on {s.topic} ({s.subject}): {s.headers.get('dlq_reason')}"
                 for s in final if s.topic.endswith(".dlq")]
    by_subject: dict[str | None, list[Seen]] = {}
    for s in sorted(final, key=lambda s: s.event.occurred_at.isoformat() if s.event else s.headers.get("ce_time", "")):
        by_subject.setdefault(s.subject, []).append(s)
    for p in planned:
        problems += [f"{p}: {problem}" for problem in check_one(p, by_subject.get(p.sid, []))]
    problems += check_clicks(clicks)
    problems += check_store(planned, store)
    for text in replicas.logs("deployer"):
        problems += [f"second copy into the model store: {line[:300]}"
                     for line in log_lines(text, "target_retry", what="install")]
    return problems


def check_one(p: Planned, records: list[Seen]) -> list[str]:
    topics_seen = [s.topic for s in records]
    end = terminal(records)
    if end is None:
        where = (f"stuck after {' -> '.join(topics_seen)}" if len(topics_seen) > 1
                 else "lost: nothing after model.submitted" if topics_seen else "lost: not even model.submitted")
        return [f"never ended ({where})"]
    problems = []
    decisions = {s.headers["ce_id"]: s.event for s in records if s.topic == topics.REVIEW_DECIDED}
    if len(decisions) != 1:
        problems.append(f"{len(decisions)} decisions (distinct review.decided ids), not 1")
    for decision in decisions.values():
        assert isinstance(decision, ReviewDecided)
        expected = "approved" if p.deploys else "rejected"
        if decision.outcome != expected:
            problems.append(f"decided {decision.outcome} by {decision.decided_by}, expected {expected}")
        if p.kind in VOTES:
            voters = Counter(v.approver for v in decision.votes)
            clicked = {person for person, _, _ in VOTES[p.kind][0]}
            if any(n != 1 for n in voters.values()) or set(voters) != clicked:
                problems.append(f"votes in the decision {dict(voters)}, expected each of {sorted(clicked)} once")
    deployments = {s.headers["ce_id"] for s in records if s.topic == topics.DEPLOYMENT_SUCCEEDED}
    if len(deployments) != (1 if p.deploys else 0):
        problems.append(f"{len(deployments)} deployments (distinct deployment.succeeded ids: {sorted(deployments)}), "
                        f"expected {1 if p.deploys else 0}")
    if failed := [s for s in records if s.topic == topics.DEPLOYMENT_FAILED]:
        problems.append(f"deployment.failed: {failed[0].event}")
    return problems


def check_clicks(clicks: Clicks) -> list[str]:
    """Each click counted by exactly one replica; the same request sent to both refused by one.
    One exception, a race the test itself makes: the replica that counted it was killed before it
    answered (a transport error), and the other refused the same request as seen (409). That the
    vote is then in the decision exactly once is `check_one`'s votes check."""
    def counted_by_the_dead(c: Click) -> bool:
        statuses = [status for _, status in c.answers]
        return c.counted == 0 and 409 in statuses and any(isinstance(s, str) for s in statuses)

    return [f"submission {c.sid}: {c.user}'s {c.action} click counted {c.counted} times: {c.answers}"
            for c in clicks.sent if c.counted != 1 and not counted_by_the_dead(c)]


def check_store(planned: list[Planned], store: Path) -> list[str]:
    """One version folder per approved submission, none of anything rejected, no rejected digest."""
    problems = []
    rejected = {p.candidate.artifact_sha256 for p in planned if not p.deploys}
    for p in planned:
        folder = store / p.candidate.model / p.candidate.version
        if p.deploys != folder.is_dir():
            problems.append(f"{p}: version folder {'missing' if p.deploys else 'present'} in the model store")
        elif p.deploys and json.loads((folder / "manifest.json").read_text()).get("submission_id") != p.sid:
            problems.append(f"{p}: the store's manifest names another submission")
    for manifest in store.glob("*/*/manifest.json"):
        if (digest := json.loads(manifest.read_text()).get("artifact_sha256")) in rejected:
            problems.append(f"rejected digest {digest} deployed: {manifest.parent}")
    return problems


def figures(planned: list[Planned], final: list[Seen], replicas: Replicas, clicks: Clicks) -> str:
    """What redelivery did (allowed: the same event id again): repeated records and deploy steps."""
    succeeded = [s for s in final if s.topic == topics.DEPLOYMENT_SUCCEEDED]
    repeated = len(succeeded) - len({s.headers["ce_id"] for s in succeeded})
    logs = replicas.logs("deployer")
    steps = Counter(p.sid for p in planned for text in logs for _ in log_lines(text, "deployed", sid=p.sid))
    by_replica = [sum(1 for p in planned if log_lines(text, "deployed", sid=p.sid)) for text in logs]
    answers = Counter(status for c in clicks.sent for _, status in c.answers)
    return (f"deployment.succeeded repeated with the same id {repeated}x; deploy steps run again "
            f"{sum(n - 1 for n in steps.values() if n > 1)}x; deployed per deployer replica {by_replica}; "
            f"click answers {dict(answers)}")
