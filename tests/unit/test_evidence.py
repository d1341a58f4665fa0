"""What reviewers are shown about who submitted: the proved identity, a claim only as a claim."""

from __future__ import annotations

from services.review_notifier import evidence
from services.review_notifier.reviews import Review
from shared.values import Submitter
from tests.unit import factories as f


def shown(**over: object) -> str:
    return dict(evidence.facts(Review(request=f.review_requested(**over))))["Submitter"]


def test_a_signed_submission_shows_the_owner_of_the_key_that_signed_it():
    key = Submitter(name="pipeline-fraud", owner="carol", team="fraud")
    assert shown(submitted_by=key) == "carol (signed with pipeline key pipeline-fraud, team fraud)"


def test_an_unsigned_submission_shows_its_submitter_as_a_claim():
    text = shown(submitted_by=None)
    assert text.endswith("(claimed: the submission is unsigned)")
    assert text.startswith(f.submission().submitter)
