"""What a reviewer sees, in one place for Slack and email: pure functions of a review.

Production is the one the review shows now (`Review.shown`): the request's, until a vote found
it changed and the review was refreshed."""

from __future__ import annotations

from services.review_notifier.reviews import Review


def title(review: Review) -> str:
    c = review.request.submission.candidate
    return f"Review requested: {c.model} {c.version}"


def facts(review: Review) -> list[tuple[str, str]]:
    request = review.request
    c = request.submission.candidate
    rows = [("Model", f"{c.model} {c.version}"), ("Submitter", submitter(review)),
            ("Submission", str(review.submission_id)),
            ("Artifact sha256", c.artifact_sha256), ("Data / code", f"{c.data_version} / {c.code_commit}"),
            ("Why review", request.reason),
            ("Workflow", f"{request.policy.name} ({request.policy.rule})"),
            ("Approvers", f"{', '.join(review.approvers)}; {request.quorum} approval(s) needed"
                          + ("" if request.veto else "; no single veto")),
            ("Deadline", f"{review.deadline.isoformat()} (then: {request.on_timeout})")]
    if request.break_glass:
        rows.append(("Break-glass", ", ".join(request.break_glass)))
    return rows


def submitter(review: Review) -> str:
    """Who submitted, as proved: the owner of the pipeline key that signed the submission; a name
    the submission only claims is shown as a claim."""
    signer, claimed = review.request.submitted_by, review.request.submission.submitter
    if signer is None:
        return f"{claimed} (claimed: the submission is unsigned)"
    team = f", team {signer.team}" if signer.team else ""
    return f"{signer.identity} (signed with pipeline key {signer.name}{team})"


def metrics(review: Review) -> list[tuple[str, str, str]]:
    """(metric, candidate, production) for each metric of the candidate."""
    production = review.shown
    prod = production.metrics if production else {}
    return [(name, _num(value), _num(prod[name]) if name in prod else "-")
            for name, value in sorted(review.request.submission.metrics.items())]


def production_label(review: Review) -> str:
    production = review.shown
    return f"production {production.candidate.version}" if production else "no model in production"


def production_changed(review: Review) -> str | None:
    """A line saying the evidence was refreshed, once production changed since the request."""
    asked = review.request.production
    if (asked.submission_id if asked else None) == (review.shown.submission_id if review.shown else None):
        return None
    then = asked.candidate.version if asked else "none"
    return (f"Production changed since this review was requested (then: {then}); the metrics now compare "
            f"against {production_label(review)}. Look again before you vote.")


def checks(review: Review) -> list[tuple[bool, str]]:
    out = []
    for r in review.request.results:
        detail = r.message or (f"{r.measured} (threshold {r.threshold})" if r.measured is not None else "")
        out.append((r.passed, f"{r.name}: {detail}" if detail else r.name))
    return out


def status(review: Review) -> str:
    """One line: pending with the votes so far, escalated, or how it was decided."""
    votes = "; ".join(f"{v.approver} {v.decision}d via {v.channel}"
                      + (" (BREAK-GLASS)" if v.break_glass else "") for v in review.votes)
    d = review.decision
    if d is None:
        head = "Escalated" if review.escalation else "Pending"
        if review.escalation:
            head += (f" to {', '.join(review.escalation.approvers)}, new deadline "
                     f"{review.escalation.deadline.isoformat()}")
        return f"{head}. Votes: {votes or 'none yet'}"
    if d.break_glass:
        return f"APPROVED BY BREAK-GLASS by {d.decided_by}: {d.reason}"
    if d.mode == "automatic":
        return f"{d.outcome.capitalize()} automatically ({d.decided_by}): {d.reason}"
    return f"{d.outcome.capitalize()} by {d.decided_by}. Votes: {votes}"


def _num(value: float) -> str:
    return f"{value:.4g}"
