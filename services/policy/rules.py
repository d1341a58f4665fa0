"""The policy's decisions, as pure functions of the checks outcome and the configured rule."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.events import ChecksFailed, ChecksPassed, PolicyRef, ReviewDecided, ReviewRequested


@dataclass(frozen=True)
class Policy:
    name: str
    auto_approve_min: Mapping[str, float]
    approvers: tuple[str, ...]
    quorum: int = 1
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        canonical = json.dumps(
            {"name": self.name, "auto_approve_min": dict(self.auto_approve_min),
             "approvers": list(self.approvers), "quorum": self.quorum},
            sort_keys=True,
        )
        object.__setattr__(self, "digest", hashlib.sha256(canonical.encode()).hexdigest())

    def ref(self, rule: str) -> PolicyRef:
        return PolicyRef(name=self.name, rule=rule, digest=self.digest)


def on_checks_passed(event: ChecksPassed, policy: Policy) -> ReviewDecided | ReviewRequested:
    """Approve automatically when every configured minimum holds; otherwise ask the approvers."""
    metrics = event.submission.metrics
    shortfalls = [
        f"{name} = {metrics.get(name)} (auto-approve needs >= {bound})"
        for name, bound in sorted(policy.auto_approve_min.items())
        if metrics.get(name) is None or metrics[name] < bound
    ]
    if not shortfalls:
        rule = "auto_approve"
        return ReviewDecided.caused_by(
            event,
            candidate=event.submission.candidate,
            outcome="approved",
            mode="automatic",
            decided_by=f"policy:{policy.name}/{rule}",
            reason="all automated checks passed and "
            + ", ".join(f"{n} >= {b}" for n, b in sorted(policy.auto_approve_min.items())),
            policy=policy.ref(rule),
        )
    return ReviewRequested.caused_by(
        event,
        submission=event.submission,
        results=event.results,
        approvers=policy.approvers,
        quorum=policy.quorum,
        policy=policy.ref("manual_approval"),
        reason="; ".join(shortfalls),
    )


def on_checks_failed(event: ChecksFailed, policy: Policy) -> ReviewDecided:
    """Failed checks are a rejection: final for this artifact, recorded like any decision."""
    failed = [f"{r.name}: {r.message}" for r in event.results if r.blocking and not r.passed]
    rule = "checks_failed"
    return ReviewDecided.caused_by(
        event,
        candidate=event.submission.candidate,
        outcome="rejected",
        mode="automatic",
        decided_by=f"policy:{policy.name}/{rule}",
        reason="automated checks failed: " + "; ".join(failed),
        policy=policy.ref(rule),
    )
