"""The console's pages, sessions and CSRF, built by its app factory from a settings object; the
projection fed with events as the audit index would feed it, and the review-notifier's API
stood in by an httpx MockTransport that records what the console sends (no broker: the browser
test, tests/e2e/test_console.py, runs the whole stack)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from services.console.app import create_app
from services.console.feed import Feed
from services.console.pages import Parts
from services.console.projection import Projection
from services.console.reviews_api import ReviewApi
from services.console.sessions import COOKIE
from services.console.settings import ConsoleSettings
from services.review_notifier.reviews import Review
from shared.audit.index import Index
from shared.signing import load_trust
from tests import keys
from tests.component.people import People
from tests.unit import factories as f


@dataclass
class ReviewApiStandIn:
    """The review API: answers GET /reviews/{id} and POST .../decision, and records each call
    with the bearer token it came with."""
    reviews: dict[str, Review]
    calls: list[tuple[str, str, str | None, dict | None]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.method, request.url.path, token, body))
        sid = request.url.path.split("/")[2]
        if sid not in self.reviews:
            return httpx.Response(404, json={"detail": "no review for this submission"})
        if request.method == "GET":
            return httpx.Response(200, json=self.reviews[sid].model_dump(mode="json"))
        return httpx.Response(200, json={"submission_id": sid, "votes": 1, "outcome": "approved"})

    @property
    def votes(self) -> list[tuple[str | None, dict | None]]:
        return [(token, body) for method, _, token, body in self.calls if method == "POST"]


@dataclass
class Console:
    client: TestClient
    people: People
    api: ReviewApiStandIn
    pending_id: uuid.UUID
    settings: ConsoleSettings

    def sign_in(self, person: str, role: str = "approver", client: TestClient | None = None) -> TestClient:
        client = client or self.client
        page = client.get("/signin")
        response = client.post("/signin", data={"credential": self.people.token(person, role),
                                                "csrf": csrf_in(page.text)}, follow_redirects=False)
        assert response.status_code == 303, response.text
        return client

    def other_client(self) -> TestClient:
        return TestClient(self.client.app, base_url="http://testserver")


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the form"
    return found[1]


def console_of(tmp_path, public_url: str = "http://127.0.0.1:8082") -> Console:
    people = People(tmp_path)
    folder = f.workflow_folder(tmp_path / "workflows")
    settings = ConsoleSettings(trusted_keys=keys.keys().trust, workflows=folder, index_db=tmp_path / "index.db",
                               public_url=public_url, review_url="http://127.0.0.1:8081",
                               kafka_security_protocol="PLAINTEXT", **people.settings)
    app = create_app(settings)
    cause = f.submitted()
    projection = Projection()
    for event in (cause, f.checks_passed(cause), f.review_requested(cause)):
        projection.apply(event)
    done = f.submitted(f.submission(f.candidate(model="churn-model", version="2.0.0")))
    for event in (done, f.checks_passed(done), f.decided(done), f.deployment_succeeded(done)):
        projection.apply(event)
    sub = projection.get(cause.submission_id)
    assert sub is not None and sub.request is not None
    stand_in = ReviewApiStandIn({str(cause.submission_id): Review(request=sub.request)})
    http = httpx.AsyncClient(transport=httpx.MockTransport(stand_in))
    keyring = load_trust(keys.keys().trust)
    index = Index.open(settings.index_db)
    # What the lifespan builds with Kafka; here without it (TestClient is not entered, so the
    # lifespan does not run).
    app.state.parts = Parts(projection, Feed(settings.kafka, keyring, index, projection),
                            ReviewApi(settings.review_url, http), settings.kafka, keyring, 10)
    return Console(TestClient(app, base_url="http://testserver"), people, stand_in, cause.submission_id, settings)


@pytest.fixture
def console(tmp_path) -> Iterator[Console]:
    yield console_of(tmp_path)


@pytest.mark.parametrize("path", ["/", "/reviews", "/submissions", "/models", "/models/fraud-detector",
                                  "/dead-letters", f"/reviews/{uuid.uuid4()}", f"/submissions/{uuid.uuid4()}"])
def test_no_page_without_a_session(console: Console, path: str) -> None:
    response = console.client.get(path, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/signin")


def test_a_wrong_token_signs_nobody_in(console: Console) -> None:
    page = console.client.get("/signin")
    forged = "so_0123456789ab_" + "A" * 43
    response = console.client.post("/signin", data={"credential": forged, "csrf": csrf_in(page.text)},
                                   follow_redirects=False)
    assert response.status_code == 401 and "not valid" in response.text
    assert console.client.get("/reviews", follow_redirects=False).status_code == 303


def test_the_sign_in_form_needs_its_csrf_token(console: Console) -> None:
    console.client.get("/signin")
    response = console.client.post("/signin", data={"credential": console.people.token("alice")},
                                   follow_redirects=False)
    assert response.status_code == 403 and "CSRF" in response.text


def test_the_session_cookie_is_httponly_strict_and_new_at_sign_in(console: Console) -> None:
    page = console.client.get("/signin")
    before = console.client.cookies[COOKIE]
    response = console.client.post("/signin", data={"credential": console.people.token("alice"),
                                                     "csrf": csrf_in(page.text)}, follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert console.client.cookies[COOKIE] != before  # the id known before sign-in is worth nothing
    old = TestClient(console.client.app, cookies={COOKIE: before})
    assert old.get("/reviews", follow_redirects=False).status_code == 303


def test_over_https_the_cookie_is_secure(tmp_path) -> None:
    console = console_of(tmp_path, public_url="https://console.example")
    assert "Secure" in console.client.get("/signin").headers["set-cookie"]


def test_an_approver_sees_the_evidence_and_the_buttons(console: Console) -> None:
    console.sign_in("alice")
    listed = console.client.get("/reviews")
    assert f"/reviews/{console.pending_id}" in listed.text
    page = console.client.get(f"/reviews/{console.pending_id}")
    assert page.status_code == 200
    assert 'id="approve"' in page.text and 'id="reject"' in page.text
    assert "metric:accuracy" in page.text and "run-7" in page.text  # checks and lineage
    # Read with alice's own token.
    assert console.api.calls[-1][:3] == ("GET", f"/reviews/{console.pending_id}", console.people.token("alice"))


def test_a_non_approver_sees_no_buttons_and_cannot_vote(console: Console) -> None:
    console.sign_in("carol")
    page = console.client.get(f"/reviews/{console.pending_id}")
    assert page.status_code == 200 and 'id="approve"' not in page.text and 'id="reject"' not in page.text
    assert console.client.get(f"/reviews/{console.pending_id}/confirm?decision=approve").status_code == 403
    response = console.client.post(f"/reviews/{console.pending_id}/vote", data={
        "decision": "approve", "confirmed": "yes", "csrf": csrf_in(page.text)})
    assert response.status_code == 403
    assert console.api.votes == []


def test_an_operator_credential_casts_no_vote(console: Console) -> None:
    console.sign_in("alice", role="operator")
    page = console.client.get(f"/reviews/{console.pending_id}")
    assert 'id="approve"' not in page.text


def test_a_vote_is_confirmed_then_cast_with_the_persons_own_credential(console: Console) -> None:
    console.sign_in("alice")
    confirm = console.client.get(f"/reviews/{console.pending_id}/confirm?decision=approve")
    assert "Approve fraud-detector 1.4.0?" in confirm.text
    unconfirmed = console.client.post(f"/reviews/{console.pending_id}/vote", data={
        "decision": "approve", "csrf": csrf_in(confirm.text)})
    assert unconfirmed.status_code == 422 and console.api.votes == []
    response = console.client.post(f"/reviews/{console.pending_id}/vote", data={
        "decision": "approve", "confirmed": "yes", "csrf": csrf_in(confirm.text)}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, f"/reviews/{console.pending_id}")
    assert "Your vote was recorded: approved (approved)" in console.client.get(response.headers["location"]).text
    [(token, body)] = console.api.votes
    assert token == console.people.token("alice")
    assert body is not None and body["decision"] == "approve" and body["reason"]


def test_a_rejection_needs_a_reason(console: Console) -> None:
    console.sign_in("alice")
    confirm = console.client.get(f"/reviews/{console.pending_id}/confirm?decision=reject")
    form = {"decision": "reject", "confirmed": "yes", "csrf": csrf_in(confirm.text)}
    response = console.client.post(f"/reviews/{console.pending_id}/vote", data={**form, "reason": "  "})
    assert response.status_code == 422 and "needs a reason" in response.text and console.api.votes == []
    console.client.post(f"/reviews/{console.pending_id}/vote", data={**form, "reason": "recall too low"})
    assert [body["reason"] for _, body in console.api.votes if body] == ["recall too low"]


def test_a_forged_vote_is_refused_without_the_sessions_own_csrf_token(console: Console) -> None:
    console.sign_in("alice")
    other = console.sign_in("bob", client=console.other_client())
    bobs = csrf_in(other.get(f"/reviews/{console.pending_id}/confirm?decision=approve").text)
    form = {"decision": "approve", "confirmed": "yes"}
    for forged in ({}, {"csrf": "x" * 43}, {"csrf": bobs}):
        response = console.client.post(f"/reviews/{console.pending_id}/vote", data={**form, **forged})
        assert response.status_code == 403 and "CSRF" in response.text
    assert console.api.votes == []


def test_a_revoked_token_ends_the_session_at_the_next_page(console: Console) -> None:
    console.sign_in("alice")
    assert console.client.get("/reviews", follow_redirects=False).status_code == 200
    token = console.people.token("alice")
    console.people.file.revoke(token.split("_")[1], f.submitted().occurred_at)
    assert console.client.get("/reviews", follow_redirects=False).status_code == 303


def test_submissions_filter_by_model_and_status_with_their_timeline(console: Console) -> None:
    console.sign_in("carol")
    page = console.client.get("/submissions", params={"status": "deployed"})
    assert "churn-model" in page.text and "fraud-detector" not in page.text
    page = console.client.get("/submissions", params={"model": "fraud"})
    assert "fraud-detector" in page.text and "churn-model" not in page.text
    assert console.client.get("/submissions", params={"status": "nonsense"}).status_code == 403
    assert console.client.get("/submissions", params={"since": "2026-01-01T00:00"}).status_code == 403  # no zone
    timeline = console.client.get(f"/submissions/{console.pending_id}")
    assert "review.requested" in timeline.text and "checks.passed" in timeline.text


def test_pages_forbid_scripts_frames_and_caching(console: Console) -> None:
    response = console.client.get("/signin")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY" and response.headers["cache-control"] == "no-store"


def test_re_drive_needs_an_operator(console: Console) -> None:
    console.sign_in("alice")
    assert console.client.get("/signin", follow_redirects=False).status_code == 303  # signed in already
    csrf = csrf_in(console.client.get(f"/reviews/{console.pending_id}/confirm?decision=approve").text)
    response = console.client.post("/dead-letters/replay", data={
        "csrf": csrf, "topic": "model.submitted.dlq", "partition": 0, "offset": 0})
    assert response.status_code == 403 and "operator" in response.text


def test_a_session_expires(tmp_path) -> None:
    from services.console.sessions import Sessions, csrf_ok

    now = f.submitted().occurred_at
    sessions = Sessions(timedelta(minutes=5), max_sessions=2)
    session = sessions.sign_in(None, "alice", frozenset({"approver"}), "so_x", "token x", now)
    assert sessions.get(session.id, now + timedelta(minutes=4)) == session
    assert sessions.get(session.id, now + timedelta(minutes=5)) is None
    assert not csrf_ok(session, None) and not csrf_ok(session, "") and csrf_ok(session, session.csrf)
    first = sessions.sign_in(None, "alice", frozenset({"approver"}), "so_x", "token x", now)
    sessions.sign_in(None, "bob", frozenset({"approver"}), "so_y", "token y", now)
    sessions.sign_in(None, "carol", frozenset({"approver"}), "so_z", "token z", now)
    assert sessions.get(first.id, now) is None and len(sessions) == 2  # the oldest ended first


def test_ready_only_once_the_index_caught_up_with_the_topics(console: Console) -> None:
    assert console.client.get("/healthz").status_code == 200
    feed = console.client.app.state.parts.feed  # type: ignore[attr-defined]
    assert console.client.get("/readyz").status_code == 503  # never caught up
    feed.caught_up_at = f.submitted().occurred_at
    assert console.client.get("/readyz").status_code == 200
    feed.error = "KafkaConnectionError: cannot connect"
    assert console.client.get("/readyz").json()["why"].startswith("KafkaConnectionError")
