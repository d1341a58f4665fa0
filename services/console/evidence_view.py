"""What a reviewer sees before voting, from a review: the review-notifier's own evidence
(services/review_notifier/evidence.py: facts, checks, metrics against production, status) and
what the console adds beside it: fairness per group, lineage, and what changed since the release
in production. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from services.review_notifier import evidence
from services.review_notifier.reviews import Review


@dataclass(frozen=True)
class Evidence:
    title: str
    facts: list[tuple[str, str]]
    checks: list[tuple[bool, str]]
    metrics: list[tuple[str, str, str]]  # metric, candidate, production
    production: str
    production_changed: str | None
    groups: list[tuple[str, list[tuple[str, str]]]]  # group, [(metric, value)]
    lineage: list[tuple[str, str]]
    changes: list[tuple[str, str, str]]  # what, in production, this candidate
    status: str
    votes: list[tuple[str, str, str, str]]  # approver, decision, channel, reason


def of(review: Review) -> Evidence:
    s = review.request.submission
    c = s.candidate
    lineage = [("data version", c.data_version), ("code commit", c.code_commit),
               ("training run", s.training_run_id or "(none declared)"),
               ("model card", s.model_card_uri or "(none declared)"), ("artifact", c.artifact_uri)]
    groups = [(group, [(name, f"{value:.4g}") for name, value in sorted(values.items())])
              for group, values in sorted(s.group_metrics.items())]
    return Evidence(
        title=evidence.title(review), facts=evidence.facts(review), checks=evidence.checks(review),
        metrics=evidence.metrics(review), production=evidence.production_label(review),
        production_changed=evidence.production_changed(review), groups=groups, lineage=lineage,
        changes=changes(review), status=evidence.status(review),
        votes=[(v.approver, v.decision, v.channel, v.reason) for v in review.votes])


def changes(review: Review) -> list[tuple[str, str, str]]:
    """(what, production, candidate) for each lineage field that differs from the release in
    production the review shows; every field when nothing is in production."""
    c, shown = review.request.submission.candidate, review.shown
    if shown is None:
        return [("release", "(nothing in production)", f"{c.model} {c.version}")]
    p = shown.candidate
    fields = [("version", p.version, c.version), ("data version", p.data_version, c.data_version),
              ("code commit", p.code_commit, c.code_commit),
              ("artifact sha256", p.artifact_sha256[:16], c.artifact_sha256[:16])]
    return [(what, old, new) for what, old, new in fields if old != new]
