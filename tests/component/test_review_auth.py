"""The review API authenticates people: the attacks one shared bearer token allowed (voting as
someone else, meeting a quorum alone, self-approval under a look-alike name, break-glass without
the role's credential, reading reviews anonymously) are refused with 401/403 and change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.review_notifier.api_tokens import issue
from shared import topics
from shared.events import ReviewDecided, utcnow
from tests.component.conftest import publish, running, sent, settle
from tests.component.people import People
from tests.component.test_review_notifier import client
from tests.unit import factories as f
from tests.unit.oidc_issuer import AUDIENCE, ISSUER, Issuer

JUSTIFICATION = "card fraud spike tonight; the current model misses the new pattern"


@pytest.fixture
def people(tmp_path) -> People:
    return People(tmp_path)


@pytest.fixture
def notifier(build_app, people):
    return build_app("review_notifier", **people.settings)


def request_event(**over):
    fields = dict(approvers=("alice", "bob", "carol"), quorum=2, break_glass=("erin",))
    return f.review_requested(f.submitted(f.submission(submitter="carol")), **{**fields, **over})


def body(decision: str = "approve", **more) -> dict:
    return {"decision": decision, "reason": "checked the report", **more}


async def refused_and_nothing_changed(notifier, event, response, status: int, says: str) -> None:
    assert response.status_code == status and says in str(response.json()["detail"]), response.text
    await settle(notifier.broker)  # anything the request emitted has gone round
    notifier.emitter.publishers[ReviewDecided].mock.assert_not_called()
    review = notifier.store.get(event.submission_id)
    assert review.votes == () and review.decision is None


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"},
                                     {"Authorization": "Bearer so_0123456789ab_" + "A" * 43}])
async def test_reading_or_voting_without_a_valid_credential_is_401(notifier, people, headers):
    event = request_event()
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        got = await http.get(f"/reviews/{event.submission_id}", headers=headers)
        assert got.status_code == 401 and "request" not in got.json()
        r = await http.post(f"/reviews/{event.submission_id}/decision", json=body(), headers=headers)
        await refused_and_nothing_changed(notifier, event, r, 401, "")
        assert (await http.get(f"/reviews/{event.submission_id}", headers=people.auth("dave"))).status_code == 200


async def test_a_token_with_a_wrong_secret_is_401(notifier, people):
    event = request_event(quorum=1)
    _, token_id, secret = people.token("alice").split("_", 2)
    forged = f"so_{token_id}_{secret[:-1]}{'B' if secret[-1] != 'B' else 'C'}"  # alice's id, another secret
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        r = await http.post(f"/reviews/{event.submission_id}/decision", json=body(),
                            headers={"Authorization": f"Bearer {forged}"})
        await refused_and_nothing_changed(notifier, event, r, 401, "not valid")


async def test_voting_as_someone_else_is_403_and_changes_nothing(notifier, people):
    event = request_event(quorum=1)
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        r = await http.post(f"/reviews/{event.submission_id}/decision", json=body(approver="bob"),
                            headers=people.auth("alice"))
        await refused_and_nothing_changed(notifier, event, r, 403, "credential's person (alice)")


async def test_naming_yourself_otherwise_is_you(notifier, people):
    event = request_event(quorum=1)
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        r = await http.post(f"/reviews/{event.submission_id}/decision", json=body(approver=" ＢOB"),
                            headers=people.auth("bob"))
        assert r.status_code == 200 and r.json()["approver"] == "bob", r.text


async def test_one_person_cannot_meet_a_quorum_of_two(notifier, people):
    event = request_event(quorum=2)
    url = f"/reviews/{event.submission_id}/decision"
    second, record = issue("alice", "approver", timedelta(days=1), utcnow())  # alice's second token
    people.file.add(record)
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        first = await http.post(url, json=body(), headers=people.auth("alice"))
        assert first.status_code == 200 and first.json()["outcome"] == "pending"
        again = await http.post(url, json=body(), headers={"Authorization": f"Bearer {second}"})
        assert again.status_code == 409 and "already voted" in again.json()["detail"]
        as_bob = await http.post(url, json=body(approver="bob"), headers=people.auth("alice"))
        assert as_bob.status_code == 403
        await settle(notifier.broker)
        notifier.emitter.publishers[ReviewDecided].mock.assert_not_called()
        assert [v.approver for v in notifier.store.get(event.submission_id).votes] == ["alice"]
        done = await http.post(url, json=body(), headers=people.auth("bob"))  # a second person
        assert done.status_code == 200 and done.json()["outcome"] == "approved"


@pytest.mark.parametrize(("name", "says"), [
    ("c\u0430rol", "U+0430 CYRILLIC SMALL LETTER A"),  # Cyrillic 'а'
    ("caro1", "looks like the known user 'carol'"),  # a digit one for an ell
    ("zed", "not a known user"),
])
async def test_a_credential_for_a_look_alike_or_unknown_name_is_403(notifier, people, name, says):
    """A token file record naming a look-alike (written by hand: `signoff token create` refuses
    it) cannot self-approve as carol, nor vote at all."""
    event = request_event(approvers=("alice", "bob", "carol", "c\u0430rol", "caro1", "zed"), quorum=1)
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        r = await http.get(f"/reviews/{event.submission_id}", headers=people.auth(name))
        assert r.status_code == 403 and says in r.json()["detail"]
        r = await http.post(f"/reviews/{event.submission_id}/decision", json=body(), headers=people.auth(name))
        await refused_and_nothing_changed(notifier, event, r, 403, says)


async def test_break_glass_needs_the_break_glass_credential(notifier, people):
    event = request_event()
    url = f"/reviews/{event.submission_id}/decision"
    glass = body(reason=JUSTIFICATION, break_glass=True)
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        r = await http.post(url, json=glass, headers=people.auth("erin"))  # her normal token
        assert r.status_code == 403 and "break-glass credential" in r.json()["detail"]
        r = await http.post(url, json=body(), headers=people.auth("erin", "break-glass"))  # a normal vote
        assert r.status_code == 403 and "only breaks glass" in r.json()["detail"]
        r = await http.post(url, json=glass, headers=people.auth("alice", "break-glass"))  # not on the list
        await refused_and_nothing_changed(notifier, event, r, 403, "may not break glass")

        r = await http.post(url, json=glass, headers=people.auth("erin", "break-glass"))
        assert r.status_code == 200 and r.json()["break_glass"] and r.json()["approver"] == "erin", r.text
        await settle(notifier.broker)
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert out.break_glass and out.decided_by == "erin"


async def test_expired_and_revoked_tokens_are_401(notifier, people):
    event = request_event(quorum=1)
    url = f"/reviews/{event.submission_id}/decision"
    expired, record = issue("alice", "approver", timedelta(hours=1), utcnow() - timedelta(hours=2))
    people.file.add(record)
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        r = await http.post(url, json=body(), headers={"Authorization": f"Bearer {expired}"})
        assert r.status_code == 401 and "expired" in r.json()["detail"]
        bob = people.auth("bob")
        assert (await http.get(f"/reviews/{event.submission_id}", headers=bob)).status_code == 200
        people.file.revoke(people.token("bob").split("_")[1], utcnow())  # as `signoff token revoke` does
        r = await http.post(url, json=body(), headers=bob)  # the service reads the changed file
        await refused_and_nothing_changed(notifier, event, r, 401, "revoked")


async def test_unknown_fields_are_422(notifier, people):
    event = request_event()
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        r = await http.post(f"/reviews/{event.submission_id}/decision", json=body(voter="bob"),
                            headers=people.auth("alice"))
        await refused_and_nothing_changed(notifier, event, r, 422, "")


async def test_oidc_tokens_vote_and_break_glass_through_the_api(build_app, people):
    with Issuer() as idp:
        notifier = build_app("review_notifier", **people.settings, oidc_issuer=ISSUER, oidc_audience=AUDIENCE,
                             oidc_jwks_url=idp.jwks_url)
        event = request_event()
        url = f"/reviews/{event.submission_id}/decision"
        glass = body(reason=JUSTIFICATION, break_glass=True)
        async with running(notifier.broker) as br, client(notifier) as http:
            await publish(br, event)
            r = await http.post(url, json=body(), headers={"Authorization": f"Bearer {idp.mint('bob', 'ec-1')}"})
            assert r.status_code == 200 and r.json()["approver"] == "bob", r.text
            r = await http.post(url, json=glass, headers={"Authorization": f"Bearer {idp.mint('erin')}"})
            assert r.status_code == 403 and "break-glass credential" in r.json()["detail"]
            wrong = idp.mint("erin", roles=["signoff-break-glass"], aud="another-service")
            r = await http.post(url, json=glass, headers={"Authorization": f"Bearer {wrong}"})
            assert r.status_code == 401
            role = idp.mint("erin", roles=["signoff-break-glass"])
            r = await http.post(url, json=glass, headers={"Authorization": f"Bearer {role}"})
            assert r.status_code == 200 and r.json()["break_glass"], r.text
