"""The model in production for each name, as the deployer's events tell it: what the validator's
regression check and the policy's `carry_forward_when` (and reviewers' evidence) compare against.

Pure: it applies events and answers `get(model)`; reading the topics is the services' business
(`shared.replay`).

- `deployment.succeeded` records a release (candidate and metrics, by submission id) and puts it
  in production.
- `deployment.rolled_back` puts the release `to_submission_id` back in production. If no
  `deployment.succeeded` of that release was seen (the topic's retention dropped it), the book
  knows production changed but not to what: `get` answers `Unknown`, neither the release that
  was rolled back from nor None ("nothing in production"), so a comparison with production
  fails closed instead of passing against nothing.
- `deployment.revoked` takes the model out of production if the revoked release is the one in
  production and no later event replaced it. When the revoked release was live and the deployer
  restored an earlier one, it emitted that `deployment.rolled_back` first, so the revocation
  finds the restored release in production and changes nothing.

Order: the deployer's `sequence`, never a timestamp. The deployer numbers every event that moves
a model's production (per model, increasing, kept in its state file), and the book orders by that
number: `occurred_at` is not consulted, so an event dated 2099 orders where the deployer put it,
not last. Events without a number were emitted before the deployer numbered them: they all order
before every numbered one, and among themselves by `occurred_at` as they always did. Two events
with the same place are ordered by event_id, the same way everywhere (a re-emitted event keeps its
id; see docs/deployer.md for its number). The answer is a function of the *set* of events applied:
the three topics are read by separate consumers and events are redelivered, so any arrival order
(and any repetition) gives the same book. A revocation ordered at or after the event that put its
release in production takes it out (a revocation is final).

Trust: only events signed by the deployer reach `apply` (the followers and the start-up replay
verify signatures, shared.signing); what they carry is not second-guessed here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.events import (
    DeploymentRevoked,
    DeploymentRolledBack,
    DeploymentSucceeded,
    Event,
    Production,
)

# What the book reads: the events, and so the topics, a service replays and follows to keep it.
EVENTS: tuple[type[Event], ...] = (DeploymentSucceeded, DeploymentRolledBack, DeploymentRevoked)


# The version of `ProductionBook.to_snapshot`'s data (shared.snapshot): bump it when the shape
# changes; a snapshot of another version is not restored (the service reads from the beginning).
SNAPSHOT_VERSION = 1

# An event's place in a model's history: (numbered?, sequence, occurred_at, event_id). Numbered
# events order by the deployer's sequence alone (their timestamp is not read); unnumbered, older
# ones by occurred_at, all before the numbered.
Place = tuple[bool, int, datetime, str]
_UNUSED = datetime.min.replace(tzinfo=UTC)


def place(event: Event) -> Place:
    sequence = getattr(event, "sequence", None)
    if sequence is not None:
        return True, sequence, _UNUSED, str(event.event_id)
    return False, 0, event.occurred_at, str(event.event_id)


@dataclass(frozen=True, order=True)
class _Set:
    """The latest event that set a model's production: its place, and to which release."""

    at: Place
    submission_id: uuid.UUID
    version: str = field(compare=False)


@dataclass(frozen=True)
class Unknown:
    """Something is in production for `model`, but not what: it was rolled back to a release whose
    deployment this book never saw (the topic's retention may have dropped it)."""

    model: str
    submission_id: uuid.UUID
    version: str

    @property
    def reason(self) -> str:
        return (f"production of {self.model} is unknown: it was rolled back to version {self.version} "
                f"(submission {self.submission_id}), whose deployment.succeeded this service never saw "
                "(the topic's retention may have dropped it)")


class ProductionBook:
    def __init__(self) -> None:
        self._releases: dict[uuid.UUID, Production] = {}  # every release seen deployed
        self._set: dict[str, _Set] = {}                    # per model
        self._revoked: dict[uuid.UUID, Place] = {}        # release -> its latest revocation
        self._anchor: dict[uuid.UUID, uuid.UUID | None] = {}  # release -> the one a person approved

    def apply(self, event: Event) -> bool:
        """Take `event` into account (other event types change nothing); True if the model's
        production changed."""
        match event:
            case DeploymentSucceeded():
                model = event.candidate.model
                before = self.get(model)
                self._releases[event.submission_id] = Production(
                    candidate=event.candidate, metrics=event.metrics, submission_id=event.submission_id)
                self._point(model, event, event.submission_id, event.candidate.version)
                self._anchor[event.submission_id] = (
                    event.submission_id if event.approval_mode == "human" else event.anchored_to)
            case DeploymentRolledBack():
                model = event.model
                before = self.get(model)
                self._point(model, event, event.to_submission_id, event.to_version)
            case DeploymentRevoked():
                model, revoked = event.candidate.model, event.submission_id
                before = self.get(model)
                self._revoked[revoked] = max(place(event), self._revoked.get(revoked, place(event)))
            case _:
                return False
        return self.get(model) != before

    def get(self, model: str) -> Production | Unknown | None:
        """The release in production for `model`; None when there is none (never deployed, or
        taken out by a revocation); Unknown when it was rolled back to a release this book never
        saw deployed."""
        current = self._set.get(model)
        if current is None:
            return None
        revoked_at = self._revoked.get(current.submission_id)
        if revoked_at is not None and revoked_at[:3] >= current.at[:3]:  # a tie: the revocation wins
            return None
        release = self._releases.get(current.submission_id)
        return release if release is not None else Unknown(model, current.submission_id, current.version)

    def known(self, model: str) -> Production | None:
        """The release in production when the book knows it: what figures are compared with and
        reviewers shown. None for both nothing and Unknown (use `get` to tell them apart)."""
        found = self.get(model)
        return found if isinstance(found, Production) else None

    def anchor(self, model: str) -> Production | None:
        """What a carried-forward approval compares with: the release in production if a person
        approved it, else the release a person approved that it was itself carried forward from;
        never the last carried-forward release, so small steps cannot drift far from what a person
        saw. None: no person approved anything behind production (or it was revoked)."""
        current = self.known(model)
        anchor_id = self._anchor.get(current.submission_id) if current is not None else None
        if anchor_id is None or anchor_id in self._revoked:
            return None
        return self._releases.get(anchor_id)

    def __len__(self) -> int:
        """How many models have something in production (known or not)."""
        return sum(1 for model in self._set if self.get(model) is not None)

    def to_snapshot(self) -> dict[str, Any]:
        """The whole book as JSON-able data (shared.snapshot): restoring it gives the same answers."""
        return {
            "version": SNAPSHOT_VERSION,
            "releases": {str(k): v.model_dump(mode="json") for k, v in self._releases.items()},
            "set": {m: [_place_out(s.at), str(s.submission_id), s.version] for m, s in self._set.items()},
            "revoked": {str(k): _place_out(v) for k, v in self._revoked.items()},
            "anchor": {str(k): None if v is None else str(v) for k, v in self._anchor.items()},
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Replace the book's content with a snapshot's; ValueError, naming the field, when the
        data is not what `to_snapshot` of this version wrote (then nothing is changed)."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"production snapshot version {data.get('version')!r}, this book reads {SNAPSHOT_VERSION}")
        field_name = "releases"
        try:
            releases = {uuid.UUID(k): Production.model_validate(v) for k, v in data["releases"].items()}
            field_name = "set"
            sets = {str(m): _Set(_place_in(v[0]), uuid.UUID(v[1]), str(v[2])) for m, v in data["set"].items()}
            field_name = "revoked"
            revoked = {uuid.UUID(k): _place_in(v) for k, v in data["revoked"].items()}
            field_name = "anchor"
            anchor = {uuid.UUID(k): None if v is None else uuid.UUID(v) for k, v in data["anchor"].items()}
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ValueError(f"production snapshot: {field_name!r} unreadable ({str(exc)[:200]})") from None
        self._releases, self._set, self._revoked, self._anchor = releases, sets, revoked, anchor

    def _point(self, model: str, event: Event, submission_id: uuid.UUID, version: str) -> None:
        candidate = _Set(place(event), submission_id, version)
        current = self._set.get(model)
        if current is None or candidate > current:
            self._set[model] = candidate


def _place_out(at: Place) -> list[Any]:
    return [at[0], at[1], at[2].isoformat(), at[3]]


def _place_in(data: Any) -> Place:
    numbered, sequence, occurred_at, event_id = data
    if type(numbered) is not bool or type(sequence) is not int:
        raise ValueError(f"a place is [numbered, sequence, occurred_at, event_id], not {str(data)[:80]}")
    when = datetime.fromisoformat(occurred_at)
    if when.tzinfo is None:
        raise ValueError(f"a place's time must carry its zone: {occurred_at!r}")
    return numbered, sequence, when, str(uuid.UUID(event_id))
