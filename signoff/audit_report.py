"""How `signoff audit` answers read as text: one line per event, with when, what, who signed it,
and, for a decision, the whole policy digest and every vote (the timeline's short forms abbreviate
them; an audit does not).

Much of what is printed was written by a pipeline (submitter, data_version, training_run_id, the
reasons people and operators type): every line goes out through `safe`, which shows control
characters, line and paragraph separators and bidirectional controls as \\uXXXX, so no field can
start a line of its own, move the cursor, or reorder what a terminal shows. CSV cells go through
`csv_cell`: one that a spreadsheet would take for a formula is prefixed with '.
"""

from __future__ import annotations

import re

from shared.audit.views import Entry, InProduction, ModelAudit, PolicyTexts, Release
from shared.events import ChecksCompleted, ModelSubmitted, ReviewDecided
from signoff.timeline import describe

_INDENT = " " * 40
# C0 controls (newline and tab included), DEL, C1, U+2028/2029, and the bidi controls (ALM, LRM,
# RLM, the embeddings and overrides, the isolates).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def safe(text: str) -> str:
    """`text` with every character that could forge or hide output shown as \\uXXXX."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def csv_cell(value: object) -> object:
    """A CSV cell no spreadsheet evaluates: text starting with = + - @ tab or CR gets a leading '."""
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA) else value


def when(entry: Entry) -> str:
    return entry.event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def entry_lines(entry: Entry) -> list[str]:
    return [safe(line) for line in _entry_lines(entry)]


def _entry_lines(entry: Entry) -> list[str]:
    event = entry.event
    head = f"  {when(entry)}  {event.topic:<22}  "
    signed = f"  [signed by {entry.signer}]"
    match event:
        case ModelSubmitted(submission=s):
            c = s.candidate
            return [f"{head}{c.version} by {s.submitter}{signed}",
                    f"{_INDENT}sha256 {c.artifact_sha256}, data {c.data_version}, commit {c.code_commit}"
                    + (f", run {s.training_run_id}" if s.training_run_id else "")]
        case ReviewDecided():
            return [f"{head}{event.outcome} ({event.mode}) by {event.decided_by}: {event.reason}{signed}",
                    *decision_details(event)]
        case ChecksCompleted(results=results):  # describe() puts each failure on a line of its own
            return [f"{head}" + ", ".join(f"{r.name} {'ok' if r.passed else 'FAILED'}" for r in results) + signed,
                    *(f"{_INDENT}{r.name}: {r.message}" for r in results if not r.passed)]
    sequence = getattr(event, "sequence", None)
    return [f"{head}{describe(event)}" + (f" (sequence {sequence})" if sequence else "") + signed]


def decision_details(event: ReviewDecided) -> list[str]:
    p = event.policy
    out = [f"{_INDENT}policy {p.name}, rule {p.rule}, digest {p.digest}"]
    if event.break_glass:
        out.append(f"{_INDENT}break-glass approval")
    if event.anchored_to is not None:
        out.append(f"{_INDENT}carried forward from submission {event.anchored_to}")
    if event.cites is not None:
        out.append(f"{_INDENT}follows decision {event.cites}")
    for vote in event.votes:
        at = vote.at.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(f"{_INDENT}vote: {vote.approver} {vote.decision}s via {vote.channel} at {at}"
                   + (" (break-glass)" if vote.break_glass else "") + f": {vote.reason}")
    return out


def release_lines(release: Release) -> list[str]:
    out = [f"{release.version or '(version unknown)'}  submission {release.submission_id}"]
    if release.submitted is None:
        out.append("  (its model.submitted is not in the index)")
    entries = [e for e in (release.submitted,) if e is not None] + release.checks + release.reviews + \
        release.decisions + release.revocations + release.deployments
    for entry in sorted(entries, key=lambda e: e.event.occurred_at):
        out += entry_lines(entry)
    for entry in release.disputed:
        out += [f"  DISPUTED: another model.submitted claims this submission (topic {entry.topic} partition "
                f"{entry.partition} offset {entry.offset}); its checks do not cite it:", *entry_lines(entry)]
    return [safe(line) for line in out]


def audit_lines(audit: ModelAudit) -> list[str]:
    return [safe(line) for line in _audit_lines(audit)]


def _audit_lines(audit: ModelAudit) -> list[str]:
    out = [f"{audit.model}: {len(audit.releases)} release(s), {len(audit.operations)} rollback(s)"]
    for release in audit.releases:
        out += ["", *release_lines(release)]
    for op in audit.operations:
        out += ["", f"rollback  operation {op.operation_id}"]
        if op.request is None:
            out.append("  (its rollback.requested is not in the index)")
        for entry in ([op.request] if op.request else []) + op.outcomes:
            out += entry_lines(entry)
    return out


def production_lines(answer: InProduction) -> list[str]:
    return [safe(line) for line in _production_lines(answer)]


def _production_lines(answer: InProduction) -> list[str]:
    at = answer.at.isoformat().replace("+00:00", "Z")
    if answer.state == "nothing":
        out = [f"{answer.model} at {at}: nothing in production ({answer.note})"]
        if answer.taken_out_by is not None:
            out += entry_lines(answer.taken_out_by)
        return out
    out = [f"{answer.model} at {at}: version {answer.version} (submission {answer.submission_id})"]
    if answer.state == "unknown":
        out.append(f"  UNKNOWN release: {answer.note}")
    sections = (("put in production by:", answer.set_by), ("asked for by:", answer.rollback_request),
                ("approved by:", answer.approval), ("first deployed:", answer.deployment),
                ("submitted:", answer.submitted))
    shown: set[object] = set()
    for title, entry in sections:
        if entry is not None and entry.event.event_id not in shown:
            shown.add(entry.event.event_id)
            out += [title, *entry_lines(entry)]
    if answer.note and answer.state == "deployed":
        out.append(f"  note: {answer.note}")
    return out


def policy_lines(texts: PolicyTexts) -> list[str]:
    """The texts line by line (their newlines are theirs; anything else unsafe is escaped)."""
    return [safe(line) for line in [f"policy digest {texts.digest}", "--- workflow ---",
                                    *texts.workflow.rstrip("\n").split("\n"), "--- groups.yaml ---",
                                    *(texts.groups.rstrip("\n") or "(none)").split("\n")]]
