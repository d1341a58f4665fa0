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
from shared.events import DeploymentSucceeded, Production, ReviewDecided, utcnow
from tests.component.conftest import publish, running, sent, settle
from tests.unit import factories as f

AUTH = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def notifier(build_app):
    return build_app("review_notifier")


@pytest.fixture
def request_event():
    return f.review_requested(f.submitted(f.submission(submitter="carol")), approvers=("alice", "bob", "carol"))


def client(wiring) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wiring.api), base_url="http://review")


def vote(approver: str, decision: str = "approve") -> dict:
    return {"decision": decision, "approver": approver, "reason": "checked the report"}


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


async def test_approval_emits_review_decided_once(notifier, request_event):
    url = f"/reviews/{request_event.submission_id}/decision"
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, request_event)
        await publish(br, request_event)  # a redelivered request does not reopen the review
        got = await http.get(f"/reviews/{request_event.submission_id}")
        assert got.status_code == 200 and got.json()["votes"] == []
        r = await http.post(url, json=vote("alice"), headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json() == {"submission_id": str(request_event.submission_id), "votes": 1, "outcome": "approved",
                            "break_glass": False}
        again = await http.post(url, json=vote("bob"), headers=AUTH)
        assert again.status_code == 409
        await settle(notifier.broker)  # what the vote emitted has gone round
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.mode, out.decided_by) == ("approved", "human", "alice")
    assert [(v.approver, v.channel) for v in out.votes] == [("alice", "http")]
    assert out.causation_id == request_event.event_id
    assert notifier.store.get(request_event.submission_id).decision == out


async def test_a_vote_after_production_changed_is_refused_and_the_evidence_refreshed(notifier):
    v110, v160 = deployed("1.1.0", ago=timedelta(days=3), accuracy=0.91), deployed("1.6.0", accuracy=0.97)
    event = f.review_requested(f.submitted(f.submission(submitter="carol")), production=production(v110))
    url, shown = f"/reviews/{event.submission_id}/decision", f"/reviews/{event.submission_id}"
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, v110)  # in production when the policy asked
        await publish(br, event)
        await publish(br, v160)  # a late approval of another review replaced it
        r = await http.post(url, json=vote("alice"), headers=AUTH)
        assert r.status_code == 409, r.text
        assert r.json()["detail"] == ("production changed since this review was shown: now fraud-detector 1.6.0 "
                                      "(was 1.1.0); the evidence is refreshed, look again and vote again")
        got = (await http.get(shown)).json()
        assert got["votes"] == [] and got["decision"] is None
        assert (got["shown"]["candidate"]["version"], got["shown"]["metrics"]) == ("1.6.0", {"accuracy": 0.97})
        assert got["request"]["production"]["candidate"]["version"] == "1.1.0"  # the request as it came
        await settle(notifier.broker)
        notifier.emitter.publishers[ReviewDecided].mock.assert_not_called()

        r = await http.post(url, json=vote("alice"), headers=AUTH)  # against the refreshed evidence
        assert r.status_code == 200 and r.json()["outcome"] == "approved", r.text
        await settle(notifier.broker)
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.decided_by, len(out.votes)) == ("approved", "alice", 1)
    assert notifier.store.get(event.submission_id).shown == production(v160)


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": "Basic s3cret"}, 401),
])
async def test_without_the_token_is_401(notifier, request_event, headers, status):
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, request_event)
        r = await http.post(f"/reviews/{request_event.submission_id}/decision", json=vote("alice"), headers=headers)
        assert r.status_code == status
        await settle(notifier.broker)  # what the vote emitted has gone round
        notifier.emitter.publishers[ReviewDecided].mock.assert_not_called()
    assert notifier.store.get(request_event.submission_id).votes == ()


@pytest.mark.parametrize(("approver", "status", "says"), [
    ("mallory", 403, "not an approver"), ("carol", 403, "submitter cannot approve"),
])
async def test_refused_votes(notifier, request_event, approver, status, says):
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, request_event)
        r = await http.post(f"/reviews/{request_event.submission_id}/decision", json=vote(approver), headers=AUTH)
        assert r.status_code == status and says in r.json()["detail"]
        await settle(notifier.broker)  # what the vote emitted has gone round
        notifier.emitter.publishers[ReviewDecided].mock.assert_not_called()


async def test_unknown_review_is_404(notifier):
    async with running(notifier.broker), client(notifier) as http:
        r = await http.post(f"/reviews/{f.submitted().submission_id}/decision", json=vote("alice"), headers=AUTH)
        assert r.status_code == 404
        assert (await http.get(f"/reviews/{f.submitted().submission_id}")).status_code == 404


async def test_rejection_emits_rejected(notifier, request_event):
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, request_event)
        r = await http.post(f"/reviews/{request_event.submission_id}/decision",
                            json=vote("bob", "reject"), headers=AUTH)
        assert r.json()["outcome"] == "rejected"
        await settle(notifier.broker)  # what the vote emitted has gone round
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.decided_by) == ("rejected", "bob")


async def test_decisions_are_disabled_without_a_configured_token(build_app, request_event):
    notifier = build_app("review_notifier", api_token="")
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, request_event)
        r = await http.post(f"/reviews/{request_event.submission_id}/decision", json=vote("alice"), headers=AUTH)
        assert r.status_code == 503


async def test_invalid_body_is_422(notifier, request_event):
    async with running(notifier.broker), client(notifier) as http:
        r = await http.post(f"/reviews/{request_event.submission_id}/decision",
                            json={"decision": "maybe", "approver": "alice", "reason": "x"}, headers=AUTH)
        assert r.status_code == 422


async def test_building_the_app_opens_nothing(tmp_path):
    settings = ReviewNotifierSettings(state_db=tmp_path / "review" / "reviews.db", api_token="s3cret",
                                      kafka_bootstrap_servers="127.0.0.1:1")
    wiring = build(settings)
    assert isinstance(create_app(settings), FastStream)
    assert not (tmp_path / "review").exists() and wiring.store is None and wiring.http is None
    async with client(wiring) as http:
        assert (await http.get("/healthz")).status_code == 200
        r = await http.get(f"/reviews/{f.submitted().submission_id}")
        assert r.status_code == 503 and "not open" in r.json()["detail"]
    wiring.open()
    try:
        assert (tmp_path / "review" / "reviews.db").exists()
        async with client(wiring) as http:
            assert (await http.get(f"/reviews/{f.submitted().submission_id}")).status_code == 404
    finally:
        await wiring.close()
