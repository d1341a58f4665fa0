"""The channel registry of the review-notifier: every channel brings its name, settings and routes;
the Notifier asks each channel that sends, and one failing channel stops no other. A channel
written here in a few lines (as docs/review-notifier.md describes) gets its votes counted once."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from services.review_notifier.auth import Authenticator
from services.review_notifier.channels import CHANNELS, Notices, Receipt
from services.review_notifier.channels.base import refused, reviewer_of
from services.review_notifier.http import make_api
from services.review_notifier.notify import Notifier
from services.review_notifier.reviews import Refused, Review
from services.review_notifier.service import Reviewer
from services.review_notifier.settings import ReviewNotifierSettings
from services.review_notifier.state import ReviewStore
from shared.events import Production, Vote
from shared.identity import Directory
from tests.unit import factories as f

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
VOTE_CHANNEL = re.compile(r"^[a-z][a-z0-9-]{0,31}$")  # shared.events.Vote.channel


def test_registered_channels_have_distinct_names_a_vote_can_carry():
    names = [channel.name for channel in CHANNELS]
    assert names == ["slack", "email"]
    assert all(VOTE_CHANNEL.match(n) for n in names) and "http" not in names  # http: the decision API


def test_each_channel_brings_its_settings(monkeypatch):
    for channel in CHANNELS:
        assert set(channel.Settings.model_fields) <= set(ReviewNotifierSettings.model_fields), channel.name
    monkeypatch.setenv("REVIEW_NOTIFIER_SLACK_CHANNEL", "C0REVIEWS")
    monkeypatch.setenv("REVIEW_NOTIFIER_SMTP_HOST", "")  # empty is unset
    settings = ReviewNotifierSettings()
    assert (settings.slack_channel, settings.smtp_host) == ("C0REVIEWS", None)
    with pytest.raises(ValueError, match="TOKEN_KEY is required"):  # the email channel's own check
        ReviewNotifierSettings(smtp_host="mail.example.com")


class Pager:
    """A channel: a pager app whose signed-in user votes by POSTing; the page id is the receipt."""

    name = "pager"
    Settings = BaseModel

    def __init__(self, sends: bool = True, fails: bool = False) -> None:
        self.sends, self.fails = sends, fails
        self.calls: list[tuple[str, str | None]] = []

    @classmethod
    def from_settings(cls, settings: object) -> Pager:
        return cls()

    def open(self, http: httpx.AsyncClient, notices: Notices) -> None:
        self.notices = notices

    def router(self) -> APIRouter:
        routes = APIRouter()

        @routes.post("/pager/{submission_id}")
        async def vote(submission_id: uuid.UUID, request: Request, reviewer: Reviewer = Depends(reviewer_of)):
            body = await request.json()
            vote = Vote(approver=request.headers["x-pager-user"], decision=body["decision"], reason="paged",
                        channel=self.name, at=T0)
            try:
                _, decided = await reviewer.vote(submission_id, vote, receipt=Receipt(self.name, body["page"]))
            except Refused as r:
                return refused(self.name, r.status, r.message)
            return {"outcome": decided.outcome if decided else "pending"}

        return routes

    async def announce(self, review: Review) -> None:
        self._call("announce")
        self.notices.record(review, "requested", {})

    async def refresh(self, review: Review, reply_to: str | None = None) -> None:
        self._call("refresh", reply_to)

    async def remind(self, review: Review, approvers: tuple[str, ...]) -> None:
        self._call("remind")

    def _call(self, step: str, reply_to: str | None = None) -> None:
        self.calls.append((step, reply_to))
        if self.fails:
            raise RuntimeError("the pager service is down")


@pytest.fixture
def store(tmp_path):
    store = ReviewStore(tmp_path / "reviews.db")
    yield store
    store.close()


def review(quorum: int = 1) -> Review:
    return Review(request=f.review_requested(f.submitted(f.submission(submitter="carol")),
                                             approvers=("alice", "bob"), quorum=quorum))


def opened(store: ReviewStore, *channels: Pager) -> Notifier:
    for channel in channels:
        channel.open(httpx.AsyncClient(), Notices(store, channel.name))
    return Notifier(store, channels)


async def test_only_channels_that_send_are_asked_and_a_failing_one_stops_no_other(store):
    broken, silent, working = Pager(fails=True), Pager(sends=False), Pager()
    notifier = opened(store, broken, silent, working)
    rev = review()
    await notifier.announce(rev)
    await notifier.remind(rev, ("bob",))
    assert broken.calls == working.calls == [("announce", None), ("remind", None)] and silent.calls == []
    assert store.notice(rev.submission_id, "pager:requested") == {}  # kept under the channel's name


async def test_only_the_channel_a_vote_came_through_gets_its_reply_address(store):
    class Other(Pager):
        name = "other"

    pager, other = Pager(), Other()
    notifier = opened(store, pager, other)
    await notifier.refresh(review(), origin="pager", reply_to="https://pager.example/reply/1")
    assert pager.calls == [("refresh", "https://pager.example/reply/1")] and other.calls == [("refresh", None)]


async def test_a_new_channel_mounts_its_routes_and_its_votes_count_once(store):
    pager, emitted = Pager(), []

    async def emit(event) -> None:
        emitted.append(event)

    api = make_api([pager], Authenticator(Directory(["alice", "bob"])))
    notifier = opened(store, pager)
    api.state.reviewer = Reviewer(store, emit, notifier)
    rev = review(quorum=2)
    store.open(rev.request)
    url = f"/pager/{rev.submission_id}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://review") as http:
        first = await http.post(url, json={"decision": "approve", "page": "p-1"}, headers={"x-pager-user": "alice"})
        again = await http.post(url, json={"decision": "approve", "page": "p-1"}, headers={"x-pager-user": "bob"})
        second = await http.post(url, json={"decision": "approve", "page": "p-2"}, headers={"x-pager-user": "bob"})
    await notifier.drain()
    assert first.json() == {"outcome": "pending"}
    assert again.status_code == 409 and "already counted" in again.json()["detail"]
    assert second.json() == {"outcome": "approved"}
    assert [(v.approver, v.channel) for v in emitted[0].votes] == [("alice", "pager"), ("bob", "pager")]
    assert ("refresh", None) in pager.calls


async def test_a_vote_is_judged_against_production_now_and_a_refusal_refreshes_every_channel(store):
    """What the book answers decides: a release (or None) is compared with what the review shows;
    anything else (the book cannot tell) judges the vote as before."""
    class Other(Pager):
        name = "other"

    pager, other, emitted = Pager(), Other(), []

    async def emit(event) -> None:
        emitted.append(event)

    v160 = Production(candidate=f.candidate(version="1.6.0"), metrics={}, submission_id=uuid.uuid4())
    answers: dict[str, object] = {"fraud-detector": object()}  # not known: neither a release nor None
    notifier = opened(store, pager, other)
    reviewer = Reviewer(store, emit, notifier, production=answers.get)
    rev = review(quorum=2)
    store.open(rev.request)  # shows no model in production
    vote = Vote(approver="alice", decision="approve", reason="ok", channel="pager", at=T0)
    await reviewer.vote(rev.submission_id, vote)  # counted, as before
    answers["fraud-detector"] = v160
    with pytest.raises(Refused) as info:
        await reviewer.vote(rev.submission_id, vote.model_copy(update={"approver": "bob"}), reply_to="r/1")
    await notifier.drain()
    assert info.value.status == 409 and "now fraud-detector 1.6.0 (was no model in production)" in info.value.message
    stored = store.get(rev.submission_id)
    assert stored.shown == v160 and [v.approver for v in stored.votes] == ["alice"] and emitted == []
    assert pager.calls[-1] == ("refresh", "r/1") and other.calls[-1] == ("refresh", None)
    _, decision = await reviewer.vote(rev.submission_id, vote.model_copy(update={"approver": "bob"}))
    assert decision is not None and decision.outcome == "approved" and emitted == [decision]
