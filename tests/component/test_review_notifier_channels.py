"""The review-notifier's Slack and email channels, in memory for Kafka (TestKafkaBroker) but with a
real SMTP server (aiosmtpd) and a local HTTP stand-in for Slack's Web API. Interactivity requests
are built and signed the way Slack builds them. The review shows fraud-detector 1.3.0 in
production, which the notifier knows too, until a test deploys another release."""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from services.review_notifier.channels.email import tokens
from services.review_notifier.channels.slack import blocks as sb
from services.review_notifier.channels.slack.signing import sign
from shared import topics
from shared.events import Escalation, ReviewDecided, ReviewEscalated, utcnow
from shared.values import Submitter
from signoff.standins import MailSink, SlackStandIn, block_actions, body_of, links, signed_request
from tests.component.conftest import publish, running, sent, settle
from tests.component.people import KNOWN, People
from tests.component.test_review_notifier import deployed, production
from tests.unit import factories as f

SECRET = "slack-signing-secret-for-tests"
TOKEN_KEY = "token-key-for-tests-0123456789"
USERS = {"U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol", "U0MALLORY": "mallory", "U0ONCALL": "oncall",
         "U0CAROL2": "Ｃarol ",  # carol again, written otherwise: normalised to her
         "U0LOOKALIKE": "c\u0430rol"}  # Cyrillic 'а': a look-alike of carol, refused
EMAILS = {"alice": "alice@example.com", "bob": "bob@example.com", "carol": "carol@example.com",
          "dave": "dave@example.com", "mallory": "mallory@example.com"}
JUSTIFICATION = "card fraud spike tonight; the current model misses the new pattern"
IN_PRODUCTION = deployed("1.3.0", ago=timedelta(days=7), accuracy=0.93, auc=0.96)
CHANGED = "production changed since this review was shown: now fraud-detector 1.6.0 (was 1.3.0)"


@pytest.fixture
def slack():
    with SlackStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def mail():
    with MailSink() as sink:
        yield sink


@pytest.fixture
def people(tmp_path) -> People:
    return People(tmp_path, known=(*KNOWN, "mallory"))  # mallory is known, but approves nothing


@pytest.fixture
def fields(slack, mail, people) -> dict:
    """The settings of a review-notifier with both channels on, against the stand-ins."""
    return dict(**people.settings,
                slack_signing_secret=SECRET, slack_bot_token="xoxb-test-token", slack_api_url=slack.api_url,
                slack_channel="C0REVIEWS", slack_users=USERS, smtp_host=mail.host, smtp_port=mail.port,
                token_key=TOKEN_KEY, approver_emails=EMAILS, public_url="http://review.test",
                mail_from="signoff@example.com", slack_allow_http_loopback=True)  # the stand-in is http://


@pytest.fixture
def logs(notifier, monkeypatch):
    """Every log entry of the test. Each module of the service gets a fresh logger: building the
    app configured structlog anew, and loggers cache the configuration they first saw."""
    with capture_logs() as captured:
        for name, module in list(sys.modules.items()):
            if name.startswith("services.review_notifier") and hasattr(module, "log"):
                monkeypatch.setattr(module, "log", structlog.get_logger())
        yield captured


def built(build_app, **fields):
    """A review-notifier knowing 1.3.0 in production, as its rebuild at start-up reads it from the
    topics (the fixture opens the app; it does not start it)."""
    wiring = build_app("review_notifier", **fields)
    wiring.production.apply(IN_PRODUCTION)
    return wiring


@pytest.fixture
def notifier(build_app, fields):
    return built(build_app, **fields)


def request_event(quorum: int = 1, submitter: str = "carol", **over):
    cause = f.submitted(f.submission(submitter=submitter))
    fields = dict(approvers=("alice", "bob", "carol"), quorum=quorum, production=production(IN_PRODUCTION))
    return f.review_requested(cause, **{**fields, **over})


def client(wiring) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wiring.api), base_url="http://review.test")


async def click(http, user: str, action: str, sid, secret: str = SECRET, timestamp: int | None = None,
                reason: str = "", response_url: str | None = None, tamper=None) -> httpx.Response:
    body, headers = signed_request(secret, block_actions(user, action, str(sid), reason=reason,
                                                         response_url=response_url), timestamp)
    if tamper:
        body, headers = tamper(body, headers)
    return await http.post("/slack/actions", content=body, headers=headers)


def decided_mock(wiring):
    return wiring.emitter.publishers[ReviewDecided].mock


async def notified(wiring) -> None:
    await wiring.notifier.drain()


def buttons(message: dict) -> list[str]:
    return [e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


async def test_slack_message_carries_the_evidence_and_a_click_decides(notifier, slack):
    event = request_event()
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        await publish(br, event)  # redelivered: not posted twice
        (post,) = slack.requests("chat.postMessage")
        assert post["headers"]["Authorization"] == "Bearer xoxb-test-token"
        text = json.dumps(post["body"])
        for evidence in ("fraud-detector 1.4.0", "carol", "accuracy", "0.95", "vs 0.93", "production 1.3.0",
                         "integrity", "alice, bob, carol"):
            assert evidence in text, evidence
        assert buttons(post["body"]) == [sb.APPROVE, sb.REJECT]

        started = time.monotonic()
        r = await click(http, "U0ALICE", sb.APPROVE, event.submission_id, reason="matches the offline eval")
        assert time.monotonic() - started < 3.0
        assert r.status_code == 200 and r.json()["outcome"] == "approved"
        await notified(notifier)
        await settle(notifier.broker)  # what the vote emitted has gone round
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.mode, out.decided_by) == ("approved", "human", "alice")
    assert [(v.approver, v.channel, v.reason) for v in out.votes] == [("alice", "slack", "matches the offline eval")]
    (update,) = slack.requests("chat.update")
    assert (update["body"]["channel"], update["body"]["ts"]) == ("C0REVIEWS", "1700000001.000100")
    assert buttons(update["body"]) == [] and "Approved by alice" in json.dumps(update["body"])


async def test_the_answer_does_not_wait_for_slack(notifier, slack):
    event = request_event()
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        slack.delay = 4.0  # Slack's API is slow from now on
        started = time.monotonic()
        r = await click(http, "U0ALICE", sb.REJECT, event.submission_id, reason="bias")
        elapsed = time.monotonic() - started
        assert r.status_code == 200 and elapsed < 3.0, elapsed
        await notified(notifier)
    assert slack.requests("chat.update")  # done afterwards


def _alter(body: bytes, headers: dict) -> tuple[bytes, dict]:
    return body.replace(b"U0ALICE", b"U0ALICF"), headers


def _no_payload(body: bytes, headers: dict) -> tuple[bytes, dict]:
    new = b"nothing=here"
    return new, {**headers, "x-slack-signature": sign(SECRET, headers["x-slack-request-timestamp"], new)}


def _bad_json(body: bytes, headers: dict) -> tuple[bytes, dict]:
    new = b"payload=%7Bnot-json"
    return new, {**headers, "x-slack-signature": sign(SECRET, headers["x-slack-request-timestamp"], new)}


def _no_headers(body: bytes, headers: dict) -> tuple[bytes, dict]:
    return body, {"content-type": headers["content-type"]}


@pytest.mark.parametrize(("kwargs", "status", "says"), [
    (dict(secret="forged-secret"), 401, "does not match"),
    (dict(timestamp=int(time.time()) - 6 * 60), 401, "more than 5 minutes"),
    (dict(tamper=_alter), 401, "does not match"),
    (dict(tamper=_no_headers), 401, "missing"),
    (dict(tamper=_no_payload), 400, "payload"),
    (dict(tamper=_bad_json), 400, "not a Signoff review button click"),
    (dict(user="U0NOBODY"), 403, "not mapped"),
    (dict(user="U0MALLORY"), 403, "not an approver"),
    (dict(user="U0CAROL"), 403, "submitter cannot approve"),
    (dict(user="U0CAROL2"), 403, "submitter cannot approve"),
    (dict(user="U0LOOKALIKE"), 403, "U+0430 CYRILLIC SMALL LETTER A"),
    (dict(user="U0ALICE", action=sb.BREAK_GLASS), 403, "break-glass is not taken from slack"),
])
async def test_bad_slack_requests_are_refused_and_change_nothing(notifier, slack, logs, kwargs, status, says):
    event = request_event()
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        args = {"user": "U0ALICE", "action": sb.APPROVE, **kwargs}
        r = await click(http, args.pop("user"), args.pop("action"), event.submission_id, **args)
        assert r.status_code == status and says in r.json()["detail"], r.text
        await notified(notifier)
        await settle(notifier.broker)  # what the vote emitted has gone round
        decided_mock(notifier).assert_not_called()
    assert notifier.store.get(event.submission_id).votes == ()
    assert slack.requests("chat.update") == []
    assert [e["status"] for e in logs if e["event"] == "vote_refused"] == [status]
    logged = repr(logs)
    assert SECRET not in logged
    assert "v0=" not in logged  # no signature
    assert "U0ALICF" not in logged and "response_url" not in logged  # nor the body


async def test_unknown_and_finished_reviews_are_refused(notifier):
    event = request_event()
    async with running(notifier.broker) as br, client(notifier) as http:
        r = await click(http, "U0ALICE", sb.APPROVE, uuid.uuid4())
        assert r.status_code == 404 and "no review" in r.json()["detail"]
        await publish(br, event)
        assert (await click(http, "U0ALICE", sb.REJECT, event.submission_id)).status_code == 200
        r = await click(http, "U0BOB", sb.APPROVE, event.submission_id)
        assert r.status_code == 409 and "already decided: rejected by alice" in r.json()["detail"]
        await settle(notifier.broker)  # what the vote emitted has gone round
        decided_mock(notifier).assert_called_once()


async def test_a_replayed_click_counts_once(notifier, slack):
    event = request_event(quorum=2)
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        body, headers = signed_request(SECRET, block_actions("U0ALICE", sb.APPROVE, str(event.submission_id)))
        first = await http.post("/slack/actions", content=body, headers=headers)
        again = await http.post("/slack/actions", content=body, headers=headers)
        assert first.status_code == 200 and first.json()["outcome"] == "pending"
        assert again.status_code == 409 and "already counted" in again.json()["detail"]
        # The same person clicking again (a new request) is not a second approval either.
        later = await click(http, "U0ALICE", sb.APPROVE, event.submission_id)
        assert later.status_code == 409 and "already voted" in later.json()["detail"]
        await settle(notifier.broker)  # what the vote emitted has gone round
        decided_mock(notifier).assert_not_called()
    assert len(notifier.store.get(event.submission_id).votes) == 1


async def test_slack_without_a_signing_secret_is_503(build_app, fields):
    notifier = built(build_app, **{**fields, "slack_signing_secret": ""})
    async with running(notifier.broker), client(notifier) as http:
        assert (await click(http, "U0ALICE", sb.APPROVE, uuid.uuid4())).status_code == 503


async def test_slack_offers_no_break_glass_and_it_is_flagged_everywhere(notifier, slack, people):
    """A Slack click proves a person, not the break-glass role: the message says where to break
    glass instead, a forged break-glass click is refused, and the role's own credential works."""
    event = request_event(quorum=2, break_glass=("oncall",))
    sid = event.submission_id
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        posted = slack.requests("chat.postMessage")[0]["body"]
        assert buttons(posted) == [sb.APPROVE, sb.REJECT] and "--break-glass" in json.dumps(posted)
        r = await click(http, "U0ONCALL", sb.BREAK_GLASS, sid, reason=JUSTIFICATION)
        assert r.status_code == 403 and "break-glass role's own credential" in r.json()["detail"]
        assert notifier.store.get(sid).votes == ()
        glass = {"decision": "approve", "reason": JUSTIFICATION, "break_glass": True}
        r = await http.post(f"/reviews/{sid}/decision", json=glass, headers=people.auth("oncall", "break-glass"))
        assert r.status_code == 200 and r.json()["outcome"] == "approved", r.text
        await notified(notifier)
        await settle(notifier.broker)  # what the vote emitted has gone round
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
        shown = (await http.get(f"/reviews/{sid}", headers=people.auth("oncall"))).json()
    assert out.break_glass and out.votes[0].break_glass and JUSTIFICATION in out.reason
    assert shown["decision"]["break_glass"] and shown["votes"][0]["break_glass"]
    assert "BREAK-GLASS" in json.dumps(slack.requests("chat.update")[-1]["body"])


async def test_a_click_after_production_changed_is_refused_and_the_message_shows_it(notifier, slack):
    event = request_event()
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        assert "production 1.3.0" in json.dumps(slack.requests("chat.postMessage")[0]["body"])
        await publish(br, deployed("1.6.0", accuracy=0.97, auc=0.98))  # replaced 1.3.0 meanwhile
        body, headers = signed_request(SECRET, block_actions("U0ALICE", sb.APPROVE, str(event.submission_id),
                                                             response_url=f"{slack.url}/response/1"))
        r = await http.post("/slack/actions", content=body, headers=headers)
        assert r.status_code == 409 and r.json()["detail"].startswith(CHANGED), r.text
        await notified(notifier)
        (update,) = slack.requests("chat.update")  # the message, in place, with the new evidence
        assert (update["body"]["channel"], update["body"]["ts"]) == ("C0REVIEWS", "1700000001.000100")
        text = json.dumps(update["body"])
        assert "production 1.6.0" in text and "vs 0.97" in text and "then: 1.3.0" in text
        assert "production 1.3.0" not in text and buttons(update["body"]) == [sb.APPROVE, sb.REJECT]
        (answer,) = slack.requests("response")  # the clicker is told, only them
        assert answer["body"]["response_type"] == "ephemeral" and CHANGED in answer["body"]["text"]
        again = await http.post("/slack/actions", content=body, headers=headers)  # the same request replayed
        assert again.status_code == 409 and "already counted, or refused" in again.json()["detail"]
        await settle(notifier.broker)
        decided_mock(notifier).assert_not_called()

        r = await click(http, "U0ALICE", sb.APPROVE, event.submission_id)  # a new click, on the new evidence
        assert r.status_code == 200 and r.json()["outcome"] == "approved", r.text
        await notified(notifier)
        await settle(notifier.broker)
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.decided_by) == ("approved", "alice")
    last = json.dumps(slack.requests("chat.update")[-1]["body"])
    assert "Approved by alice" in last and "production 1.6.0" in last


async def test_an_email_vote_after_production_changed_is_refused_and_the_page_shows_it(notifier, mail):
    event = request_event()
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        link = urlsplit(links(mail.to("bob@example.com")[0])["approve"])
        url = f"{link.path}?{link.query}"
        assert "production 1.3.0" in (await http.get(url)).text
        await publish(br, deployed("1.6.0", accuracy=0.97, auc=0.98))
        form = {"token": parse_qs(link.query)["token"][0], "reason": "fine"}
        r = await http.post("/email/decide", data=form)
        assert r.status_code == 409 and CHANGED in r.text, r.text
        page = await http.get(url)  # the same link: the evidence as it is now
        assert page.status_code == 200 and "production 1.6.0" in page.text and "then: 1.3.0" in page.text
        assert "production 1.3.0" not in page.text and "<form" in page.text
        await settle(notifier.broker)
        decided_mock(notifier).assert_not_called()
        r = await http.post("/email/decide", data=form)  # confirmed against the refreshed evidence
        assert r.status_code == 200 and "approved" in r.text, r.text
        await settle(notifier.broker)
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert [(v.approver, v.channel) for v in out.votes] == [("bob", "email")]


async def test_no_approve_link_goes_to_the_owner_of_the_key_that_signed_the_submission(notifier, mail):
    """The submitter is who signed (alice's pipeline key), whatever name the submission claims."""
    event = request_event(submitted_by=Submitter(name="pipeline-fraud", owner="alice", team="fraud"))
    async with running(notifier.broker) as br:
        await publish(br, event)
        assert mail.to("bob@example.com")
        assert not mail.to("alice@example.com") and not mail.to("carol@example.com")


async def test_email_carries_the_evidence_and_its_link_decides_once(notifier, mail):
    event = request_event()
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        await publish(br, event)
        (msg,) = mail.to("bob@example.com")
        assert not mail.to("carol@example.com")  # the submitter gets no approve link
        assert msg["From"] == "signoff@example.com" and "fraud-detector 1.4.0" in msg["Subject"]
        html, text = body_of(msg, "html"), body_of(msg, "plain")
        for evidence in ("fraud-detector 1.4.0", "carol", "accuracy", "0.95", "0.93", "integrity"):
            assert evidence in text and evidence in html, evidence
        link = links(msg)
        assert set(link) == {"approve", "reject"} and link["reject"] in html.replace("&amp;", "&")
        path = urlsplit(link["reject"])
        url = f"{path.path}?{path.query}"

        page = await http.get(url)  # what a mail scanner does too
        assert page.status_code == 200 and "<form" in page.text and "Nothing has been decided" in page.text
        assert (await http.get(url)).status_code == 200
        await settle(notifier.broker)  # what the vote emitted has gone round
        decided_mock(notifier).assert_not_called()
        assert notifier.store.get(event.submission_id).votes == ()

        token = dict(p.split("=", 1) for p in path.query.split("&"))["token"]
        from urllib.parse import unquote
        form = {"token": unquote(token), "reason": "recall on thin files dropped"}
        r = await http.post("/email/decide", data=form)
        assert r.status_code == 200 and "rejected" in r.text
        again = await http.post("/email/decide", data=form)
        assert again.status_code == 409 and "already used" in again.text
        assert (await http.get(url)).status_code == 409
        await settle(notifier.broker)  # what the vote emitted has gone round
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.decided_by) == ("rejected", "bob")
    assert [(v.channel, v.reason) for v in out.votes] == [("email", "recall on thin files dropped")]


def token_for(sid, approver="bob", action="approve", expires_in=timedelta(hours=1)) -> str:
    return tokens.issue(TOKEN_KEY.encode(), sid, approver, action, utcnow() + expires_in)


@pytest.mark.parametrize(("make", "status", "says"), [
    (lambda sid: token_for(sid, expires_in=timedelta(seconds=-1)), 410, "expired"),
    (lambda sid: token_for(sid)[:-3] + "AAA", 403, "does not match"),
    (lambda sid: tokens.issue(b"another key", sid, "bob", "approve", utcnow() + timedelta(hours=1)),
     403, "does not match"),
    (lambda sid: "garbage", 400, "malformed"),
    (lambda sid: token_for(uuid.uuid4()), 404, "no review"),
    (lambda sid: token_for(sid, approver="mallory"), 403, "not an approver"),
    (lambda sid: token_for(sid, approver="carol"), 403, "submitter cannot approve"),
])
async def test_bad_email_tokens_are_refused_and_change_nothing(notifier, logs, make, status, says):
    event = request_event()
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        token = make(event.submission_id)
        r = await http.post("/email/decide", data={"token": token, "reason": "x"})
        assert r.status_code == status and says in r.text, r.text
        if status != 403 or "mallory" not in says:
            assert (await http.get("/email/confirm", params={"token": token})).status_code in (status, 200)
        await settle(notifier.broker)  # what the vote emitted has gone round
        decided_mock(notifier).assert_not_called()
    assert notifier.store.get(event.submission_id).votes == ()
    assert any(e["event"] in ("email_vote_refused", "vote_refused") for e in logs)
    assert token not in repr(logs) and TOKEN_KEY not in repr(logs)


async def test_quorum_two_across_slack_and_email(notifier, mail, slack):
    event = request_event(quorum=2)
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        assert (await click(http, "U0ALICE", sb.APPROVE, event.submission_id)).json()["outcome"] == "pending"
        await settle(notifier.broker)  # what the vote emitted has gone round
        decided_mock(notifier).assert_not_called()
        link = urlsplit(links(mail.to("bob@example.com")[0])["approve"])
        from urllib.parse import parse_qs
        r = await http.post("/email/decide", data={"token": parse_qs(link.query)["token"][0], "reason": "ok"})
        assert r.status_code == 200 and "approved" in r.text
        await notified(notifier)
        await settle(notifier.broker)  # what the vote emitted has gone round
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert out.decided_by == "alice, bob" and [v.channel for v in out.votes] == ["slack", "email"]
    assert "Approved by alice, bob" in json.dumps(slack.requests("chat.update")[-1]["body"])


async def test_timeout_rejects_and_the_slack_message_says_so(notifier, slack):
    event = request_event()
    async with running(notifier.broker) as br:
        await publish(br, event)
        notifier.reviewer.clock = lambda: event.deadline - timedelta(seconds=1)
        assert await notifier.reviewer.tick() == event.deadline
        await settle(notifier.broker)  # what the vote emitted has gone round
        decided_mock(notifier).assert_not_called()
        notifier.reviewer.clock = lambda: event.deadline
        assert await notifier.reviewer.tick() is None
        await notified(notifier)
        await settle(notifier.broker)  # what the vote emitted has gone round
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.mode, out.decided_by) == ("rejected", "automatic", "review-notifier/timeout")
    update = slack.requests("chat.update")[-1]["body"]
    assert buttons(update) == [] and "Rejected automatically" in json.dumps(update)


async def test_timeout_escalates_to_the_declared_group(notifier, slack, mail):
    event = request_event(on_timeout="escalate",
                          escalation=Escalation(approvers=("dave",), timeout=timedelta(hours=4)))
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        assert not mail.to("dave@example.com")
        notifier.reviewer.clock = lambda: event.deadline + timedelta(seconds=1)
        await notifier.reviewer.tick()
        await notified(notifier)
        await settle(notifier.broker)  # what the vote emitted has gone round
        escalated = sent(notifier.emitter.publishers[ReviewEscalated], topics.REVIEW_ESCALATED)
        await settle(notifier.broker)  # what the vote emitted has gone round
        decided_mock(notifier).assert_not_called()
        assert escalated.approvers == ("dave",)
        assert escalated.deadline == event.deadline + timedelta(seconds=1, hours=4)
        assert "Escalated to dave" in json.dumps(slack.requests("chat.update")[-1]["body"])
        assert len(slack.requests("chat.postMessage")) == 2  # the escalation is announced anew
        (msg,) = mail.to("dave@example.com")
        link = urlsplit(links(msg)["approve"])
        from urllib.parse import parse_qs
        r = await http.post("/email/decide", data={"token": parse_qs(link.query)["token"][0], "reason": "fine"})
        assert r.status_code == 200
        await settle(notifier.broker)  # what the vote emitted has gone round
        out = sent(notifier.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.decided_by) == ("approved", "dave")


async def test_reminders_go_to_those_who_have_not_voted(notifier, slack, mail):
    event = request_event(quorum=2, remind_every=timedelta(hours=1))
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        await click(http, "U0ALICE", sb.APPROVE, event.submission_id)
        notifier.reviewer.clock = lambda: event.occurred_at + timedelta(hours=1, seconds=1)
        await notifier.reviewer.tick()
        await notified(notifier)
    reminders = [p for p in slack.requests("chat.postMessage") if "Reminder" in p["body"]["text"]]
    assert len(reminders) == 1 and "<@U0BOB>" in reminders[0]["body"]["text"]
    assert "<@U0ALICE>" not in reminders[0]["body"]["text"]
    assert reminders[0]["body"]["thread_ts"] == "1700000001.000100"
    assert [m["Subject"].startswith("Reminder") for m in mail.to("bob@example.com")] == [False, True]
    assert not [m for m in mail.to("alice@example.com") if m["Subject"].startswith("Reminder")]


async def test_webhook_mode_posts_and_updates_through_the_response_url(build_app, fields, slack):
    notifier = built(build_app, **{**fields, "slack_bot_token": "", "slack_webhook_url": slack.webhook_url})
    event = request_event()
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        (hook,) = slack.requests("webhook")
        assert buttons(hook["body"]) == [sb.APPROVE, sb.REJECT]
        r = await click(http, "U0ALICE", sb.APPROVE, event.submission_id, response_url=f"{slack.url}/response/1")
        assert r.status_code == 200
        await notified(notifier)
    (response,) = slack.requests("response")
    assert response["body"]["replace_original"] is True and buttons(response["body"]) == []
    assert slack.requests("chat.") == []


async def test_webhook_mode_says_anew_when_another_channel_found_production_changed(build_app, fields, slack,
                                                                                      people):
    notifier = built(build_app, **{**fields, "slack_bot_token": "", "slack_webhook_url": slack.webhook_url})
    event = request_event()
    async with running(notifier.broker) as br, client(notifier) as http:
        await publish(br, event)
        await publish(br, deployed("1.6.0", accuracy=0.97, auc=0.98))
        r = await http.post(f"/reviews/{event.submission_id}/decision", headers=people.auth("alice"),
                            json={"decision": "approve", "reason": "ok"})
        assert r.status_code == 409 and CHANGED in r.json()["detail"]
        await notified(notifier)
        first, anew = slack.requests("webhook")  # a webhook's message cannot change: a new one
        assert "production 1.3.0" in json.dumps(first["body"]) and "production 1.6.0" in json.dumps(anew["body"])
        assert buttons(anew["body"]) == [sb.APPROVE, sb.REJECT]
        r = await click(http, "U0BOB", sb.APPROVE, event.submission_id, reason="looked again",
                        response_url=f"{slack.url}/response/2")
        assert r.status_code == 200 and r.json()["outcome"] == "approved"
        await notified(notifier)
    assert len(slack.requests("webhook")) == 2  # the vote's refresh replaced its message, nothing anew
    (response,) = slack.requests("response")
    assert buttons(response["body"]) == [] and "production 1.6.0" in json.dumps(response["body"])


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # a local test server
async def test_smtp_credentials_are_used(build_app, fields):
    with MailSink(auth=("signoff", "smtp-pass")) as sink:
        notifier = built(build_app, **{**fields, "smtp_host": sink.host, "smtp_port": sink.port,
                                       "smtp_username": "signoff", "smtp_password": "smtp-pass",
                                       # the sink has no TLS (tests/component/test_hardening.py has STARTTLS)
                                       "smtp_starttls": False, "smtp_allow_plaintext_login": True})
        async with running(notifier.broker) as br:
            await publish(br, request_event())
        assert sink.logins and len(sink.to("bob@example.com")) == 1


def test_secrets_never_show_in_the_settings_repr(build_app, fields):
    notifier = built(build_app, **fields, smtp_password="smtp-pass")
    shown = repr(notifier.settings) + str(notifier.settings.model_dump())
    for secret in (SECRET, TOKEN_KEY, "xoxb-test-token", "smtp-pass"):
        assert secret not in shown
