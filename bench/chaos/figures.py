"""The figures of a chaos run, from every topic (read to its end, with offsets) and the model store:
pure. Each figure is a list of findings, one line of evidence each (ids, versions, offsets).

    lost                    no end, and no review pending, after the drain
    stuck                   no end, a review still pending, after the drain; or an end only after it
    wrong outcome           an end the scenario does not expect; a deployment that moved production
                            backwards (superseded was due); superseded with no newer version deployed
    duplicate deployments   more than one deployment.succeeded event_id for a submission; a version
                            folder deployed by more than one submission
    duplicate events        an event_id more than once on a topic (informative: at-least-once)
    unapproved deployments  deployed (on the log or on disk) without an approval of that submission
                            and digest, or with its digest rejected before that approval
    backwards moves         production of a model, replayed from deployment.succeeded in offset
                            order, set to a submission submitted before the one it replaces (the
                            scenario asks for no rollback, so no move back is legitimate)
    store disagreements     the store on disk against the log (informative)
    dead letters            records on a dead-letter topic: the scenario's events are all valid, so
                            each one is a good event given up on (informative: lost or stuck says
                            whether it mattered)
    undecodable records     records on an event topic this code cannot decode (a contract newer
                            than the bench's, say): what they carry is missing from every figure

The end of a submission: its first deployment.succeeded (deployed), deployment.superseded
(superseded: approved, but a newer submission of the model was in production), deployment.failed
(failed) or rejecting review.decided (rejected).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.chaos.scenario import Scenario
from bench.chaos.tail import Rec
from shared import topics

MUST_BE_ZERO = ("lost", "stuck", "duplicate_deployments", "unapproved_deployments", "backwards_moves")


ENDS = {topics.DEPLOYMENT_SUCCEEDED: "deployed", topics.DEPLOYMENT_SUPERSEDED: "superseded",
        topics.DEPLOYMENT_FAILED: "failed"}


def ending(rec: Rec) -> str | None:
    """The end `rec` brings its submission to, if any."""
    if rec.event is None:
        return None
    if rec.topic == topics.REVIEW_DECIDED:
        return "rejected" if rec.event.outcome == "rejected" else None
    return ENDS.get(rec.topic)


@dataclass
class Figures:
    submissions: int
    outcomes: dict[str, int]
    ends: dict[str, str | None]  # submission id: its end, from the records read after the drain
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    wrong_outcome: list[str] = field(default_factory=list)
    duplicate_deployments: list[str] = field(default_factory=list)
    duplicate_events: list[str] = field(default_factory=list)
    unapproved_deployments: list[str] = field(default_factory=list)
    backwards_moves: list[str] = field(default_factory=list)
    store_disagreements: list[str] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)
    undecodable: list[str] = field(default_factory=list)

    def count(self, name: str) -> int:
        return len(getattr(self, name))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute(scenario: Scenario, ids: dict[int, str], records: list[Rec], store: dict[str, dict],
            pending: set[str], unended: set[str] | None = None) -> Figures:
    """`ids`: plan index to submission id, for what was published; `store`: model to
    {"production": version or None, "versions": {version: manifest}}; `pending`: submissions whose
    review the review-notifier still has open; `unended`: those with no end when the drain's
    deadline passed (one that ended after it, before `records` were read, is stuck all the same)."""
    log = _Log(records)
    ends = {sid: log.end(sid) for sid in ids.values()}
    f = Figures(submissions=len(ids), outcomes=dict(Counter(e[0] for e in ends.values() if e)),
                ends={sid: e[0] if e else None for sid, e in ends.items()})
    f.dead_letters = [f"{r.topic} offset {r.offset} ({r.subject}): {r.headers.get('dlq_reason', '?')}"
                      for r in records if r.topic.endswith(".dlq")]
    f.undecodable = [f"{r.topic} partition {r.partition} offset {r.offset} ({r.headers.get('ce_type')}, "
                     f"{r.subject})" for r in records if r.event is None and not r.topic.endswith(".dlq")]
    f.duplicate_events = [f"{t} {eid} x{n}" for (t, eid), n in log.copies.items() if n > 1]
    moves = log.production_moves()
    backwards = {(m["to"], m["event"]) for m in moves if m["backwards"]}
    f.backwards_moves = [f"{m['model']}: {m['from_version']} ({m['from']}) -> {m['to_version']} ({m['to']}), "
                         f"deployment.succeeded offset {m['offset']}" for m in moves if m["backwards"]]
    for planned in scenario.submissions:
        sid = ids.get(planned.n)
        if sid is None:
            continue  # never published (the driver says why)
        what = f"#{planned.n} {planned.kind} {planned.model} {planned.version} ({sid})"
        end = ends[sid]
        if end is None:
            trail = " > ".join(r.topic for r in log.about[sid]) or "nothing on any topic"
            (f.stuck if sid in pending else f.lost).append(f"{what}: {trail}")
            continue
        outcome, rec = end
        if sid in (unended or ()):
            f.stuck.append(f"{what}: {outcome} only after the drain's deadline")
        if outcome not in planned.expected:
            f.wrong_outcome.append(f"{what}: {outcome}, expected {'/'.join(sorted(planned.expected))}")
        elif outcome == "deployed" and (sid, rec.event.event_id) in backwards:
            f.wrong_outcome.append(f"{what}: deployed over a newer version, expected superseded")
        elif outcome == "superseded" and not log.newer_deployed(sid, rec):
            f.wrong_outcome.append(f"{what}: superseded, but no newer version of {planned.model} was deployed")
    f.duplicate_deployments = log.duplicate_deployments()
    f.unapproved_deployments = log.unapproved(store)
    f.store_disagreements = log.disagreements(store, moves)
    return f


class _Log:
    """The records, each event once (its first copy), indexed the ways the figures need."""

    def __init__(self, records: list[Rec]) -> None:
        self.copies: Counter[tuple[str, str]] = Counter()
        self.about: defaultdict[str, list[Rec]] = defaultdict(list)
        self.by_topic: defaultdict[str, list[Rec]] = defaultdict(list)
        for rec in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
            if rec.event is None:
                continue
            key = (rec.topic, str(rec.event.event_id))
            self.copies[key] += 1
            if self.copies[key] == 1:
                self.by_topic[rec.topic].append(rec)
                self.about[str(rec.event.submission_id)].append(rec)
        for recs in self.about.values():
            recs.sort(key=lambda r: r.event.occurred_at)
        # Submission order per model: model.submitted, in offset order (one partition per model).
        self.rank = {str(r.event.submission_id): i for i, r in enumerate(self.by_topic[topics.MODEL_SUBMITTED])}
        self.version = {str(r.event.submission_id): r.event.submission.candidate.version
                        for r in self.by_topic[topics.MODEL_SUBMITTED]}

    def end(self, sid: str) -> tuple[str, Rec] | None:
        return next(((e, r) for r in self.about[sid] if (e := ending(r)) is not None), None)

    def production_moves(self) -> list[dict]:
        """Every change of production per model, replaying deployment.succeeded in offset order."""
        current: dict[str, str] = {}
        moves = []
        for rec in self.by_topic[topics.DEPLOYMENT_SUCCEEDED]:  # one partition per model: offset order
            event = rec.event
            model, sid = event.candidate.model, str(event.submission_id)
            before = current.get(model)
            back = before is not None and self.rank.get(sid, -1) < self.rank.get(before, -1)
            moves.append({"model": model, "from": before, "to": sid, "event": event.event_id,
                          "from_version": self.version.get(before or ""), "to_version": self.version.get(sid),
                          "offset": rec.offset, "backwards": back})
            current[model] = sid
        return moves

    def newer_deployed(self, sid: str, end: Rec) -> bool:
        """A submission of the same model, submitted after `sid`, was deployed before its end."""
        model = end.event.candidate.model
        return any(r.event.candidate.model == model and self.rank.get(str(r.event.submission_id), -1) > self.rank[sid]
                   and r.event.occurred_at <= end.event.occurred_at
                   for r in self.by_topic[topics.DEPLOYMENT_SUCCEEDED])

    def duplicate_deployments(self) -> list[str]:
        found = []
        per_submission = Counter(str(r.event.submission_id) for r in self.by_topic[topics.DEPLOYMENT_SUCCEEDED])
        found += [f"{sid}: {n} deployment.succeeded event ids" for sid, n in per_submission.items() if n > 1]
        per_folder: defaultdict[str, set[str]] = defaultdict(set)
        for r in self.by_topic[topics.DEPLOYMENT_SUCCEEDED]:
            per_folder[r.event.location].add(str(r.event.submission_id))
        found += [f"{folder}: deployed by {sorted(sids)}" for folder, sids in per_folder.items() if len(sids) > 1]
        return found

    def unapproved(self, store: dict[str, dict]) -> list[str]:
        """Deployments (on the log, or folders on disk) without an approval of their submission and
        digest, or whose digest a final rejection banned before that approval."""
        approvals: defaultdict[tuple[str, str], list[Any]] = defaultdict(list)
        banned: dict[str, Any] = {}
        for r in self.by_topic[topics.REVIEW_DECIDED]:
            e = r.event
            digest = e.candidate.artifact_sha256
            if e.outcome == "approved":
                approvals[(str(e.submission_id), digest)].append(e)
            elif e.final_for_artifact and (digest not in banned or e.occurred_at < banned[digest].occurred_at):
                banned[digest] = e

        def why_not(sid: str, digest: str) -> str | None:
            mine = approvals.get((sid, digest))
            if not mine:
                return "no approval of this submission and digest"
            first = min(a.occurred_at for a in mine)
            ban = banned.get(digest)
            if ban is not None and ban.occurred_at < first:
                return f"digest rejected before the approval, by {ban.submission_id} ({ban.decided_by})"
            return None

        found: dict[str, str] = {}
        for r in self.by_topic[topics.DEPLOYMENT_SUCCEEDED]:
            sid, digest = str(r.event.submission_id), r.event.candidate.artifact_sha256
            if (why := why_not(sid, digest)) is not None:
                found.setdefault(sid, f"{sid} deployment.succeeded: {why}")
        for model, state in store.items():
            for version, manifest in state["versions"].items():
                sid, digest = manifest.get("submission_id", "?"), manifest.get("artifact_sha256", "?")
                if (why := why_not(sid, digest)) is not None:
                    found.setdefault(sid, f"{sid} on disk as {model}/{version}: {why}")
        return list(found.values())

    def disagreements(self, store: dict[str, dict], moves: list[dict]) -> list[str]:
        found = []
        last = {m["model"]: m["to_version"] for m in moves}
        for model in sorted(set(last) | set(store)):
            on_disk = store.get(model, {}).get("production")
            if on_disk != last.get(model):
                found.append(f"{model}: PRODUCTION on disk is {on_disk}, the log says {last.get(model)}")
        deployed = {(m["model"], m["to_version"]) for m in moves}
        for model, state in store.items():
            found += [f"{model}/{v}: installed, never reported deployed" for v in state["versions"]
                      if (model, v) not in deployed]
        found += [f"{m}/{v}: reported deployed, not on disk" for m, v in sorted(deployed)
                  if v not in store.get(m, {}).get("versions", {})]
        return found
