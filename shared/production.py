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

Bounded: per model the book keeps the KEEP + 1 newest releases (by the order above: the release in
production and the KEEP before it, in the usual life), and, while they are, the release in
production and its anchor even when older; every other release is dropped, with its revocation.
So what a service holds, snapshots and restores grows with the number of models, not with history.
The newest KEEP + 1 of a set are a function of the set, and a release once outside them (older
than the KEEP + 1-th newest seen, the model's `horizon`) can never be among them again: it is
refused when it arrives (late, or redelivered), never admitted back. Hence, in any arrival order,
`get` answers exactly what the whole history says, or `Unknown` when production is a release the
book does not keep (a rollback further back than KEEP releases: fail-closed, never None or another
release), and `anchor` answers exactly or None (a person reviews). A revocation is kept as long as
its release is, and, for a release not seen yet, until its own place falls behind the horizon: the
deployer numbers a revocation after the deployment it revokes, so that release would be refused.

Trust: only events signed by the deployer reach `apply` (the followers and the start-up replay
verify signatures, shared.signing); what they carry is not second-guessed here.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, StrictBool, StrictInt, StringConstraints, ValidationError

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
SNAPSHOT_VERSION = 2  # 2: bounded (keep, deployed_at, revoked with its model)

# Per model, how many releases the book keeps besides the newest (in the usual life: the release in
# production and the KEEP before it, the ones a rollback goes back to). A rollback further back
# leaves production Unknown (fail-closed). 51 releases of 200 models: a 5.5 MB snapshot
# (python -m bench.snapshot_save).
KEEP = 50

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
    def __init__(self, keep: int | None = KEEP) -> None:
        """`keep`: releases kept per model besides the newest (KEEP; smaller in tests); None keeps
        every one (a one-off query over a history read anyway: shared.audit.queries)."""
        if keep is not None and keep < 0:
            raise ValueError(f"keep must be 0 or more, not {keep}")
        self.keep = keep
        self._releases: dict[uuid.UUID, Production] = {}  # the releases kept (see the module)
        self._deployed_at: dict[uuid.UUID, Place] = {}    # release -> its deployment.succeeded's place
        self._models: dict[str, list[tuple[Place, uuid.UUID]]] = {}  # model -> its releases kept, oldest first
        self._set: dict[str, _Set] = {}                    # per model
        self._revoked: dict[uuid.UUID, Place] = {}        # release -> its latest revocation
        self._revoked_model: dict[uuid.UUID, str] = {}    # release in _revoked -> the revocation's model
        self._revoked_of: dict[str, set[uuid.UUID]] = {}  # model -> the releases in _revoked
        self._anchor: dict[uuid.UUID, uuid.UUID | None] = {}  # release -> the one a person approved
        # A kept release as `to_snapshot` writes it (its id and JSON data), made once: releases do
        # not change, and a periodic snapshot is encoded on the event loop (shared.replay).
        self._encoded: dict[uuid.UUID, tuple[str, dict[str, Any]]] = {}

    def apply(self, event: Event) -> bool:
        """Take `event` into account (other event types change nothing); True if the model's
        production changed."""
        match event:
            case DeploymentSucceeded():
                model = event.candidate.model
                before = self.get(model)
                self._point(model, event, event.submission_id, event.candidate.version)
                self._admit(model, event)
            case DeploymentRolledBack():
                model = event.model
                before = self.get(model)
                self._point(model, event, event.to_submission_id, event.to_version)
            case DeploymentRevoked():
                model, revoked = event.candidate.model, event.submission_id
                before = self.get(model)
                self._revoked[revoked] = max(place(event), self._revoked.get(revoked, place(event)))
                self._revoked_of.setdefault(self._revoked_model.setdefault(revoked, model), set()).add(revoked)
            case _:
                return False
        self._prune(model)
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
            "keep": self.keep,
            "releases": dict(self._encoded_release(k, v) for k, v in self._releases.items()),
            "deployed_at": {str(k): _place_out(v) for k, v in self._deployed_at.items()},
            "set": {m: [_place_out(s.at), str(s.submission_id), s.version] for m, s in self._set.items()},
            "revoked": {str(k): [self._revoked_model[k], _place_out(v)] for k, v in self._revoked.items()},
            "anchor": {str(k): None if v is None else str(v) for k, v in self._anchor.items()},
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Replace the book's content with a snapshot's; ValueError, naming the field, when the
        data is not what `to_snapshot` of this version (and this `keep`) wrote (then nothing is
        changed). Another `keep` is refused: a larger one would admit releases this book refused."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"production snapshot version {data.get('version')!r}, this book reads {SNAPSHOT_VERSION}")
        if data.get("keep") != self.keep:
            raise ValueError(f"production snapshot keeps {data.get('keep')!r} releases per model, "
                             f"this book {self.keep}")
        try:
            found = _Snapshot.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(map(str, error["loc"]))
            raise ValueError(f"production snapshot: {where!r} unreadable ({error['msg'][:200]})") from None
        releases, deployed_at, anchor = found.releases, found.deployed_at, found.anchor
        sets = {m: _Set(*v) for m, v in found.set.items()}
        revoked = found.revoked
        for field_name, ids in (("deployed_at", deployed_at), ("anchor", anchor)):
            if ids.keys() != releases.keys():
                raise ValueError(f"production snapshot: {field_name!r} unreadable (not the releases' ids)")
        self._releases, self._deployed_at, self._set, self._anchor = releases, deployed_at, sets, anchor
        self._encoded = {}
        self._models, self._revoked_of = {}, {}
        for release_id, release in releases.items():
            self._models.setdefault(release.candidate.model, []).append((deployed_at[release_id], release_id))
        for kept in self._models.values():
            kept.sort()
        self._revoked = {k: at for k, (_, at) in revoked.items()}
        self._revoked_model = {k: model for k, (model, _) in revoked.items()}
        for release_id, (model, _) in revoked.items():
            self._revoked_of.setdefault(model, set()).add(release_id)
        for model in list(self._models):
            self._prune(model)

    def _encoded_release(self, release_id: uuid.UUID, release: Production) -> tuple[str, dict[str, Any]]:
        """Shared with every snapshot since: read-only, as json.dumps reads it."""
        found = self._encoded.get(release_id)
        if found is None:
            found = self._encoded[release_id] = (str(release_id), release.model_dump(mode="json"))
        return found

    def _point(self, model: str, event: Event, submission_id: uuid.UUID, version: str) -> None:
        candidate = _Set(place(event), submission_id, version)
        current = self._set.get(model)
        if current is None or candidate > current:
            self._set[model] = candidate

    def _admit(self, model: str, event: DeploymentSucceeded) -> None:
        """Keep the release `event` deployed unless it is behind the model's horizon (the module:
        a release once behind it is never kept again, so its revocation may have been dropped)."""
        release_id, at = event.submission_id, place(event)
        if release_id in self._releases:  # redelivered (or re-emitted: the same release)
            known = self._deployed_at[release_id]
            if at > known:
                kept = self._models[self._releases[release_id].candidate.model]
                kept.remove((known, release_id))
                bisect.insort(kept, (at, release_id))
                self._deployed_at[release_id] = at
            return
        horizon = self._horizon(model)
        if horizon is not None and at < horizon:
            return  # _prune drops a revocation of it
        self._releases[release_id] = Production(
            candidate=event.candidate, metrics=event.metrics, submission_id=release_id)
        self._deployed_at[release_id] = at
        self._anchor[release_id] = release_id if event.approval_mode == "human" else event.anchored_to
        bisect.insort(self._models.setdefault(model, []), (at, release_id))

    def _horizon(self, model: str) -> Place | None:
        """The place of the model's KEEP + 1-th newest release (None while fewer were seen): a
        release deployed before it is not kept. Only rises: the newest are never dropped."""
        kept = self._models.get(model, [])
        return kept[-self.keep - 1][0] if self.keep is not None and len(kept) > self.keep else None

    def _pinned(self, model: str) -> set[uuid.UUID]:
        """Kept while they are what `get` and `anchor` answer, however old."""
        current = self._set.get(model)
        if current is None or current.submission_id not in self._releases:
            return set()
        anchor_id = self._anchor.get(current.submission_id)
        return {current.submission_id} | ({anchor_id} if anchor_id is not None else set())

    def _prune(self, model: str) -> None:
        """Drop the model's releases behind its horizon (but the pinned ones), and the revocations
        of releases not kept that are behind it too (their release, deployed before them, is)."""
        horizon = self._horizon(model)
        if horizon is None:
            return
        kept, pinned = self._models[model], self._pinned(model)
        if self.keep is not None and len(kept) > self.keep + 1:
            for at, release_id in kept[:-self.keep - 1]:
                if release_id not in pinned:
                    kept.remove((at, release_id))
                    del self._releases[release_id], self._deployed_at[release_id], self._anchor[release_id]
                    self._encoded.pop(release_id, None)
                    self._drop_revocation(release_id)
        for release_id in [r for r in self._revoked_of.get(model, ())
                           if r not in self._releases and self._revoked[r] < horizon]:
            self._drop_revocation(release_id)

    def _drop_revocation(self, release_id: uuid.UUID) -> None:
        model = self._revoked_model.pop(release_id, None)
        if model is not None:
            del self._revoked[release_id]
            self._revoked_of[model].discard(release_id)


def _place_out(at: Place) -> list[Any]:
    return [at[0], at[1], at[2].isoformat(), at[3]]


# What `restore` reads, checked in one pass by pydantic (its UUID and time parsers, not Python's,
# are most of a large book's restore time). An event id is kept as `place` writes it: a UUID's
# canonical text (anything else was not written by `to_snapshot`).
_EventId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
_Place = tuple[StrictBool, StrictInt, AwareDatetime, _EventId]


class _Snapshot(BaseModel):
    releases: dict[uuid.UUID, Production]
    deployed_at: dict[uuid.UUID, _Place]
    set: dict[str, tuple[_Place, uuid.UUID, str]]
    revoked: dict[uuid.UUID, tuple[str, _Place]]
    anchor: dict[uuid.UUID, uuid.UUID | None]

