"""The review-notifier, in memory: review.requested opens a review, the HTTP API takes votes,
the deciding vote emits review.decided once; a vote against a production that changed since the
review was shown is refused and the evidence refreshed."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import httpx
import pytest
from faststream import FastStream

from services.review_notifier.app import build, create_app
from services.review_notifier.settings import ReviewNotifierSettings
from shared import topics
from shared.events import DeploymentSucceeded, PolicyDocuments, PolicyRef, Production, ReviewDecided, utcnow
from tests import keys
from tests.component import modes
from tests.component.conftest import publish, running, sent, settle
from tests.component.people import People
from tests.unit import factories as f


@pytest.fixture
def people(tmp_path) -> People:
    return People(tmp_path)


@pytest.fixture
def notifier(build_app, people):
    return build_app("review_notifier", **people.settings)


@pytest.fixture
def request_event():
    return f.review_requested(f.submitted(f.submission(submitter="carol")), approvers=("alice", "bob", "carol"))


def client(wiring) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wiring.api), base_url="http://review")


def vote(decision: str = "approve") -> dict:
    return {"decision": decision, "reason": "checked the report"}


def deployed(version: str, ago: timedelta = timedelta(0), **metrics: float) -> DeploymentSucceeded:
    """fraud-detector `version` put in production `ago` (a submission of its own)."""
    cause = f.submitted(f.submission(f.candidate(version=version,
                                                 artifact_sha256=hashlib.sha256(version.encode()).hexdigest())))
    approval = f.decided(cause)
    return DeploymentSucceeded.caused_by(approval, candidate=approval.candidate, target="model-store",
                                         location=f"/store/fraud-detector/{version}", occurred_at=utcnow() - ago,
                                         metrics=metrics or {"accuracy": 0.93})


def production(event: DeploymentSucceeded) -> Production:
    """What the policy puts in review.requested for the release `event` deployed."""
    return Production(candidate=event.candidate, metrics=event.metrics, submission_id=event.submission_id)


async def test_approval_emits_review_decided_once(notifier, people, request_event):
    url = f"/reviews/{request_event.submission_id}/decision"
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, request_event)
        await publish(br, request_event)  # a redelivered request does not reopen the review
        got = await http.get(f"/reviews/{request_event.submission_id}", headers=people.auth("dave"))
        assert got.status_code == 200 and got.json()["votes"] == []
        r = await http.post(url, json=vote(), headers=people.auth("alice"))
        assert r.status_code == 200, r.text
        assert r.json() == {"submission_id": str(request_event.submission_id), "approver": "alice", "votes": 1,
                            "outcome": "approved", "break_glass": False}
        again = await http.post(url, json=vote(), headers=people.auth("bob"))
        assert again.status_code == 409
        await settle(notifier.broker)  # what the vote emitted has gone round
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.mode, out.decided_by) == ("approved", "human", "alice")
    assert [(v.approver, v.channel) for v in out.votes] == [("alice", "http")]
    assert out.causation_id == request_event.event_id
    assert notifier.store.get(request_event.submission_id).decision == out


async def test_a_vote_after_production_changed_is_refused_and_the_evidence_refreshed(notifier, people):
    v110, v160 = deployed("1.1.0", ago=timedelta(days=3), accuracy=0.91), deployed("1.6.0", accuracy=0.97)
    event = f.review_requested(f.submitted(f.submission(submitter="carol")), production=production(v110))
    url, shown = f"/reviews/{event.submission_id}/decision", f"/reviews/{event.submission_id}"
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, v110)  # in production when the policy asked
        await publish(br, event)
        await publish(br, v160)  # a late approval of another review replaced it
        r = await http.post(url, json=vote(), headers=people.auth("alice"))
        assert r.status_code == 409, r.text
        assert r.json()["detail"] == ("production changed since this review was shown: now fraud-detector 1.6.0 "
                                      "(was 1.1.0); the evidence is refreshed, look again and vote again")
        got = (await http.get(shown, headers=people.auth("alice"))).json()
        assert got["votes"] == [] and got["decision"] is None
        assert (got["shown"]["candidate"]["version"], got["shown"]["metrics"]) == ("1.6.0", {"accuracy": 0.97})
        assert got["request"]["production"]["candidate"]["version"] == "1.1.0"  # the request as it came
        await settle(notifier.broker)
        notifier.emitter.publishers[ReviewDecided].mock.assert_not_called()

        r = await http.post(url, json=vote(), headers=people.auth("alice"))  # against the refreshed evidence
        assert r.status_code == 200 and r.json()["outcome"] == "approved", r.text
        await settle(notifier.broker)
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.decided_by, len(out.votes)) == ("approved", "alice", 1)
    assert notifier.store.get(event.submission_id).shown == production(v160)


async def test_unknown_review_is_404(notifier, people):
    async with running(notifier.broker), client(notifier) as http:
        r = await http.post(f"/reviews/{f.submitted().submission_id}/decision", json=vote(),
                            headers=people.auth("alice"))
        assert r.status_code == 404
        r = await http.get(f"/reviews/{f.submitted().submission_id}", headers=people.auth("alice"))
        assert r.status_code == 404


async def test_rejection_emits_rejected(notifier, people, request_event):
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, request_event)
        r = await http.post(f"/reviews/{request_event.submission_id}/decision",
                            json=vote("reject"), headers=people.auth("bob"))
        assert r.json()["outcome"] == "rejected"
        await settle(notifier.broker)  # what the vote emitted has gone round
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.decided_by) == ("rejected", "bob")


async def test_invalid_body_is_422(notifier, people, request_event):
    async with running(notifier.broker), client(notifier) as http:
        r = await http.post(f"/reviews/{request_event.submission_id}/decision",
                            json={"decision": "maybe", "reason": "x"}, headers=people.auth("alice"))
        assert r.status_code == 422


async def test_building_the_app_opens_nothing(tmp_path, people):
    settings = ReviewNotifierSettings(state_db=tmp_path / "review" / "reviews.db", **people.settings,
                                      **modes.kafka_fields(), **keys.service_fields("review_notifier"))
    wiring = build(settings)
    assert isinstance(create_app(settings), FastStream)
    assert not (tmp_path / "review").exists() and wiring.store is None and wiring.http is None
    async with client(wiring) as http:
        assert (await http.get("/healthz")).status_code == 200
        r = await http.get(f"/reviews/{f.submitted().submission_id}", headers=people.auth("alice"))
        assert r.status_code == 503 and "not open" in r.json()["detail"]
    wiring.open()
    try:
        assert (tmp_path / "review" / "reviews.db").exists()
        async with client(wiring) as http:
            r = await http.get(f"/reviews/{f.submitted().submission_id}", headers=people.auth("alice"))
            assert r.status_code == 404
    finally:
        await wiring.close()


async def test_the_human_decision_carries_the_policy_texts_the_review_was_requested_under(notifier, people):
    """The audit sees what was in force when review was asked: the same workflow and groups texts,
    through the stored review (SQLite) and the vote."""
    documents = PolicyDocuments(workflow="name: strict\n# the file as read\n", groups="leads: [bob]\n")
    policy = PolicyRef(name="strict", rule="manual_approval", digest=documents.digest(), documents=documents)
    request = f.review_requested(f.submitted(f.submission(submitter="carol")), policy=policy)
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, request)
        assert notifier.store.get(request.submission_id).request.policy == policy  # stored with its texts
        r = await http.post(f"/reviews/{request.submission_id}/decision", json=vote("reject"),
                            headers=people.auth("bob"))
        assert r.status_code == 200, r.text
        await settle(notifier.broker)
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.mode, out.decided_by) == ("human", "bob")
    assert out.policy == policy and out.policy.documents == documents
