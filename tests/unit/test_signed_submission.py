"""The validator's part of signed submissions: who submitted is the verified signer (mapped to the
checks event's `submitted_by`), and a workflow requiring signatures fails an unsigned submission
before anything it names is read."""

from __future__ import annotations

import pytest

from services.validator import checks
from services.validator.run_checks import refuses_unsigned, run_checks, signed, submitter_of
from shared.events import ChecksFailed, ChecksPassed, Submitter
from shared.signing import Principal
from shared.workflow.schema import WorkflowError
from tests.unit import factories as f

REQUIRED = """\
name: signed-only
match: ["fraud-*"]
require_signed_submission: true
steps:
  - name: automated_checks
    type: checks
"""


class NothingMayBeRead:
    async def fetch(self, uri: str, max_bytes: int | None = None):
        raise AssertionError(f"{uri} was read for an unsigned submission")


def test_the_verified_signer_becomes_submitted_by():
    pipeline = Principal(name="fraud-ci", role="pipeline", owner="alice", team="risk")
    assert submitter_of(pipeline) == Submitter(name="fraud-ci", owner="alice", team="risk")
    assert submitter_of(Principal(name="ci", role="pipeline", owner="", team=None)) == Submitter(name="ci")
    assert submitter_of(None) is None
    cause = f.submitted()
    outcome = signed(checks.verdict(cause, list(f.results()), None), submitter_of(pipeline))
    assert isinstance(outcome, ChecksPassed) and outcome.submitted_by.identity == "alice"
    assert outcome.event_id == checks.verdict(cause, list(f.results()), None).event_id  # still derived


def test_the_field_is_off_unless_a_workflow_sets_it(tmp_path):
    plain = f.load_workflow(tmp_path / "a", REQUIRED.replace("require_signed_submission: true\n", ""))
    assert not plain.workflow.require_signed_submission and refuses_unsigned(plain, None) is None
    required = f.load_workflow(tmp_path / "b", REQUIRED)
    assert refuses_unsigned(required, None) == "signed-only"
    assert refuses_unsigned(required, Submitter(name="fraud-ci")) is None
    assert refuses_unsigned(None, None) is None  # no workflow: the checks say so themselves


def test_a_misspelt_field_is_refused(tmp_path):
    with pytest.raises(WorkflowError, match="require_signed_submissions"):
        f.load_workflow(tmp_path, REQUIRED.replace("require_signed_submission", "require_signed_submissions"))


async def test_an_unsigned_submission_fails_at_once_and_nothing_it_names_is_read(tmp_path):
    loaded = f.load_workflow(tmp_path, REQUIRED)
    submission = f.submission(model_card_uri="file:///elsewhere/card.md")
    results = await run_checks(submission, loaded.workflow.checks, "", None, NothingMayBeRead(),  # type: ignore[arg-type]
                               1000, unsigned_refused_by=refuses_unsigned(loaded, None))
    assert [(r.name, r.passed, r.blocking) for r in results] == [("signed_submission", False, True)]
    assert "requires signed submissions" in results[0].message
    outcome = checks.verdict(f.submitted(submission), results, None)
    assert isinstance(outcome, ChecksFailed) and not outcome.artifact_verified  # no digest is banned for it
