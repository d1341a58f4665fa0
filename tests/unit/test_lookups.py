"""`signoff history` and revoke's lookup answered from the audit index (signoff.lookups): the same
answer the topic read gives (client.history / find_submission, through shared.reader's decode),
from records fed to an index as the catch-up feeds them. No broker."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

from shared import reader
from shared.events import Event, ModelSubmitted
from signoff import client, lookups
from tests.audit_history import deployed_rolled_back_redeployed
from tests.unit import audit_log
from tests.unit.audit_log import Log, Rec


def topic_read(records: list[Rec], model: str) -> list[Event]:
    """What client.history answers from these records: shared.reader's decode with the keyring,
    records keyed by the model on the history topics, each event_id once, in time order."""
    ring = audit_log.keyring()
    kept = [reader.decode(r, ring) for r in records if r.topic in client.HISTORY_TOPICS and r.key == model.encode()]
    ordered = sorted((e for e in kept if e is not None), key=lambda e: (e.occurred_at, str(e.event_id)))
    out: dict[uuid.UUID, Event] = {}
    for event in ordered:
        out.setdefault(event.event_id, event)
    return list(out.values())


def dumped(events: list[Event]) -> list[str]:
    """As `signoff history --json` prints them."""
    return [json.dumps({"topic": e.topic, **e.model_dump(mode="json")}) for e in events]


def test_history_from_the_index_is_the_topic_read_answer_with_policy_texts_and_redeliveries(tmp_path: Path) -> None:
    model = "churn-model"
    history, one, two, _ = deployed_rolled_back_redeployed(model)
    log = Log()
    records = log.write(*history.events)
    records += log.write(*deployed_rolled_back_redeployed("other-model")[0].events)  # not this model's
    records += log.write(two.deployed.model_copy(update={"occurred_at": two.deployed.occurred_at
                                                         + timedelta(seconds=5)}))  # redelivered after a crash
    index = audit_log.index(tmp_path)
    log.feed(index)

    answer = lookups.history_of(index, model)

    expected = topic_read(records, model)
    assert dumped(answer) == dumped(expected)  # --json byte for byte: the policy texts put back
    assert one.decision.policy.documents is not None and answer[0] == one.decision
    assert lookups.history_of(index, "nobody") == []


def test_history_leaves_out_an_approval_signed_by_a_key_that_may_not_approve(tmp_path: Path) -> None:
    history, one, *_ = deployed_rolled_back_redeployed("churn-model")
    log = Log()
    log.write(*history.events)
    forged = one.decision.model_copy(update={"event_id": uuid.uuid4(), "reason": "forged by a pipeline"})
    records = log.write(forged, by="policy")  # a human's approval is the review-notifier's to sign
    index = audit_log.index(tmp_path)
    log.feed(index)
    assert forged.event_id in {e.event_id for e in topic_read(records, "churn-model")}  # its key is trusted
    assert forged.event_id not in {e.event_id for e in lookups.history_of(index, "churn-model")}


def test_a_submission_is_found_by_its_id_whatever_its_model(tmp_path: Path) -> None:
    history, one, two, _ = deployed_rolled_back_redeployed("churn-model")
    log = Log()
    log.write(*history.events)
    index = audit_log.index(tmp_path)
    log.feed(index)
    assert lookups.submission_of(index, two.submitted.submission_id) == two.submitted
    assert lookups.submission_of(index, one.submitted.submission_id) == one.submitted
    assert lookups.submission_of(index, uuid.uuid4()) is None


def test_an_id_claimed_again_by_another_model_resolves_to_the_claim_its_checks_cite(tmp_path: Path) -> None:
    history, one, *_ = deployed_rolled_back_redeployed("churn-model")
    log = Log()
    log.write(*history.events)
    later = one.submitted.occurred_at + timedelta(days=1)
    submission = one.submitted.submission.model_copy(update={"candidate": one.submitted.submission.candidate
                                                             .model_copy(update={"model": "squatter"})})
    claim = ModelSubmitted(submission_id=one.submitted.submission_id, occurred_at=later, submission=submission)
    log.write(claim)  # newer, validly signed, but no checks ever cited it
    index = audit_log.index(tmp_path)
    log.feed(index)
    assert len(index.claims(one.submitted.submission_id)) == 2
    assert lookups.submission_of(index, one.submitted.submission_id) == one.submitted


def test_without_checks_the_newest_claim_is_taken_as_the_topic_read_takes_it(tmp_path: Path) -> None:
    _, one, *_ = deployed_rolled_back_redeployed("churn-model")
    log = Log()
    only = one.submitted
    again = ModelSubmitted(submission_id=only.submission_id, occurred_at=only.occurred_at + timedelta(hours=1),
                           submission=only.submission)
    log.write(only, again)
    index = audit_log.index(tmp_path)
    log.feed(index)
    assert lookups.submission_of(index, only.submission_id) == again

