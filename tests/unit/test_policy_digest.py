"""The policy digest covers the workflow file and groups.yaml, framed so that no byte can move from one
to the other; decisions carry the texts, and a PolicyRef whose texts do not hash to its digest is
refused; the texts are bounded, and the largest decision carrying them still fits in a record; events
written before they were carried still load."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from shared import codec, topics
from shared.codec import MAX_EVENT_BYTES, BadEvent
from shared.events import ChecksPassed, ModelSubmitted, PolicyRef, ReviewDecided, ReviewRequested
from shared.values import MAX_POLICY_BYTES, PolicyDocuments, policy_digest
from shared.workflow.loading import load_file, load_folder
from shared.workflow.schema import WorkflowError
from tests.unit import factories as f
from tests.unit.test_event_bounds import largest_submission, padded
from tests.unit.test_workflows import VALID

SOURCE = "/signoff/test"
DOCS = PolicyDocuments(workflow=VALID, groups=f.GROUPS)


def ref(documents: PolicyDocuments | None = DOCS, digest: str | None = None) -> PolicyRef:
    return PolicyRef(name="strict", rule="manual_approval", documents=documents,
                     digest=digest or (documents or DOCS).digest())


# --- the digest -------------------------------------------------------------------------------------

def test_the_digest_is_the_documented_framing_of_both_texts():
    """Anyone holding the texts recomputes it: sha256 of the framing written in shared.values."""
    framed = (b"signoff-policy/v1\n" + b"workflow %d\n" % len(VALID.encode()) + VALID.encode()
              + b"groups %d\n" % len(f.GROUPS.encode()) + f.GROUPS.encode())
    assert DOCS.digest() == policy_digest(VALID, f.GROUPS) == hashlib.sha256(framed).hexdigest()


def test_the_same_texts_give_the_same_digest_and_non_ascii_is_hashed_as_utf8():
    assert PolicyDocuments(workflow=VALID, groups=f.GROUPS).digest() == DOCS.digest()
    assert PolicyDocuments(workflow="# é\n" + VALID).digest() == policy_digest("# é\n" + VALID, "")


@pytest.mark.parametrize(("one", "other"), [
    (("ab", "c"), ("a", "bc")),                      # a byte moved from the workflow to groups
    (("a", ""), ("", "a")),                          # the whole text moved
    (("a\ngroups 0\n", ""), ("a", "")),              # a text spelling the framing itself
    (("x", "workflow 1\nx"), ("x", "")),
])
def test_the_framing_is_unambiguous(one, other):
    assert policy_digest(*one) != policy_digest(*other)


def test_adding_a_person_to_a_group_changes_the_workflows_digest_and_the_sets(tmp_path):
    before = load_folder(f.workflow_folder(tmp_path, strict=VALID))
    (tmp_path / "groups.yaml").write_text(f.GROUPS.replace("[bob, carol]", "[bob, carol, mallory]"))
    after = load_folder(tmp_path)
    assert after.workflows[0].workflow == before.workflows[0].workflow  # the workflow file did not change
    assert after.workflows[0].digest != before.workflows[0].digest
    assert after.digest != before.digest
    assert after.workflows[0].policy_documents().groups.endswith("[bob, carol, mallory]\nrisk: [dave, erin]\n")


def test_a_folder_without_groups_yaml_digests_an_empty_groups_text(tmp_path):
    loaded = f.load_workflow(tmp_path, VALID.replace("'group:leads'", "'bob'"), groups=None)
    assert loaded.policy_documents() == PolicyDocuments(workflow=VALID.replace("'group:leads'", "'bob'"))
    assert loaded.digest == policy_digest(loaded.policy_documents().workflow, "")


# --- the reference and its documents ------------------------------------------------------------------

def test_a_policy_ref_refuses_documents_its_digest_is_not_of():
    with pytest.raises(ValidationError) as caught:
        ref(digest="a" * 64)
    (error,) = caught.value.errors()
    assert error["loc"] == ("documents",)
    assert f"the documents' policy digest is {DOCS.digest()}, but digest says {'a' * 64}" in error["msg"]
    assert ref().documents == DOCS  # the matching pair is accepted


def test_a_decision_whose_texts_were_edited_on_the_way_is_a_bad_event():
    decided = f.decided(policy=ref())
    data = json.loads(codec.encode(decided, SOURCE).value)
    data["policy"]["documents"]["groups"] += "leads: [mallory]\n"  # someone widens a group in the record
    with pytest.raises(BadEvent, match=r"^policy\.documents: Value error, the documents' policy digest is "):
        codec.decode(topics.REVIEW_DECIDED, json.dumps(data).encode())


def test_decisions_carry_the_texts_through_the_wire():
    for event in (f.decided(policy=ref()), f.review_requested(policy=ref())):
        decoded = codec.decode(event.topic, codec.encode(event, SOURCE).value)
        assert decoded.policy.documents == DOCS and decoded.policy.digest == DOCS.digest()


def test_a_reference_without_documents_writes_no_documents_key():
    """Checks events and '(no workflow)' decisions carry none: their JSON is as before."""
    checks = ChecksPassed.caused_by(f.submitted(), submission=f.submission(), results=f.results(),
                                    workflow=ref(documents=None))
    assert "documents" not in json.loads(codec.encode(checks, SOURCE).value)["workflow"]


@pytest.mark.parametrize("field", ["workflow", "groups"])
def test_each_text_is_bounded_and_the_refusal_names_the_field(field):
    at_limit = {field: "é" * (MAX_POLICY_BYTES // 2)}  # 2 bytes each: the limit is in UTF-8 bytes
    PolicyDocuments(**{"workflow": "x", **at_limit})
    with pytest.raises(ValidationError) as caught:
        PolicyDocuments(**{"workflow": "x", field: "é" * (MAX_POLICY_BYTES // 2) + "x"})
    (error,) = caught.value.errors()
    assert error["loc"] == (field,)
    assert f"{MAX_POLICY_BYTES + 1} bytes, at most {MAX_POLICY_BYTES}" in error["msg"]


@pytest.mark.parametrize("name", ["workflow.yaml", "groups.yaml"])
def test_a_workflow_folder_with_an_oversized_file_does_not_load(tmp_path, name):
    f.workflow_folder(tmp_path, workflow=VALID)
    path = tmp_path / name
    path.write_text(path.read_text() + "#" * MAX_POLICY_BYTES)
    with pytest.raises(WorkflowError) as caught:
        load_file(tmp_path / "workflow.yaml")
    assert caught.value.problems == [
        f"{path}: {path.stat().st_size} bytes, at most {MAX_POLICY_BYTES}: decisions carry the file's text, "
        f"so keep it under {MAX_POLICY_BYTES // 1024} KiB"]


def test_a_workflow_file_that_is_not_utf8_does_not_load(tmp_path):
    f.workflow_folder(tmp_path, workflow=VALID)
    (tmp_path / "workflow.yaml").write_bytes(VALID.encode("utf-16"))
    with pytest.raises(WorkflowError, match=r"workflow\.yaml: not UTF-8 text \(invalid start byte at byte 0\); "
                                            "save it as UTF-8"):
        load_file(tmp_path / "workflow.yaml")


def test_the_largest_review_request_with_the_largest_texts_fits_in_a_record():
    """The largest submission (tests/unit/test_event_bounds.py), and both texts at their limit written
    in the character JSON escapes (a quote doubles): still under the record limit."""
    documents = PolicyDocuments(workflow='"' * MAX_POLICY_BYTES, groups="\\" * MAX_POLICY_BYTES)
    submitted = ModelSubmitted(submission_id=f.submitted().submission_id, submission=largest_submission())
    passed = ChecksPassed.caused_by(submitted, submission=submitted.submission, results=f.results())
    review = f.review_requested(submitted, submission=passed.submission, reason="r" * 10_000,
                                approvers=tuple(padded(f"a{i}", 64) for i in range(50)),
                                policy=PolicyRef(name="n", rule="r", digest=documents.digest(), documents=documents))
    size = len(codec.encode(review, SOURCE).value)
    assert size > 4 * MAX_POLICY_BYTES  # the texts are in it, escaped
    assert size < MAX_EVENT_BYTES * 0.9, size


# --- events written before the texts were carried ------------------------------------------------------

@pytest.mark.parametrize(("event", "old_version"), [
    (lambda: f.decided(), 3), (lambda: f.review_requested(), 2)])
def test_events_written_before_still_load_without_documents(event, old_version):
    made: ReviewDecided | ReviewRequested = event()
    data = json.loads(codec.encode(made, SOURCE).value) | {"schema_version": old_version}
    assert "documents" not in data["policy"]  # as the previous version wrote it
    decoded = codec.decode(made.topic, json.dumps(data).encode())
    assert decoded.schema_version == type(made).class_version == old_version + 1
    assert decoded.policy == made.policy and decoded.policy.documents is None
