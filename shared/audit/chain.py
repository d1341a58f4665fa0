"""What an indexed event cites, and where the cited event must be for the citation to hold; and
what may differ between two copies of one event (pure: no SQL).

Services derive an event's id from its cause's (Event.caused_by), so the topic of a cause is known
from the event's type: a citation is held only by an event on one of those topics, never by a
record of another topic that happens (or was made) to carry the id.
"""

from __future__ import annotations

import json

from shared import topics
from shared.events import DeploymentRolledBack, DeploymentSucceeded, Event, ReviewDecided

_CHECKS = (topics.CHECKS_PASSED, topics.CHECKS_FAILED)
_DECIDED = (topics.REVIEW_DECIDED,)
# Where the cause (causation_id) of each event is, as the services make them (Event.caused_by):
# a citation is held only by an event on one of these topics. Absent: any topic.
CAUSE_TOPICS: dict[str, tuple[str, ...]] = {
    topics.CHECKS_PASSED: (topics.MODEL_SUBMITTED,),
    topics.CHECKS_FAILED: (topics.MODEL_SUBMITTED,),
    topics.REVIEW_REQUESTED: _CHECKS,
    topics.REVIEW_DECIDED: (topics.REVIEW_REQUESTED, *_CHECKS),
    topics.REVIEW_ESCALATED: (topics.REVIEW_REQUESTED,),
    topics.DEPLOYMENT_SUCCEEDED: _DECIDED,
    topics.DEPLOYMENT_PROGRESSED: _DECIDED,
    topics.DEPLOYMENT_SUPERSEDED: _DECIDED,
    topics.DEPLOYMENT_FAILED: (topics.REVIEW_DECIDED, topics.ROLLBACK_REQUESTED),
    topics.DEPLOYMENT_ROLLED_BACK: (topics.ROLLBACK_REQUESTED, topics.REVOCATION_REQUESTED),
    topics.DEPLOYMENT_REVOKED: (topics.REVOCATION_REQUESTED,),
}
# What a service emitting the same event again changes (docs/deployer.md: the clock, and the
# sequence number when the model changed since); anything else differing is not a redelivery.
_REEMIT_CHANGES = ("occurred_at", "sequence")


def references(event: Event) -> list[tuple[str, str, tuple[str, ...], str]]:
    """What `event` cites that the index must hold for its story to be whole: (kind, target,
    the topics an 'event' target may be on, why)."""
    out = []
    if event.causation_id is not None:
        why = "its approval (causation_id)" if isinstance(event, DeploymentSucceeded) else "its cause (causation_id)"
        out.append(("event", str(event.causation_id), CAUSE_TOPICS.get(event.topic, topics.EVENT_TOPICS), why))
    if isinstance(event, ReviewDecided) and event.checks_event_id is not None:
        if event.checks_event_id != event.causation_id:
            out.append(("event", str(event.checks_event_id), _CHECKS, "its checks event (checks_event_id)"))
    if isinstance(event, ReviewDecided | DeploymentSucceeded):
        out.append(("submission", str(event.submission_id), (), "its submission (model.submitted of)"))
    if isinstance(event, DeploymentRolledBack):
        out.append(("deployed", str(event.to_submission_id), (),
                    "the release it restored (deployment.succeeded of)"))
    return out


def differs(signer: str, body: str, new_signer: str, new_body: str) -> str:
    """What differs between an indexed event and another copy of it, beyond what a re-emit changes
    ('' when nothing does)."""
    if signer != new_signer:
        return f"its signer ({new_signer}, the first {signer})"
    old, new = json.loads(body), json.loads(new_body)
    fields = sorted(k for k in set(old) | set(new) if k not in _REEMIT_CHANGES and old.get(k) != new.get(k))
    return f"its fields {', '.join(fields)}" if fields else ""
