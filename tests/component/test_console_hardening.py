"""The console against what an attacker tries (the fourteenth attacker pass): anonymous sign-in
pages that would end the signed-in sessions, bodies that would fill the memory before a route
runs, a second model.submitted reusing a pending review's id, claimed submitters shown as fact, a
success banner written by a link, dead letters for everyone, credentials in clear text to another
host, a session cookie a sibling host could set. Built as tests/component/test_console.py builds
the console (no broker)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services.console import letters
from services.console.sessions import COOKIE, HOST_COOKIE, SIGN_IN_FORM_LIFETIME, Sessions
from services.console.settings import ConsoleSettings
from services.review_notifier.api_tokens import TokenFile
from services.review_notifier.auth import Authenticator
from services.review_notifier.http import MAX_BODY as NOTIFIER_MAX_BODY
from services.review_notifier.http import make_api
from shared.identity import Directory
from tests import keys
from tests.component.test_console import Console, console_of, csrf_in
from tests.unit import factories as f


@pytest.fixture
def console(tmp_path) -> Console:
    return console_of(tmp_path)


# -- 1: loading the sign-in page ends no one's session ----------------------------------------------

def test_loading_the_sign_in_page_however_often_signs_nobody_out(console: Console) -> None:
    sessions = console.client.app.state.web.sessions  # type: ignore[attr-defined]
    sessions.max_sessions = 5
    alice = console.sign_in("alice")
    attacker = console.other_client()
    for _ in range(50):
        attacker.cookies.clear()
        assert attacker.get("/signin").status_code == 200
    assert alice.get("/reviews", follow_redirects=False).status_code == 200
    assert len(sessions) == 1  # an anonymous visitor is kept nowhere


def test_a_sign_in_form_is_good_for_its_own_cookie_and_a_quarter_of_an_hour() -> None:
    now = f.submitted().occurred_at
    sessions = Sessions(timedelta(hours=8))
    cookie, token = sessions.sign_in_form(now)
    other_cookie, other_token = sessions.sign_in_form(now)
    assert sessions.sign_in_form_ok(cookie, token, now + SIGN_IN_FORM_LIFETIME - timedelta(seconds=1))
    assert not sessions.sign_in_form_ok(cookie, other_token, now)  # another form's token
    assert not sessions.sign_in_form_ok(other_cookie, token, now)
    assert not sessions.sign_in_form_ok(cookie, token, now + SIGN_IN_FORM_LIFETIME)  # too old
    assert not sessions.sign_in_form_ok(cookie, token, now - timedelta(minutes=1))  # from the future
    assert not sessions.sign_in_form_ok(cookie, None, now) and not sessions.sign_in_form_ok(None, token, now)
    assert not Sessions(timedelta(hours=8)).sign_in_form_ok(cookie, token, now)  # another process's key


def test_expired_sessions_are_swept_at_the_next_sign_in() -> None:
    now = f.submitted().occurred_at
    sessions = Sessions(timedelta(minutes=5))
    for person in ("alice", "bob"):
        sessions.sign_in(None, person, frozenset({"approver"}), "so_x", "token x", now)
    sessions.sign_in(None, "carol", frozenset({"approver"}), "so_y", "token y", now + timedelta(minutes=6))
    assert len(sessions) == 1


# -- 2: bodies are bounded before they are parsed ---------------------------------------------------

def test_a_body_larger_than_the_cap_is_refused_before_it_is_parsed(console: Console) -> None:
    console.sign_in("alice")
    csrf = csrf_in(console.client.get(f"/reviews/{console.pending_id}/confirm?decision=approve").text)
    big = {"csrf": csrf, "decision": "approve", "confirmed": "yes", "reason": "x" * 3000,
           **{f"field{i}": "y" * 1000 for i in range(100)}}
    response = console.client.post(f"/reviews/{console.pending_id}/vote", data=big)
    assert response.status_code == 413 and "larger than 65536 bytes" in response.text
    assert response.headers["x-frame-options"] == "DENY"  # the console's headers on a refusal too

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(100):
            yield b"a=" + b"z" * 1000 + b"&"

    streamed = console.client.post("/signin", content=chunks(),
                                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 413
    assert console.api.votes == []
    # Within the cap, in chunks, the body reaches the route whole.
    within = console.client.post(f"/reviews/{console.pending_id}/vote",
                                 content=iter([b"decision=approve&confirmed=yes&csrf=", csrf.encode()]),
                                 headers={"content-type": "application/x-www-form-urlencoded"},
                                 follow_redirects=False)
    assert within.status_code == 303 and len(console.api.votes) == 1


def test_the_review_notifiers_api_caps_bodies_too(tmp_path) -> None:
    auth = Authenticator(Directory.from_workflows(f.workflow_folder(tmp_path / "wf"), ("alice",)),
                         TokenFile(tmp_path / "tokens.json"), None)
    client = TestClient(make_api([], auth))
    response = client.post("/reviews/00000000-0000-0000-0000-000000000000/decision",
                           content=b"{" + b" " * NOTIFIER_MAX_BODY + b"}", headers={"content-type": "application/json"})
    assert response.status_code == 413
    small = client.post("/reviews/00000000-0000-0000-0000-000000000000/decision", json={"decision": "approve"})
    assert small.status_code == 401  # within the cap: the route's own checks answer


# -- 3, 4: what a confirmation names is the signed review request's; a claimed submitter says so ----

def test_a_second_model_submitted_reusing_a_pending_id_changes_no_page(console: Console) -> None:
    projection = console.client.app.state.parts.projection  # type: ignore[attr-defined]
    forged = f.submitted(f.submission(f.candidate(version="9.9.9-harmless-docs-fix"), submitter="alice-team-lead"),
                         submission_id=console.pending_id)
    assert projection.apply(forged) is False
    console.sign_in("alice")
    for path in (f"/reviews/{console.pending_id}/confirm?decision=approve", "/reviews", "/submissions",
                 f"/submissions/{console.pending_id}"):
        page = console.client.get(path).text
        assert "9.9.9" not in page and "alice-team-lead" not in page, path
    assert "Approve fraud-detector 1.4.0?" in console.client.get(
        f"/reviews/{console.pending_id}/confirm?decision=approve").text


def test_the_confirmation_names_the_review_requests_candidate_whatever_came_first(tmp_path) -> None:
    console = console_of(tmp_path)
    projection = console.client.app.state.parts.projection  # type: ignore[attr-defined]
    real = f.submitted()
    forged = f.submitted(f.submission(f.candidate(version="9.9.9-harmless")), submission_id=real.submission_id)
    # The forged one indexed first, the real model.submitted not yet (topics are indexed in any order).
    for event in (forged, f.review_requested(real, approvers=("alice",))):
        projection.apply(event)
    console.sign_in("alice")
    page = console.client.get(f"/reviews/{real.submission_id}/confirm?decision=approve").text
    assert "Approve fraud-detector 1.4.0?" in page and "9.9.9" not in page
    assert real.submission.candidate.artifact_sha256[:16] in page


def test_a_claimed_submitter_is_labelled_a_claim_and_a_verified_one_is_shown(console: Console) -> None:
    projection = console.client.app.state.parts.projection  # type: ignore[attr-defined]
    unsigned = f.submitted(f.submission(f.candidate(model="claims-model"), submitter="the-ceo"))
    projection.apply(unsigned)
    console.sign_in("alice")
    page = console.client.get("/submissions", params={"model": "claims-model"}).text
    assert "the-ceo <span class=\"muted\">(claimed, not verified)</span>" in page
    assert "(claimed, not verified)" in console.client.get(f"/submissions/{unsigned.submission_id}").text
    reviews = console.client.get("/reviews").text  # the pending review: signed by the tests' pipeline key
    assert f.PIPELINE.identity in reviews and "(claimed, not verified)" not in reviews


# -- 9: the success banner is the session's, never the URL's -----------------------------------------

def test_a_link_cannot_write_the_success_banner(console: Console) -> None:
    console.sign_in("alice")
    page = console.client.get(f"/reviews/{console.pending_id}",
                              params={"voted": "approved. Re-enter your token at https://evil.example"})
    assert page.status_code == 200 and "evil.example" not in page.text and 'id="voted"' not in page.text


def test_the_banner_after_a_vote_shows_once(console: Console) -> None:
    console.sign_in("alice")
    confirm = console.client.get(f"/reviews/{console.pending_id}/confirm?decision=approve")
    voted = console.client.post(f"/reviews/{console.pending_id}/vote",
                                data={"decision": "approve", "confirmed": "yes", "csrf": csrf_in(confirm.text)})
    assert 'id="voted"' in voted.text  # the page the vote redirects to
    assert 'id="voted"' not in console.client.get(f"/reviews/{console.pending_id}").text  # once


# -- Also: dead letters for operators, from a bounded time --------------------------------------------

def test_the_dead_letters_are_for_operators_and_read_from_a_bounded_time(console: Console, monkeypatch) -> None:
    seen: list[tuple] = []

    async def listed(kafka, topic, limit, since):
        seen.append((topic, limit, since))
        return [], None

    monkeypatch.setattr(letters, "listed", listed)
    console.sign_in("alice")
    assert 'href="/dead-letters"' not in console.client.get("/reviews").text
    refused = console.client.get("/dead-letters")
    assert refused.status_code == 403 and "for operators" in refused.text and seen == []
    operator = console.sign_in("oncall", role="operator", client=console.other_client())
    assert 'href="/dead-letters"' in operator.get("/reviews").text
    page = operator.get("/dead-letters")
    assert page.status_code == 200 and "Of the last 14 days" in page.text
    [(topic, limit, since)] = seen
    assert since > f.submitted().occurred_at - timedelta(days=14, minutes=1)


# -- Also: no credential in clear text to another host; the cookie's name over https ---------------

@pytest.mark.parametrize(("url", "private", "ok"), [
    ("http://127.0.0.1:8081", False, True), ("http://localhost:8081", False, True), ("http://[::1]:8081", False, True),
    ("https://reviews.example", False, True), ("http://review-notifier:8081", True, True),
    ("http://review-notifier:8081", False, False), ("http://10.0.0.7:8081", False, False)])
def test_the_review_api_is_https_or_loopback_or_declared_private(tmp_path, url: str, private: bool,
                                                                ok: bool) -> None:
    def build() -> ConsoleSettings:
        return ConsoleSettings(trusted_keys=keys.keys().trust, index_db=tmp_path / "i.db", review_url=url,
                               review_url_private_network=private)
    if ok:
        assert build().review_url == url
    else:
        with pytest.raises(ValidationError, match="CONSOLE_REVIEW_URL_PRIVATE_NETWORK"):
            build()


def test_over_https_the_cookie_is_host_only(tmp_path) -> None:
    console = console_of(tmp_path, public_url="https://console.example")
    console.client.base_url = "https://testserver"
    cookie = console.client.get("/signin").headers["set-cookie"]
    assert cookie.startswith(f"{HOST_COOKIE}=") and "Secure" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie
    console.sign_in("alice")
    assert console.client.get("/reviews", follow_redirects=False).status_code == 200
    assert COOKIE not in console.client.cookies  # only the __Host- one
