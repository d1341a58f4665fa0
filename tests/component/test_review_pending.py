"""`GET /reviews?pending=me` (what `signoff pending` prints): the open reviews the credential's
person may still vote on, and nothing else: not another approver's, not one they voted on, not
one they submitted, not a decided one; and only with a valid credential."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.events import utcnow
from tests.component.conftest import publish, running, settle
from tests.component.people import People
from tests.component.test_review_notifier import client
from tests.unit import factories as f


@pytest.fixture
def people(tmp_path) -> People:
    return People(tmp_path)


@pytest.fixture
def notifier(build_app, people):
    return build_app("review_notifier", **people.settings)


def request(model: str, approvers: tuple[str, ...], submitter: str = "carol", hours: int = 24, **over):
    submitted = f.submitted(f.submission(f.candidate(model=model), submitter=submitter))
    return f.review_requested(submitted, approvers=approvers, deadline=utcnow() + timedelta(hours=hours), **over)


async def test_pending_lists_only_the_reviews_waiting_for_the_person(notifier, people):
    later = request("churn-model", ("alice", "bob"), quorum=2, hours=48)
    sooner = request("fraud-detector", ("alice",), hours=2)
    not_alice = request("ranker", ("bob",))
    alice_submitted = request("pricing", ("alice", "bob"), submitter="alice")
    voted = request("search", ("alice", "bob"), quorum=2)
    decided = request("ads", ("alice",))
    async with running(notifier.broker) as br, client(notifier) as http:
        for event in (later, sooner, not_alice, alice_submitted, voted, decided):
            await publish(br, event)
        await settle(notifier.broker)
        for event, decision in ((voted, "approve"), (decided, "reject")):
            r = await http.post(f"/reviews/{event.submission_id}/decision", headers=people.auth("alice"),
                                json={"decision": decision, "reason": "looked at it"})
            assert r.status_code == 200, r.text
        await http.post(f"/reviews/{later.submission_id}/decision", headers=people.auth("bob"),
                        json={"decision": "approve", "reason": "fine by me"})

        got = await http.get("/reviews", params={"pending": "me"}, headers=people.auth("alice"))
        assert got.status_code == 200, got.text
        listed = got.json()
        assert listed["person"] == "alice"
        assert [r["model"] for r in listed["reviews"]] == ["fraud-detector", "churn-model"]  # nearest deadline first
        churn = listed["reviews"][1]
        assert churn["submission_id"] == str(later.submission_id) and churn["quorum"] == 2
        assert churn["votes"] == [{"approver": "bob", "decision": "approve"}]

        bobs = (await http.get("/reviews", params={"pending": "me"}, headers=people.auth("bob"))).json()
        assert {r["model"] for r in bobs["reviews"]} == {"ranker", "pricing", "search"}


async def test_pending_needs_a_credential_and_says_what_to_ask_for(notifier, people):
    async with running(notifier.broker), client(notifier) as http:
        assert (await http.get("/reviews", params={"pending": "me"})).status_code == 401
        assert (await http.get("/reviews", headers=people.auth("alice"))).status_code == 422
        assert (await http.get("/reviews", params={"pending": "bob"}, headers=people.auth("alice"))).status_code == 422
