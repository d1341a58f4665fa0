"""Issue 16 through the services, in memory (or `--broker=kafka`), each written as the attack and
each followed by a well-formed submission that still goes through:

- the validator: a hard link out of the artifact root, metrics that are strings or booleans, an
  event without occurred_at, a record keyed by another model, a record without CloudEvents
  headers, an evaluation file whose first line is markup;
- the deployer: an approved artifact replaced by a hard link before it is installed;
- the review-notifier: a used email link with `!!` or `==` appended (its receipt is the token's id).

The records are signed (tests.keys), so what refuses them is the contract, not a missing signature.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from shared import codec, topics
from shared.events import ChecksFailed, ChecksPassed, DeploymentFailed, DeploymentSucceeded
from tests import keys
from tests.component.conftest import (
    DLQ,
    Artifact,
    capture,
    publish,
    publish_record,
    running,
    sent,
    settle,
    write_workflows,
)
from tests.unit import factories as f

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- outside every root"
MARKUP = "<https://evil.example|Approved by security> <!channel>"

FAIRNESS = """\
name: fair-models
match: ["fair-*"]
steps:
  - name: automated_checks
    type: checks
    inputs:
      min: {accuracy: 0.8}
      fairness: {min_parity_ratio: 0.8}
  - name: deploy
    type: deploy
"""


@pytest.fixture
def validator(build_app, workflows):
    write_workflows(workflows, fair=FAIRNESS)
    return build_app("validator")


@pytest.fixture
def deployer(build_app):
    return build_app("deployer")


@pytest.fixture
def hard_link(tmp_path, artifact_root) -> Artifact:
    """The attack: a hard link inside the artifact root to a file outside it."""
    outside = tmp_path / "home" / "id_ed25519"
    outside.parent.mkdir()
    outside.write_bytes(SECRET)
    link = artifact_root / "fraud-1.5.0.onnx"
    os.link(outside, link)
    return Artifact(link, hashlib.sha256(SECRET).hexdigest())


def submitted_for(artifact: Artifact, version: str = "1.4.0", **submission):
    cand = f.candidate(artifact_uri=artifact.path.as_uri(), artifact_sha256=artifact.sha256, version=version)
    return f.submitted(f.submission(cand, **submission))


async def test_a_hard_link_out_of_the_root_fails_the_checks_and_a_good_artifact_passes(validator, artifact,
                                                                                       hard_link):
    attack, good = submitted_for(hard_link, "1.5.0"), submitted_for(artifact)
    async with running(validator.broker) as br:
        await publish(br, attack)
        out = sent(validator.emitter.publishers[ChecksFailed], topics.CHECKS_FAILED)
        await publish(br, good)
        passed = sent(validator.emitter.publishers[ChecksPassed], topics.CHECKS_PASSED)
    integrity = next(r for r in out.results if r.name == "integrity")
    assert not integrity.passed and "has 2 hard links" in integrity.message
    assert integrity.measured is None  # the bytes were never read, so no digest of them was published
    assert {r.name for r in out.results} == {"integrity", "lineage", "metric:accuracy"}  # nothing scanned
    assert passed.causation_id == good.event_id


def record_of(event, **changes: object) -> codec.Record:
    """`event`'s record with its body changed (`None` removes a key; a callable edits the dict)."""
    record = codec.encode(event, "/test")
    data = json.loads(record.value)
    for name, value in changes.items():
        if value is None:
            data.pop(name)
        elif callable(value):
            value(data)
        else:
            data[name] = value
    return record._replace(value=json.dumps(data).encode())


def metric(value: object):
    def edit(data: dict) -> None:
        data["submission"]["metrics"]["accuracy"] = value
    return edit


def attacks(artifact: Artifact) -> dict[str, tuple[codec.Record, str]]:
    event = submitted_for(artifact)
    record = codec.encode(event, "/test")
    headerless = {k: v for k, v in record.headers.items() if k not in ("ce_id", "ce_type")}
    return {
        "string-metric": (record_of(event, submission=metric("0.95")),
                          "submission.metrics.accuracy: Value error, must be a JSON number such "
                          "as 0.93 (unquoted), not a string"),
        "boolean-metric": (record_of(event, submission=metric(True)), "not a boolean"),
        "no-occurred-at": (record_of(event, occurred_at=None),
                           "invalid event: missing envelope field occurred_at: every event on the wire carries "
                           "event_id and occurred_at"),
        "no-event-id": (record_of(event, event_id=None), "missing envelope field event_id"),
        "wrong-key": (record._replace(key=b"credit-scorer"),
                      "invalid event: record has key 'credit-scorer', but its event is about model "
                      "'fraud-detector': the key must be the model name"),
        "no-headers": (record._replace(headers=headerless),
                       "invalid event: no CloudEvents headers (ce_id, ce_type): ce_id, ce_type missing"),
    }


@pytest.mark.parametrize("attack", ["string-metric", "boolean-metric", "no-occurred-at", "no-event-id",
                                    "wrong-key", "no-headers"])
async def test_a_malformed_record_is_dead_lettered_with_its_reason_and_the_next_one_passes(validator, artifact,
                                                                                        attack):
    record, reason = attacks(artifact)[attack]
    good = submitted_for(artifact)
    dead = capture(validator.broker, DLQ(topics.MODEL_SUBMITTED))
    async with running(validator.broker) as br:
        await publish_record(br, keys.sign(record))  # signed: what refuses it is the contract
        validator.emitter.publishers[ChecksPassed].mock.assert_not_called()
        validator.emitter.publishers[ChecksFailed].mock.assert_not_called()
        await publish(br, good)
        passed = sent(validator.emitter.publishers[ChecksPassed], topics.CHECKS_PASSED)
    [letter] = dead.records
    assert reason in dead.headers()["dlq_reason"], dead.headers()["dlq_reason"]
    assert letter.value == record.value  # the original bytes
    assert passed.causation_id == good.event_id


def evaluation(artifact_root: Path, name: str, text: str) -> str:
    path = artifact_root / name
    path.write_text(text)
    return path.as_uri()


async def test_an_evaluation_file_whose_first_line_is_markup_is_reported_by_position(validator, artifact,
                                                                                   artifact_root):
    bad = submitted_for(artifact, evaluation_uri=evaluation(artifact_root, "eval-bad.csv", f"{MARKUP},x\n1,1\n"))
    bad = bad.model_copy(update={"submission": bad.submission.model_copy(update={
        "candidate": bad.submission.candidate.model_copy(update={"model": "fair-scorer"})})})
    rows = "label,prediction,group\n" + "1,1,a\n0,0,a\n1,1,b\n0,0,b\n"
    good = submitted_for(artifact, version="1.4.1", evaluation_uri=evaluation(artifact_root, "eval.csv", rows))
    good = good.model_copy(update={"submission": good.submission.model_copy(update={
        "candidate": good.submission.candidate.model_copy(update={"model": "fair-scorer"})})})
    failed = capture(validator.broker, topics.CHECKS_FAILED)
    async with running(validator.broker) as br:
        await publish(br, bad)
        await publish(br, good)
        passed = sent(validator.emitter.publishers[ChecksPassed], topics.CHECKS_PASSED)
    [out] = failed.events()
    [result] = [r for r in out.results if r.name == "fairness:evaluation"]
    assert "lacks column label, prediction, group in its header (line 1, 2 columns)" in result.message
    shown = json.dumps(out.model_dump(mode="json"))
    assert "evil.example" not in shown and "<!channel>" not in shown and "Approved by security" not in shown
    assert passed.causation_id == good.event_id
    assert any(r.name == "fairness:parity_ratio(evaluated)" and r.passed for r in passed.results)


async def test_an_approved_artifact_swapped_for_a_hard_link_is_not_installed(deployer, artifact, artifact_root,
                                                                            tmp_path):
    """Checked and approved as a regular file; by the time the deployer reads it, the name is a
    hard link to a file outside the root. The deployer's source refuses it as the validator's
    does; a well-formed approval deploys afterwards."""
    swapped_path = artifact_root / "fraud-1.5.0.onnx"
    swapped_path.write_bytes(b"approved weights")
    swapped = submitted_for(Artifact(swapped_path, hashlib.sha256(b"approved weights").hexdigest()), "1.5.0")
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"approved weights")  # even the same bytes: a link out of the root is refused
    swapped_path.unlink()
    os.link(outside, swapped_path)
    good = submitted_for(artifact)
    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(swapped))
        await publish(br, f.decided(swapped))
        failed = sent(deployer.emitter.publishers[DeploymentFailed], topics.DEPLOYMENT_FAILED)
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
        await publish(br, f.checks_passed(good))
        await publish(br, f.decided(good))
        succeeded = sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
    assert "has 2 hard links" in failed.reason
    assert not (tmp_path / "store" / "fraud-detector" / "1.5.0").exists()
    assert succeeded.candidate.version == "1.4.0"
    assert (tmp_path / "store" / "fraud-detector" / "1.4.0" / "fraud-1.4.0.onnx").read_bytes() == b"onnx weights"


# --- email links: single use by meaning, not spelling -------------------------------------------------

TOKEN_KEY = "token-key-for-the-hardening-tests"


@pytest.fixture
def notifier(build_app, tmp_path):
    from signoff.standins import MailSink  # noqa: PLC0415 - the email channel needs an SMTP host

    with MailSink() as mail:
        yield build_app("review_notifier", smtp_host=mail.host, smtp_port=mail.port, token_key=TOKEN_KEY,
                        approver_emails={"alice": "alice@example.com", "bob": "bob@example.com"},
                        known_users=("alice", "bob", "carol"), tokens_file=tmp_path / "tokens.json")


async def test_a_used_email_link_respelt_is_refused_and_its_receipt_is_its_id(notifier):
    import httpx  # noqa: PLC0415

    from services.review_notifier.channels import Receipt  # noqa: PLC0415
    from services.review_notifier.channels.email import tokens  # noqa: PLC0415
    from shared.events import ReviewDecided, utcnow  # noqa: PLC0415

    request = f.review_requested(f.submitted(), approvers=("alice", "bob"), quorum=2)
    issue = lambda who: tokens.issue(TOKEN_KEY.encode(), request.submission_id, who, "approve",  # noqa: E731
                                     utcnow() + timedelta(hours=1))
    token, older = issue("alice"), issue("bob")
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=notifier.api), base_url="http://review.test")
    async with running(notifier.broker) as br, http:
        await publish(br, request)
        first = await http.post("/email/decide", data={"token": token, "reason": "ok"})
        assert first.status_code == 200, first.text
        for respelt in (token + "!!", token + "==", token + "="):  # the attack
            for r in (await http.post("/email/decide", data={"token": respelt, "reason": "again"}),
                      await http.get("/email/confirm", params={"token": respelt})):
                assert r.status_code == 400 and "malformed" in r.text, r.text
        again = await http.post("/email/decide", data={"token": token, "reason": "again"})
        assert again.status_code == 409 and "already used" in again.text
        # A link used before receipts were keyed on the token's id: its old receipt still holds.
        notifier.store.save(notifier.store.get(request.submission_id),
                            receipt=Receipt("email", tokens.legacy_id(older)))
        legacy = await http.post("/email/decide", data={"token": older, "reason": "ok"})
        assert legacy.status_code == 409 and "already used" in legacy.text
        await settle(notifier.broker)
        notifier.emitter.publishers[ReviewDecided].mock.assert_not_called()  # one vote of two counted
    claims = tokens.verify(TOKEN_KEY.encode(), token, utcnow())
    assert notifier.store.receipt_seen(Receipt("email", claims.token_id))
    assert not notifier.store.receipt_seen(Receipt("email", tokens.legacy_id(token)))
    assert [v.approver for v in notifier.store.get(request.submission_id).votes] == ["alice"]
