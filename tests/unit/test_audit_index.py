"""The audit index as records reach it: only what verifies is a fact, each record once, offsets
committed with the rows, and whatever is missing said (gaps, problems, open chain links)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from shared import codec, signing, topics
from shared.audit.index import UNSIGNED
from shared.audit.ingest import ingest
from shared.events import DeploymentSucceeded, PolicyDocuments
from tests import keys
from tests.audit_history import T0, History, policy, without_texts
from tests.unit.audit_log import Log, index, keyring


def test_every_verified_event_is_indexed_once_with_its_signer(tmp_path: Path) -> None:
    log, history = Log(), History("churn")
    release = history.release("1.0", T0)
    log.write(*history.events)
    idx = index(tmp_path)
    first = log.feed(idx)
    assert (first.read, first.indexed, first.problems, first.gaps) == (len(history.events), len(history.events), 0, 0)
    again = log.feed(idx)  # nothing new: nothing read
    assert (again.read, again.indexed) == (0, 0)
    entry = idx.entry(release.decision.event_id, topics.REVIEW_DECIDED)
    assert entry is not None and entry.event == without_texts(release.decision)  # texts kept apart, by digest
    assert (entry.signer.name, entry.signer.role) == ("review-notifier", "review-notifier")
    assert entry.signer.kid == keys.signer("review-notifier").kid
    assert idx.count() == len(history.events)
    assert idx.health().clean


def test_a_redelivered_event_at_a_new_offset_is_a_duplicate_not_a_second_row(tmp_path: Path) -> None:
    log, history = Log(), History("churn")
    release = history.release("1.0", T0)
    log.write(*history.events)
    idx = index(tmp_path)
    log.feed(idx)
    log.write(release.deployed)  # the deployer re-emits after a crash: same event_id
    progress = log.feed(idx)
    assert (progress.read, progress.duplicates, progress.indexed) == (1, 1, 0)
    assert idx.count() == len(history.events)


def test_an_unsigned_submission_is_indexed_as_unsigned(tmp_path: Path) -> None:
    history = History("churn")
    history.release("1.0", T0)
    log = Log()
    log.append(codec.encode(history.events[0], "/test"))  # no signature
    idx = index(tmp_path)
    assert log.feed(idx).indexed == 1
    entry = idx.entry(history.events[0].event_id, topics.MODEL_SUBMITTED)
    assert entry is not None and entry.signer.name == UNSIGNED and entry.signer.kid is None


def test_forged_and_wrongly_signed_records_are_problems_never_events(tmp_path: Path) -> None:
    history = History("churn")
    release = history.release("1.0", T0)
    genuine = keys.signed(release.decision)
    forged = genuine._replace(value=genuine.value.replace(b"alice", b"mallo"))  # changed after signing
    by_pipeline = keys.signed(release.deployed, by="pipeline-test")  # a deployment only the deployer makes
    log = Log()
    log.append(forged)
    log.append(by_pipeline)
    log.append(codec.Record(topics.DEPLOYMENT_SUCCEEDED, b"churn", b"{not json", {}))
    idx = index(tmp_path)
    progress = log.feed(idx)
    assert (progress.problems, progress.indexed) == (3, 0)
    assert idx.count() == 0
    problems = {(p.topic, p.offset): p for p in idx.health().problems}
    assert problems[(topics.REVIEW_DECIDED, 0)].kind == "untrusted"
    assert "signature does not verify" in problems[(topics.REVIEW_DECIDED, 0)].reason
    assert "pipeline-test (role pipeline)" in problems[(topics.DEPLOYMENT_SUCCEEDED, 0)].reason
    assert problems[(topics.DEPLOYMENT_SUCCEEDED, 1)].kind == "untrusted"  # unsigned comes first
    assert problems[(topics.DEPLOYMENT_SUCCEEDED, 0)].key == "churn"
    assert not idx.health().clean


def test_a_signed_record_that_does_not_decode_is_a_problem(tmp_path: Path) -> None:
    record = keys.sign(codec.Record(topics.REVIEW_DECIDED, b"churn", b'{"event_id": 1}',
                                    {"ce_id": "x", "ce_type": "signoff.review.decided"}))
    log = Log()
    log.append(record)
    idx = index(tmp_path)
    assert log.feed(idx).problems == 1
    [problem] = idx.health().problems
    assert problem.kind == "undecodable" and "occurred_at" in problem.reason


def test_records_deleted_before_they_were_indexed_are_a_gap_on_a_first_index_and_later(tmp_path: Path) -> None:
    log, history = Log(), History("churn")
    history.release("1.0", T0)
    history.release("2.0", T0 + timedelta(hours=1))
    log.write(*history.events)
    log.delete_up_to(topics.MODEL_SUBMITTED, 1)  # the first index finds the log starting at 1
    idx = index(tmp_path)
    assert log.feed(idx).gaps == 1
    [gap] = idx.health().gaps
    assert (gap.topic, gap.partition, gap.first_offset, gap.last_offset) == (topics.MODEL_SUBMITTED, 0, 0, 0)
    assert "deleted before they were indexed" in gap.line()

    history.release("3.0", T0 + timedelta(hours=2))
    log.write(*history.events[-5:])
    log.delete_up_to(topics.CHECKS_PASSED, log.ends[(topics.CHECKS_PASSED, 0)])  # 3.0's checks, never read
    assert log.feed(idx).gaps == 1
    assert [(g.topic, g.first_offset, g.last_offset) for g in idx.health().gaps][1] == (topics.CHECKS_PASSED, 2, 2)


def test_offsets_that_jump_inside_a_batch_are_a_gap(tmp_path: Path) -> None:
    log, history = Log(), History("churn")
    history.release("1.0", T0)
    history.release("2.0", T0 + timedelta(hours=1))
    log.write(*history.events)
    records = log.partitions[(topics.MODEL_SUBMITTED, 0)]
    idx = index(tmp_path)
    progress = ingest(idx, topics.MODEL_SUBMITTED, 0, [records[1]], keyring())  # offset 0 vanished mid-read
    assert (progress.gaps, progress.indexed) == (1, 1)
    assert idx.next_offset(topics.MODEL_SUBMITTED, 0) == 2


def test_a_batch_commits_its_rows_and_its_offset_together_or_not_at_all(tmp_path: Path) -> None:
    log, history = Log(), History("churn")
    history.release("1.0", T0)
    history.release("2.0", T0 + timedelta(hours=1))
    log.write(*history.events)
    records = log.partitions[(topics.MODEL_SUBMITTED, 0)]

    class Failing(signing.Keyring):
        def verify(self, topic, key, headers, value):
            if key is not None and value == records[1].value:
                raise RuntimeError("disk full")
            return keyring().verify(topic, key, headers, value)

    idx = index(tmp_path)
    with pytest.raises(RuntimeError):
        ingest(idx, topics.MODEL_SUBMITTED, 0, records, Failing(()))
    assert idx.count() == 0 and idx.next_offset(topics.MODEL_SUBMITTED, 0) == 0
    assert ingest(idx, topics.MODEL_SUBMITTED, 0, records, keyring()).indexed == 2


def test_a_decision_or_deployment_whose_cause_is_missing_is_an_open_link_until_it_arrives(tmp_path: Path) -> None:
    history = History("churn")
    release = history.release("1.0", T0)
    log = Log()
    log.write(release.decision, release.deployed)
    idx = index(tmp_path)
    log.feed(idx)
    missing = {(link.event_id, link.target) for link in idx.health("churn").open_links}
    assert missing == {
        (release.decision.event_id, str(release.decision.causation_id)),            # its review.requested
        (release.decision.event_id, str(release.checks.event_id)),                  # its checks
        (release.decision.event_id, str(release.submitted.submission_id)),          # its submission
        (release.deployed.event_id, str(release.submitted.submission_id)),
    }
    assert idx.health("another-model").open_links == []
    log.write(*(e for e in history.events if e not in (release.decision, release.deployed)))
    log.feed(idx)
    assert idx.health("churn").clean


def test_a_rollback_to_a_release_whose_deployment_is_not_indexed_is_an_open_link(tmp_path: Path) -> None:
    history = History("churn")
    one = history.release("1.0", T0)
    history.release("2.0", T0 + timedelta(hours=1))
    rolled = history.rollback(one, "2.0", T0 + timedelta(hours=2))
    log = Log()
    log.write(*(e for e in history.events if e != one.deployed))
    idx = index(tmp_path)
    log.feed(idx)
    [link] = [link for link in idx.health().open_links if link.event_id == rolled.event_id]
    assert link.target == str(one.deployed.submission_id) and "restored" in link.why


def test_policy_texts_are_stored_once_per_digest_and_a_mismatch_is_not_a_fact(tmp_path: Path) -> None:
    history = History("churn")
    history.release("1.0", T0)
    history.release("2.0", T0 + timedelta(hours=1))
    ref = policy("risk_approval")
    log = Log()
    log.write(*history.events)
    idx = index(tmp_path)
    log.feed(idx)
    texts = idx.policy(ref.digest)
    assert texts is not None and texts.workflow == ref.documents.workflow and texts.groups == "risk: [alice, bob]\n"
    # Two releases decided under the same texts (and their review requests carrying them): one copy.
    assert idx.db.execute("SELECT count(*) FROM policies").fetchone()[0] == 1
    assert "documents" not in idx.db.execute("SELECT body FROM events WHERE topic = 'review.decided'").fetchone()[0]

    other = PolicyDocuments(workflow="name: other\n", groups="")
    decision = history.events[3].model_dump(mode="json")
    decision["policy"]["documents"] = other.model_dump()  # texts that are not the digest's
    raw = codec.Record(topics.REVIEW_DECIDED, b"churn", json.dumps(decision).encode(),
                       codec.headers_for(history.events[3], "/test"))
    log.append(keys.sign(raw, by="review-notifier"))
    log.feed(idx)
    [problem] = idx.health().problems
    assert problem.kind == "undecodable" and "policy digest" in problem.reason
    assert idx.policy(other.digest()) is None


def test_a_deployment_is_indexed_under_its_model(tmp_path: Path) -> None:
    history = History("churn")
    release = history.release("1.0", T0)
    log = Log()
    log.write(*history.events)
    idx = index(tmp_path)
    log.feed(idx)
    [entry] = idx.entries("churn", (topics.DEPLOYMENT_SUCCEEDED,))
    assert isinstance(entry.event, DeploymentSucceeded) and entry.event == release.deployed
    assert idx.entries("churn", (topics.DEPLOYMENT_SUCCEEDED,), until=T0) == []
