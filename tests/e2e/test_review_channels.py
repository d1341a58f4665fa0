"""Human review through Slack and email, end to end: the four services as real processes on the
real broker, a real SMTP server (aiosmtpd) receiving the mail whose links the tests follow, a local
HTTP stand-in for Slack's Web API, and interactivity requests built and signed as Slack does.

The session stack's services are stopped for this module and started again after it: this module
runs its own four, configured for Slack and email and with workflows of short deadlines, and two
instances of one service would share its consumer groups.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from services.review_notifier.api_tokens import TokenFile, issue
from services.review_notifier.channels.slack import blocks as sb
from shared import topics
from shared.events import utcnow
from signoff.devstack import Stack, free_port
from signoff.standins import MailSink, SlackStandIn, block_actions, links, signed_request
from tests.e2e.conftest import PEOPLE, Env
from tests.eventlog import EventLog

pytestmark = pytest.mark.kafka

SECRET = secrets.token_urlsafe(24)
USERS = {"U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol", "U0DAVE": "dave", "U0ONCALL": "oncall"}
EMAILS = {name: f"{name}@example.com" for name in ("alice", "bob", "carol", "dave")}
CHECKS = """  - name: automated_checks
    type: checks
    inputs: {min: {accuracy: 0.5}}
"""
DEPLOY = """  - name: deploy
    type: deploy
    inputs: {target: model-store}
"""
WORKFLOWS = {
    "quorum": "name: rv-quorum\nmatch: ['rvq-*']\nsteps:\n" + CHECKS + """  - name: two_approvals
    type: approval
    inputs: {approvers: ['alice', 'bob', 'carol'], quorum: 2, timeout: 1h, break_glass: ['oncall']}
""" + DEPLOY,
    "timeout": "name: rv-timeout\nmatch: ['rvt-*']\nsteps:\n" + CHECKS + """  - name: quick_approval
    type: approval
    inputs: {approvers: ['alice', 'bob'], timeout: 5s, on_timeout: reject, remind_every: 1s}
""" + DEPLOY,
    "slow": "name: rv-slow\nmatch: ['rvs-*']\nsteps:\n" + CHECKS + """  - name: approval
    type: approval
    inputs: {approvers: ['alice', 'bob'], timeout: 12s, on_timeout: reject}
""" + DEPLOY,
    "escalate": "name: rv-escalate\nmatch: ['rvx-*']\nsteps:\n" + CHECKS + """  - name: approval
    type: approval
    inputs: {approvers: ['alice'], timeout: 4s, on_timeout: escalate, escalate_to: ['group:leads'],
             escalation_timeout: 1h}
""" + DEPLOY,
    "default": "name: rv-default\ndefault: true\nsteps:\n" + CHECKS + """  - name: approval
    type: approval
    inputs: {approvers: ['alice', 'bob'], quorum: 1, timeout: 1h}
""" + DEPLOY,
}


@dataclass
class Review:
    env: Env
    stack: Stack
    url: str
    slack: SlackStandIn
    mail: MailSink
    store: Path

    async def click(self, user: str, action: str, sid: str, reason: str = "",
                    request: tuple[bytes, dict] | None = None) -> httpx.Response:
        body, headers = request or signed_request(SECRET, block_actions(
            user, action, sid, reason=reason, response_url=f"{self.slack.url}/response/{sid}"))
        async with httpx.AsyncClient(base_url=self.url) as http:
            return await http.post("/slack/actions", content=body, headers=headers)

    async def posted(self, sid: str, count: int = 1) -> list[dict]:
        return await asyncio.to_thread(self.slack.wait_for, "chat.postMessage", sid, 60.0, count)

    async def mail_to(self, who: str, sid: str, count: int = 1) -> list:
        return await asyncio.to_thread(self.mail.wait_for, EMAILS[who], sid, 60.0, count)

    async def state(self, sid: str) -> dict:
        async with httpx.AsyncClient(base_url=self.url) as http:
            return (await http.get(f"/reviews/{sid}", headers=self.env.auth("dave"))).json()


@pytest.fixture(scope="module")
def review(e2e: Env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Review]:
    workdir = tmp_path_factory.mktemp("review-stack")
    folder = workdir / "workflows"
    folder.mkdir()
    for name, text in WORKFLOWS.items():
        (folder / f"{name}.yaml").write_text(text)
    (folder / "groups.yaml").write_text("leads: [dave]\n")
    port = free_port()
    with SlackStandIn() as slack, MailSink() as mail:
        env = {
            "VALIDATOR_ARTIFACT_ROOTS": json.dumps([str(e2e.artifacts)]),
            "DEPLOYER_ARTIFACT_ROOTS": json.dumps([str(e2e.artifacts)]),
            "DEPLOYER_MODEL_STORE": str(workdir / "model-store"),
            "DEPLOYER_STATE_DB": str(workdir / "deployer.db"),
            "POLICY_STATE_DB": str(workdir / "policy.db"),
            "SIGNOFF_WORKFLOWS": str(folder),
            "REVIEW_NOTIFIER_STATE_DB": str(workdir / "reviews.db"),
            "REVIEW_NOTIFIER_HTTP_PORT": str(port),
            "REVIEW_NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "SIGNOFF_TOKENS_FILE": str(e2e.workdir / "tokens.json"),  # the people of tests/e2e/conftest.py
            "SIGNOFF_KNOWN_USERS": json.dumps(PEOPLE),
            "REVIEW_NOTIFIER_TICK_SECONDS": "0.5",
            "REVIEW_NOTIFIER_SLACK_SIGNING_SECRET": SECRET,
            "REVIEW_NOTIFIER_SLACK_BOT_TOKEN": "xoxb-e2e",
            "REVIEW_NOTIFIER_SLACK_API_URL": slack.api_url,
            "REVIEW_NOTIFIER_SLACK_ALLOW_HTTP_LOOPBACK": "true",  # the stand-in is http://127.0.0.1
            "REVIEW_NOTIFIER_SLACK_CHANNEL": "C0REVIEWS",
            "REVIEW_NOTIFIER_SLACK_USERS": json.dumps(USERS),
            "REVIEW_NOTIFIER_SMTP_HOST": mail.host,
            "REVIEW_NOTIFIER_SMTP_PORT": str(mail.port),
            "REVIEW_NOTIFIER_APPROVER_EMAILS": json.dumps(EMAILS),
            "REVIEW_NOTIFIER_TOKEN_KEY": secrets.token_urlsafe(32),
        }
        e2e.stack.stop_all()
        try:
            with Stack(workdir, env, service_env=e2e.stack.service_env) as stack:
                stack.start_all()
                yield Review(e2e, stack, f"http://127.0.0.1:{port}", slack, mail, workdir / "model-store")
        finally:
            e2e.stack.start_all()


def submit(review: Review, model: str, accuracy: float = 0.85, submitter: str = "carol") -> str:
    path, _ = review.env.artifact(f"{model}.bin")
    return review.env.cli("submit", "--model", model, "--version", "1.0.0", "--artifact", str(path),
                          "--metric", f"accuracy={accuracy}", "--data-version", "2026-11-01",
                          "--code-commit", "3f2c9ab", "--submitter", submitter).stdout.strip()


def form(link: str) -> dict:
    return {"token": parse_qs(urlsplit(link).query)["token"][0]}


def page(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


async def test_quorum_two_across_slack_and_email_then_deployed(review: Review, events: EventLog, unique: str):
    sid = submit(review, f"rvq-{unique}")
    (post,) = await review.posted(sid)
    assert buttons(post["body"]) == [sb.APPROVE, sb.REJECT]  # break-glass: the API, with its own credential

    first = signed_request(SECRET, block_actions("U0ALICE", sb.APPROVE, sid, reason="eval matches"))
    assert (await review.click("", "", sid, request=first)).json()["outcome"] == "pending"
    replay = await review.click("", "", sid, request=first)  # the same request delivered twice
    assert replay.status_code == 409 and "already counted" in replay.json()["detail"]
    again = await review.click("U0ALICE", sb.APPROVE, sid)  # alice clicks again: still one approval
    assert again.status_code == 409 and "already voted" in again.json()["detail"]
    own = await review.click("U0CAROL", sb.APPROVE, sid)  # carol submitted it
    assert own.status_code == 403 and "submitter cannot approve" in own.json()["detail"]
    assert await review.mail_to("bob", sid) and not review.mail.to(EMAILS["carol"], sid)
    assert events.about(sid, topics.REVIEW_DECIDED) == []

    (mail,) = await review.mail_to("bob", sid)
    approve = links(mail)["approve"]
    async with httpx.AsyncClient(base_url=review.url) as http:
        shown = await http.get(page(approve))  # a scanner or a person opens the link
        assert shown.status_code == 200 and "Nothing has been decided" in shown.text
        assert len((await review.state(sid))["votes"]) == 1
        decided = await http.post("/email/decide", data={**form(approve), "reason": "fine by me"})
        assert decided.status_code == 200 and "approved" in decided.text
        reused = await http.post("/email/decide", data={**form(approve), "reason": "again"})
        assert reused.status_code == 409 and "already used" in reused.text

    end = await events.wait_terminal(sid)
    assert end.topic == topics.DEPLOYMENT_SUCCEEDED
    (decision,) = [s.event for s in events.about(sid, topics.REVIEW_DECIDED)]
    assert (decision.outcome, decision.mode, decision.decided_by) == ("approved", "human", "alice, bob")
    assert [(v.approver, v.channel) for v in decision.votes] == [("alice", "slack"), ("bob", "email")]
    update = (await asyncio.to_thread(review.slack.wait_for, "chat.update", sid, 30.0, 1,
                                      lambda b: "Approved by" in json.dumps(b)))[-1]
    assert buttons(update["body"]) == [] and update["body"]["ts"] == post_ts(review, sid)


async def test_one_rejection_by_email_stops_deployment(review: Review, events: EventLog, unique: str):
    sid = submit(review, f"rvr-{unique}")
    (mail,) = await review.mail_to("bob", sid)
    async with httpx.AsyncClient(base_url=review.url) as http:
        reject = links(mail)["reject"]
        assert (await http.get(page(reject))).status_code == 200
        r = await http.post("/email/decide", data={**form(reject), "reason": "parity gap on group b"})
        assert r.status_code == 200 and "rejected" in r.text
    end = await events.wait_terminal(sid)
    assert end.topic == topics.REVIEW_DECIDED and end.event.outcome == "rejected"
    assert end.event.decided_by == "bob" and end.event.votes[0].channel == "email"
    late = await review.click("U0ALICE", sb.APPROVE, sid)
    assert late.status_code == 409 and "already decided" in late.json()["detail"]
    await asyncio.to_thread(review.slack.wait_for, "chat.update", sid, 30.0, 1,
                            lambda b: "Rejected by bob" in json.dumps(b))
    assert events.about(sid, topics.DEPLOYMENT_SUCCEEDED) == []
    assert not (review.store / f"rvr-{unique}").exists()


async def test_break_glass_approves_alone_flagged(review: Review, events: EventLog, unique: str):
    """Not from Slack (a click proves a person, not the role): through the review API, with
    oncall's break-glass credential."""
    sid = submit(review, f"rvq-bg-{unique}")
    await review.posted(sid)
    justification = "production model is down; this one passed every check; risk agreed with CISO"
    clicked = await review.click("U0ONCALL", sb.BREAK_GLASS, sid, reason=justification)
    assert clicked.status_code == 403 and "break-glass role's own credential" in clicked.json()["detail"]
    token, record = issue("oncall", "break-glass", timedelta(hours=1), utcnow())
    TokenFile(review.env.workdir / "tokens.json").add(record)  # as `signoff token create --role break-glass`
    async with httpx.AsyncClient(base_url=review.url) as http:
        r = await http.post(f"/reviews/{sid}/decision", headers={"Authorization": f"Bearer {token}"},
                            json={"decision": "approve", "reason": justification, "break_glass": True})
    assert r.status_code == 200 and r.json()["outcome"] == "approved", r.text
    end = await events.wait_terminal(sid)
    assert end.topic == topics.DEPLOYMENT_SUCCEEDED
    decision = events.about(sid, topics.REVIEW_DECIDED)[0].event
    assert decision.break_glass and decision.votes[0].break_glass and justification in decision.reason
    await asyncio.to_thread(review.slack.wait_for, "chat.update", sid, 30.0, 1,
                            lambda b: "BREAK-GLASS" in json.dumps(b))


async def test_timeout_rejects_after_reminders(review: Review, events: EventLog, unique: str):
    sid = submit(review, f"rvt-{unique}")
    await review.mail_to("alice", sid, count=2)  # the request, then at least one reminder
    assert any(m["Subject"].startswith("Reminder") for m in review.mail.to(EMAILS["alice"], sid))
    end = await events.wait_terminal(sid, timeout=30)
    assert end.topic == topics.REVIEW_DECIDED
    assert (end.event.outcome, end.event.mode, end.event.decided_by) == \
        ("rejected", "automatic", "review-notifier/timeout")
    await asyncio.to_thread(review.slack.wait_for, "chat.update", sid, 30.0, 1,
                            lambda b: "Rejected automatically" in json.dumps(b) and not buttons(b))
    assert events.about(sid, topics.DEPLOYMENT_SUCCEEDED) == []


async def test_timeout_escalates_and_the_escalation_group_decides(review: Review, events: EventLog, unique: str):
    sid = submit(review, f"rvx-{unique}")
    escalated = await events.wait_for(lambda log: log.about(sid, topics.REVIEW_ESCALATED), 30,
                                      "the review to escalate")
    assert escalated[0].event.approvers == ("dave",)
    await asyncio.to_thread(review.slack.wait_for, "chat.update", sid, 30.0, 1,
                            lambda b: "Escalated to dave" in json.dumps(b))
    (mail,) = await review.mail_to("dave", sid)
    async with httpx.AsyncClient(base_url=review.url) as http:
        r = await http.post("/email/decide", data={**form(links(mail)["approve"]), "reason": "ok as lead"})
        assert r.status_code == 200
    end = await events.wait_terminal(sid)
    assert end.topic == topics.DEPLOYMENT_SUCCEEDED


async def test_votes_tokens_and_deadlines_survive_a_restart(review: Review, events: EventLog, unique: str):
    # A review with a vote, a used link and a counted Slack request, across a restart.
    sid = submit(review, f"rvq-restart-{unique}")  # carol: "pipeline@ci" is no known user, nobody could approve
    await review.posted(sid)
    first = signed_request(SECRET, block_actions("U0ALICE", sb.APPROVE, sid))
    assert (await review.click("", "", sid, request=first)).status_code == 200
    # Before the restart too: a timed-out review whose deadline passes while the service is down.
    slow = submit(review, f"rvs-{unique}")
    await review.posted(slow)
    deadline = (await review.state(slow))["request"]["deadline"]

    review.stack.stop("review_notifier")
    assert events.about(slow, topics.REVIEW_DECIDED) == []
    from datetime import datetime
    wait = (datetime.fromisoformat(deadline) - datetime.now(datetime.fromisoformat(deadline).tzinfo)).total_seconds()
    await asyncio.sleep(max(wait, 0) + 1)  # the deadline passes while nobody watches
    review.stack.start("review_notifier")

    timed_out = await events.wait_terminal(slow, timeout=30)
    assert (timed_out.event.outcome, timed_out.event.decided_by) == ("rejected", "review-notifier/timeout")
    replay = await review.click("", "", sid, request=first)
    assert replay.status_code == 409 and "already counted" in replay.json()["detail"]
    assert len((await review.state(sid))["votes"]) == 1
    (mail,) = await review.mail_to("bob", sid)
    async with httpx.AsyncClient(base_url=review.url) as http:
        assert (await http.post("/email/decide", data=form(links(mail)["approve"]))).status_code == 200
        again = await http.post("/email/decide", data=form(links(mail)["approve"]))
        assert again.status_code == 409
    end = await events.wait_terminal(sid)
    assert end.topic == topics.DEPLOYMENT_SUCCEEDED
    assert len(events.about(sid, topics.REVIEW_DECIDED)) == 1
    assert len(review.slack.requests("chat.postMessage", sid)) == 1  # not announced twice


async def test_the_http_api_still_decides(review: Review, events: EventLog, unique: str):
    sid = submit(review, f"rvh-{unique}")
    await review.posted(sid)
    async with httpx.AsyncClient(base_url=review.url) as http:
        anonymous = await http.get(f"/reviews/{sid}")
        assert anonymous.status_code == 401
        as_bob = await http.post(f"/reviews/{sid}/decision", headers=review.env.auth("alice"),
                                 json={"decision": "approve", "approver": "bob", "reason": "looked at it"})
        assert as_bob.status_code == 403
        r = await http.post(f"/reviews/{sid}/decision", headers=review.env.auth("alice"),
                            json={"decision": "approve", "reason": "looked at it"})
        assert r.status_code == 200 and r.json()["outcome"] == "approved" and r.json()["approver"] == "alice"
    end = await events.wait_terminal(sid)
    assert end.topic == topics.DEPLOYMENT_SUCCEEDED
    assert events.about(sid, topics.REVIEW_DECIDED)[0].event.votes[0].channel == "http"


def buttons(message: dict) -> list[str]:
    return [e["action_id"] for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


def post_ts(review: Review, sid: str) -> str:
    return review.slack.requests("chat.postMessage", sid)[0]["answer"]["ts"]
