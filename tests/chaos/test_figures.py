"""The chaos figures see what they count: each one, on a small hand-made log, is zero for a correct
history and counts the fault it names. Pure: no broker."""

from __future__ import annotations

import uuid
from collections import Counter

from bench.chaos.figures import MUST_BE_ZERO, Figures, compute
from bench.chaos.scenario import Planned, Scenario
from bench.chaos.tail import Rec
from shared.events import DeploymentSucceeded, DeploymentSuperseded, Event, ModelSubmitted
from tests.unit import factories as f

OLDER, NEWER = (Planned(n=0, kind="approve", model="m", version="1.0.0", accuracy=0.85, at=0.0, reviewer="bob"),
                Planned(n=1, kind="auto", model="m", version="2.0.0", accuracy=0.95, at=1.0))
REJECTED = Planned(n=2, kind="reject", model="r", version="1.0.0", accuracy=0.85, at=2.0, reviewer="bob")


class History:
    """Records as the broker would hold them: one partition per topic here, offsets in order."""

    def __init__(self) -> None:
        self.records: list[Rec] = []
        self._next: Counter[str] = Counter()
        self.submitted: dict[int, ModelSubmitted] = {}

    def add(self, event: Event) -> Event:
        self.records.append(Rec(event.topic, 0, self._next[event.topic], b"m",
                                {"ce_subject": str(event.submission_id), "ce_id": str(event.event_id)}, event))
        self._next[event.topic] += 1
        return event

    def submit(self, *planned: Planned, sha256: str | None = None) -> ModelSubmitted:
        for p in planned:
            cand = f.candidate(model=p.model, version=p.version, artifact_sha256=sha256 or f"{p.n:064x}")
            self.submitted[p.n] = self.add(f.submitted(f.submission(cand)))
        return self.submitted[planned[-1].n]

    def deploy(self, n: int, approve: bool = True) -> DeploymentSucceeded:
        cause = self.submitted[n]
        approval = f.decided(cause)
        if approve:
            self.add(approval)
        cand = cause.submission.candidate
        return self.add(DeploymentSucceeded.caused_by(
            approval, candidate=cand, target="model-store", location=f"/store/m/{cand.version}"))

    def figures(self, *planned: Planned, pending: frozenset[str] = frozenset(),
                store: dict[str, dict] | None = None) -> Figures:
        scenario = Scenario(seed=0, submissions=planned, broker_kill_after=0)
        ids = {p.n: str(self.submitted[p.n].submission_id) for p in planned}
        return compute(scenario, ids, self.records, store or {}, set(pending))


def zeros(figures: Figures) -> dict[str, int]:
    return {name: figures.count(name) for name in (*MUST_BE_ZERO, "wrong_outcome") if figures.count(name)}


def test_versions_deployed_in_submission_order_count_nothing() -> None:
    h = History()
    h.submit(OLDER, NEWER)
    h.deploy(0)
    h.deploy(1)
    figures = h.figures(OLDER, NEWER)
    assert zeros(figures) == {} and figures.outcomes == {"deployed": 2}


def test_an_older_version_deployed_over_a_newer_one_is_a_backwards_move_and_a_wrong_outcome() -> None:
    h = History()
    h.submit(OLDER, NEWER)
    h.deploy(1)
    h.deploy(0)
    figures = h.figures(OLDER, NEWER)
    assert zeros(figures) == {"backwards_moves": 1, "wrong_outcome": 1}
    assert "m: 2.0.0" in figures.backwards_moves[0] and "-> 1.0.0" in figures.backwards_moves[0]


def test_an_older_approval_superseded_by_a_newer_deployment_is_a_correct_end() -> None:
    h = History()
    h.submit(OLDER, NEWER)
    newer = h.deploy(1)
    approval = h.add(f.decided(h.submitted[0]))
    h.add(DeploymentSuperseded.caused_by(approval, candidate=h.submitted[0].submission.candidate, target="model-store",
                                         superseded_by=newer.submission_id, superseded_by_version="2.0.0",
                                         reason="newer"))
    figures = h.figures(OLDER, NEWER)
    assert zeros(figures) == {} and figures.outcomes == {"deployed": 1, "superseded": 1}


def test_superseded_with_no_newer_deployment_is_a_wrong_outcome() -> None:
    h = History()
    h.submit(OLDER)
    approval = h.add(f.decided(h.submitted[0]))
    h.add(DeploymentSuperseded.caused_by(approval, candidate=h.submitted[0].submission.candidate, target="model-store",
                                         superseded_by=uuid.uuid4(), superseded_by_version="2.0.0", reason="?"))
    assert zeros(h.figures(OLDER)) == {"wrong_outcome": 1}


def test_a_redelivered_deployment_is_a_duplicate_event_and_a_second_event_id_a_duplicate_deployment() -> None:
    h = History()
    h.submit(NEWER)
    deployed = h.deploy(1)
    h.add(deployed)  # the same event again: at-least-once
    figures = h.figures(NEWER)
    assert zeros(figures) == {} and len(figures.duplicate_events) == 1
    h.add(DeploymentSucceeded(submission_id=deployed.submission_id, candidate=deployed.candidate,
                              target="model-store", location=deployed.location))  # another event id
    assert zeros(h.figures(NEWER)) == {"duplicate_deployments": 1}


def test_a_deployment_without_approval_or_of_a_digest_rejected_before_is_unapproved() -> None:
    h = History()
    h.submit(NEWER)
    h.deploy(1, approve=False)
    assert zeros(h.figures(NEWER)) == {"unapproved_deployments": 1}

    h = History()
    h.submit(REJECTED)
    h.add(f.decided(h.submitted[2], outcome="rejected"))
    h.submit(NEWER, sha256=h.submitted[2].submission.candidate.artifact_sha256)  # the same bytes, later
    h.deploy(1)
    figures = h.figures(REJECTED, NEWER)
    assert zeros(figures) == {"unapproved_deployments": 1}
    assert "rejected before the approval" in figures.unapproved_deployments[0]


def test_no_end_is_stuck_with_a_review_pending_and_lost_without() -> None:
    h = History()
    h.submit(OLDER, NEWER)
    h.add(f.review_requested(h.submitted[0]))
    figures = h.figures(OLDER, NEWER, pending={str(h.submitted[0].submission_id)})
    assert zeros(figures) == {"stuck": 1, "lost": 1}
    assert "review.requested" in figures.stuck[0] and "nothing" not in figures.lost[0]


def test_the_store_on_disk_is_held_to_the_log() -> None:
    h = History()
    h.submit(OLDER, NEWER)
    h.deploy(1)
    manifest = {n: {"submission_id": str(h.submitted[n].submission_id),
                    "artifact_sha256": h.submitted[n].submission.candidate.artifact_sha256} for n in (0, 1)}
    agreed = {"m": {"production": "2.0.0", "versions": {"2.0.0": manifest[1]}}}
    assert zeros(h.figures(NEWER, store=agreed)) == {}
    installed_unapproved = {"m": {"production": "1.0.0", "versions": {"1.0.0": manifest[0], "2.0.0": manifest[1]}}}
    figures = h.figures(NEWER, store=installed_unapproved)
    assert zeros(figures) == {"unapproved_deployments": 1}
    assert "on disk as m/1.0.0" in figures.unapproved_deployments[0]
    assert len(figures.store_disagreements) == 2  # PRODUCTION names 1.0.0; 1.0.0 never reported deployed
