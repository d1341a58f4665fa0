"""The audit index against a writer who games it: an event_id or a submission_id claimed by
someone else's record, a human approval signed by the policy's key, text that forges report
lines or spreadsheet formulas, a topic deleted and created again; and an index that one bad
record from any pipeline does not fail for ever (refused records about other models, and
acknowledged ones, do not change the exit code)."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from typer.testing import CliRunner

from shared import codec, topics
from shared.audit import feed, queries
from shared.audit.index import Index, IndexTooOld
from shared.events import DeploymentSucceeded, ModelSubmitted, ReviewDecided, Vote
from signoff import audit_report
from signoff.cli import app
from tests.audit_history import T0, History, policy
from tests.unit import factories as f
from tests.unit.audit_log import Log, index, keyring

MODEL = "fraud-detector"


def test_an_event_id_claimed_first_on_another_topic_hides_nothing_and_is_a_conflict(tmp_path: Path) -> None:
    history = History(MODEL)
    history.release("1.0", T0)
    two = history.release("2.0", T0 + timedelta(hours=1))
    # A pipeline computes the deployment's coming id (uuid5 of the approval) and claims it first.
    stolen = uuid.uuid5(two.decision.event_id, f"{DeploymentSucceeded.type}:")
    assert stolen == two.deployed.event_id
    decoy = ModelSubmitted(event_id=stolen, submission_id=uuid.uuid4(), occurred_at=T0,
                           submission=f.submission(f.candidate(model="sandbox", version="0.1"), submitter="x"))
    log = Log()
    at = history.events.index(two.deployed)
    log.write(*history.events[:at])
    log.write(decoy, by="pipeline-test")
    log.write(*history.events[at:])
    idx = index(tmp_path)
    log.feed(idx)
    answer = queries.production_at(idx, MODEL, T0 + timedelta(hours=5))
    assert (answer.state, answer.version) == ("deployed", "2.0")
    assert answer.deployment is not None and answer.deployment.topic == topics.DEPLOYMENT_SUCCEEDED
    [problem] = idx.health(MODEL).problems
    assert problem.kind == "conflict" and {problem.key, problem.other_key} == {MODEL, "sandbox"}
    assert idx.health(MODEL).blocking and idx.health("sandbox").blocking


def test_the_same_id_again_is_a_redelivery_only_if_signer_and_body_agree_up_to_a_re_emit(tmp_path: Path) -> None:
    history = History(MODEL)
    one = history.release("1.0", T0)
    log = Log()
    log.write(*history.events)
    idx = index(tmp_path)
    log.feed(idx)
    # The deployer re-emitting after a crash: a new clock reading and sequence number, same id.
    again = one.deployed.model_copy(update={"occurred_at": T0 + timedelta(hours=1), "sequence": 7})
    log.write(again)
    assert (log.feed(idx).duplicates, idx.health().clean) == (1, True)
    # Another signer, or another body, under the same id on the same topic: the first copy stays.
    forged = one.submitted.model_copy(update={"submission": f.submission(one.submitted.submission.candidate,
                                                                         submitter="mallory")})
    log.append(codec.encode(forged, "/x"))  # unsigned
    log.write(forged)                       # signed by the same pipeline, another body
    progress = log.feed(idx)
    assert (progress.problems, progress.duplicates, progress.indexed) == (2, 0, 0)
    reasons = [p.reason for p in idx.health(MODEL).problems]
    assert "its signer (unsigned, the first pipeline-test)" in reasons[0] and "its fields submission" in reasons[1]
    first = queries.releases(idx, MODEL).releases[0].submitted
    assert first is not None and isinstance(first.event, ModelSubmitted) and first.event.submission.submitter == "carol"


def test_a_release_s_submission_is_the_one_its_checks_cite_and_other_claims_are_disputed(tmp_path: Path) -> None:
    history = History(MODEL)
    one = history.release("1.0", T0)
    sid, old = one.submitted.submission_id, datetime(2000, 1, 1, tzinfo=UTC)
    decoys = [ModelSubmitted(submission_id=sid, occurred_at=old, submission=f.submission(
        f.candidate(model=model, version="1.0", artifact_sha256=c * 64), submitter="alice"))
        for model, c in (("sandbox", "e"), (MODEL, "d"))]
    log = Log()
    log.write(*history.events)
    for decoy in decoys:
        log.append(codec.encode(decoy, "/x"))
    idx = index(tmp_path)
    log.feed(idx)
    [release] = queries.releases(idx, MODEL).releases
    assert release.submitted is not None and release.submitted.event == one.submitted
    assert [d.event.event_id for d in release.disputed] == [decoys[1].event_id]
    assert "DISPUTED" in "\n".join(audit_report.release_lines(release))
    answer = queries.production_at(idx, MODEL, T0 + timedelta(hours=1))
    assert answer.submitted is not None and answer.submitted.event == one.submitted
    problems = idx.health(MODEL).problems
    assert [p.kind for p in problems] == ["conflict", "conflict"]
    assert "submission_id" in problems[0].reason


def test_an_approval_signed_by_who_may_not_make_it_is_untrusted_not_a_fact(tmp_path: Path) -> None:
    history = History(MODEL)
    one = history.release("1.0", T0)
    vote = Vote(approver="alice", decision="approve", reason="ok", channel="http", at=T0 + timedelta(hours=1))
    forged = ReviewDecided(submission_id=one.submitted.submission_id, causation_id=one.checks.event_id,
                           candidate=one.decision.candidate, outcome="approved", mode="human", decided_by="alice",
                           reason="ok", votes=(vote,), policy=policy("risk_approval"),
                           checks_event_id=one.checks.event_id, occurred_at=T0 + timedelta(hours=1))
    automatic = forged.model_copy(update={"event_id": uuid.uuid4(), "mode": "automatic", "votes": ()})
    log = Log()
    log.write(*history.events)
    log.write(forged, by="policy")                # a stolen policy key
    log.write(automatic, by="review-notifier")
    idx = index(tmp_path)
    assert log.feed(idx).problems == 2
    assert [d.event.event_id for d in queries.releases(idx, MODEL).releases[0].decisions] == [one.decision.event_id]
    assert [p.kind for p in idx.health(MODEL).problems] == ["untrusted", "untrusted"]
    assert "is the review-notifier's to make" in idx.health(MODEL).problems[0].reason


FORGED = ("carol  [signed by pipeline-test (pipeline)]\n  2026-11-02T12:02:00.00Z  review.decided  approved "
          "(human) by alice\u2028\u202e\x85\x1b[8m")


def test_pipeline_text_cannot_forge_report_lines_or_spreadsheet_formulas(tmp_path: Path) -> None:
    history = History(MODEL)
    history.release("1.0", T0)
    evil = ModelSubmitted(submission_id=uuid.uuid4(), occurred_at=T0 + timedelta(hours=3),
                          submission=f.submission(f.candidate(model=MODEL, version="9.9"), submitter=FORGED))
    formula = ModelSubmitted(submission_id=uuid.uuid4(), occurred_at=T0 + timedelta(hours=4), submission=f.submission(
        f.candidate(model=MODEL, version="9.8"), submitter='=HYPERLINK("https://evil.example/","carol")'))
    log = Log()
    log.write(*history.events, evil, formula)
    idx = index(tmp_path)
    log.feed(idx)
    lines = audit_report.audit_lines(queries.releases(idx, MODEL))
    assert not any(c in line for line in lines for c in "\n\x1b\x85\u2028\u202e")
    assert not any(line.lstrip().startswith("2026-11-02T12:02:00.00Z") for line in lines)
    assert r"\u000a  2026-11-02T12:02" in "\n".join(lines) and r"\u202e\u0085\u001b[8m" in "\n".join(lines)
    idx.close()
    result = CliRunner().invoke(app, ["audit", "export", "--since", "2026-11-02T12:30:00Z", "--format", "csv",
                                      "--offline"], env={"SIGNOFF_AUDIT_INDEX": str(tmp_path / "audit.sqlite")})
    [row] = list(csv.DictReader(io.StringIO(result.stdout)))
    assert row["actor"] == "'=HYPERLINK(\"https://evil.example/\",\"carol\")"
    assert row["event"].startswith("{")


class FakeConsumer:
    """What catch_up asks of aiokafka's consumer, over a `Log` (whose topics an admin may delete)."""

    log: Log

    def __init__(self, **_: object) -> None:
        self.pos: dict[TopicPartition, int] = {}

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.log.ends[(tp.topic, tp.partition)] for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.log.start(tp.topic, tp.partition) for tp in tps}

    def assign(self, tps: list[TopicPartition]) -> None: ...

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos[tp] = offset

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0) -> dict:
        out = {}
        for tp in tps:
            records = [r for r in self.log.partitions[(tp.topic, tp.partition)] if r.offset >= self.pos[tp]]
            if records:
                out[tp], self.pos[tp] = records, records[-1].offset + 1
        return out

    async def position(self, tp: TopicPartition) -> int:
        return self.pos[tp]


class Access:
    def client_kwargs(self) -> dict:
        return {}


@pytest.mark.parametrize("grown", [4, 1])  # the new log past the stored offset, or below it
def test_a_topic_deleted_and_created_again_is_a_gap_and_its_new_log_is_read_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grown: int) -> None:
    log = Log()
    monkeypatch.setattr(FakeConsumer, "log", log, raising=False)
    monkeypatch.setattr(feed, "AIOKafkaConsumer", FakeConsumer)
    old = History(MODEL)
    for i in range(3):
        old.release(f"1.{i}", T0 + timedelta(hours=i))
    log.write(*old.events)
    idx, ring, on = index(tmp_path), keyring(), (topics.DEPLOYMENT_SUCCEEDED,)
    asyncio.run(feed.catch_up(Access(), ring, idx, on))  # type: ignore[arg-type]
    assert idx.next_offset(topics.DEPLOYMENT_SUCCEEDED, 0) == 3
    log.partitions[(topics.DEPLOYMENT_SUCCEEDED, 0)], log.ends[(topics.DEPLOYMENT_SUCCEEDED, 0)] = [], 0
    new = History("payments")
    for i in range(grown):
        new.release(f"2.{i}", T0 + timedelta(days=1, hours=i))
    log.write(*(e for e in new.events if e.topic == topics.DEPLOYMENT_SUCCEEDED))
    progress = asyncio.run(feed.catch_up(Access(), ring, idx, on))  # type: ignore[arg-type]
    assert progress.gaps == 1 and progress.indexed == grown
    [gap] = idx.health().gaps
    assert (gap.first_offset, gap.last_offset) == (3, -1) and "deleted and created again" in gap.line()
    assert len(idx.entries("payments")) == grown and len(idx.entries(MODEL)) == 3  # the old events stay


def audit(env: dict[str, str], *args: str):
    return CliRunner().invoke(app, ["audit", *args], env=env)


def test_a_refused_record_of_another_model_warns_without_failing_and_acknowledged_ones_stop_blocking(
        tmp_path: Path) -> None:
    history = History("churn")
    history.release("1.0", T0)
    log = Log()
    log.write(*history.events)
    bad = codec.encode(f.submitted(f.submission(f.candidate(model="zzz"))), "/x")
    log.append(bad._replace(headers={**bad.headers, "signoff_kid": "A" * 22, "signoff_sig": "A" * 86}))
    idx = index(tmp_path)
    log.feed(idx)
    with idx.transaction():
        idx.add_gap(topics.REVIEW_ESCALATED, 0, 0, 4, "deleted before they were indexed")
    idx.close()
    env = {"SIGNOFF_AUDIT_INDEX": str(tmp_path / "audit.sqlite")}

    result = audit(env, "churn", "--offline")
    assert result.exit_code == 6 and "[G1]" in result.stderr  # a gap may hide anything: it blocks
    assert audit(env, "ack", "G1", "--reason", "topic emptied on purpose, ticket OPS-7").exit_code == 0
    result = audit(env, "churn", "--offline")
    assert result.exit_code == 0, result.stderr
    assert "WARNING: untrusted record in model.submitted partition 0 offset 1 (key 'zzz')" in result.stderr
    assert "[P1]" in result.stderr and "are not about churn" in result.stderr
    assert "acknowledged: [G1] by " in result.stderr and "ticket OPS-7" in result.stderr
    assert audit(env, "churn", "--offline", "--strict").exit_code == 6
    assert audit(env, "export", "--since", "2026-11-01T00:00:00Z", "--offline").exit_code == 0
    assert audit(env, "export", "--since", "2026-11-01T00:00:00Z", "--offline", "--strict").exit_code == 6

    assert audit(env, "ack", "P1", "--reason", "a\x1bb").exit_code == 1          # refused: control characters
    assert "no problem P9" in audit(env, "ack", "P9", "--reason", "x").stderr
    assert audit(env, "ack", "P1", "--reason", "bad key of a test pipeline").exit_code == 0
    assert "acknowledged already" in audit(env, "ack", "P1", "--reason", "again").stderr
    strict = audit(env, "churn", "--offline", "--strict")
    assert strict.exit_code == 0 and "WARNING" not in strict.stderr
    assert "acknowledged: [P1] by " in strict.stderr and "bad key of a test pipeline" in strict.stderr


def test_an_index_of_the_earlier_schema_is_refused_naming_the_fix(tmp_path: Path) -> None:
    import sqlite3
    db = sqlite3.connect(tmp_path / "audit.sqlite")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE)")
    db.close()
    with pytest.raises(IndexTooOld, match="delete it"):
        Index.open(tmp_path / "audit.sqlite")
