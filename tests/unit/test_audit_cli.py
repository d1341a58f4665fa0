"""`signoff audit` on an index built beforehand (--offline: no broker): the issue's spellings
(`audit MODEL`, `audit export`, `audit policy`), times refused without a zone, gaps on stderr and
exit code 6, and no catch-up without a trust file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared import topics
from signoff.cli import app
from tests.audit_history import deployed_rolled_back_redeployed
from tests.unit.audit_log import Log, index

runner = CliRunner()


@pytest.fixture
def indexed(tmp_path: Path):
    history, one, two, three = deployed_rolled_back_redeployed("churn")
    log = Log()
    log.write(*history.events)
    idx = index(tmp_path)
    log.feed(idx)
    idx.close()
    return {"SIGNOFF_AUDIT_INDEX": str(tmp_path / "audit.sqlite")}, history, one, three


def audit(env: dict[str, str | None], *args: str):
    return runner.invoke(app, ["audit", *args], env=env)


def test_audit_model_lists_every_release(indexed) -> None:
    env, _, one, three = indexed
    result = audit(env, "churn", "--offline")
    assert result.exit_code == 0, result.output
    assert "churn: 3 release(s), 1 rollback(s)" in result.stdout
    assert one.decision.policy.digest in result.stdout and three.decision.policy.digest in result.stdout
    assert "offline: the index as of" in result.stderr


def test_audit_model_at_a_time(indexed) -> None:
    env, _, one, _ = indexed
    result = audit(env, "churn", "--at", "2026-11-02T11:30:00Z", "--offline")
    assert result.exit_code == 0, result.output
    assert "version 1.0" in result.stdout and "oncall" in result.stdout and one.decision.policy.digest in result.stdout
    as_json = json.loads(audit(env, "--offline", "churn", "--at", "2026-11-02T11:30:00+01:00", "--json").stdout)
    assert (as_json["version"], as_json["approval"]["event"]["decided_by"]) == ("2.0", "policy:default/auto")


def test_a_time_without_a_zone_is_refused_naming_the_fix(indexed) -> None:
    env, *_ = indexed
    result = audit(env, "churn", "--at", "2026-11-02T11:30:00", "--offline")
    assert result.exit_code == 1
    assert "has no time zone" in result.stderr and "2026-11-02T11:30:00Z" in result.stderr
    assert audit(env, "churn", "--at", "yesterday", "--offline").exit_code == 1


def test_export_as_jsonl_and_csv(indexed) -> None:
    env, history, *_ = indexed
    jsonl = audit(env, "export", "--since", "2026-11-01T00:00:00Z", "--format", "jsonl", "--offline")
    assert jsonl.exit_code == 0, jsonl.output
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [r["event_id"] for r in rows] == [str(e.event_id) for e in sorted(history.events,
                                                                             key=lambda e: e.occurred_at)]
    table = audit(env, "export", "--since", "2026-11-02T10:00:00Z", "--until", "2026-11-02T11:00:00Z",
                  "--format", "csv", "--offline")
    parsed = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [r["type"] for r in parsed] == ["signoff.model.submitted", "signoff.checks.passed",
                                           "signoff.review.decided", "signoff.deployment.succeeded"]
    assert json.loads(parsed[2]["event"])["decided_by"] == "policy:default/auto"
    assert audit(env, "export", "--since", "2026-11-01T00:00:00Z", "--format", "xml", "--offline").exit_code == 1


def test_the_policy_text_by_digest_and_in_force(indexed) -> None:
    env, _, _, three = indexed
    by_digest = audit(env, "policy", three.decision.policy.digest, "--offline")
    assert by_digest.exit_code == 0 and "# quorum raised" in by_digest.stdout
    in_force = audit(env, "churn", "--policy", "--at", "2026-11-02T13:00:00Z", "--offline")
    assert in_force.exit_code == 0 and "# quorum raised" in in_force.stdout
    assert audit(env, "policy", "0" * 64, "--offline").exit_code == 1


def test_gaps_are_printed_and_exit_6_unless_accepted(indexed) -> None:
    env, *_ = indexed
    from shared.audit.index import Index
    idx = Index.open(Path(env["SIGNOFF_AUDIT_INDEX"]))
    with idx.transaction():
        idx.add_gap(topics.MODEL_SUBMITTED, 0, 0, 41, "deleted before they were indexed")
    idx.close()
    result = audit(env, "churn", "--offline")
    assert result.exit_code == 6
    assert "WARNING: gap in model.submitted partition 0: offsets 0-41 deleted before they were indexed" in result.stderr
    assert "churn: 3 release(s)" in result.stdout  # the answer is still given
    accepted = audit(env, "churn", "--offline", "--accept-gaps")
    assert accepted.exit_code == 0 and "WARNING: gap" in accepted.stderr
    assert audit(env, "export", "--since", "2026-11-01T00:00:00Z", "--offline").exit_code == 6


def test_catching_up_needs_the_trust_file(tmp_path: Path) -> None:
    result = audit({"SIGNOFF_AUDIT_INDEX": str(tmp_path / "a.sqlite"), "SIGNOFF_TRUSTED_KEYS": None}, "churn")
    assert result.exit_code == 2 and "SIGNOFF_TRUSTED_KEYS" in result.stderr


def test_a_model_named_like_a_command_is_audited_with_show(indexed) -> None:
    env, *_ = indexed
    result = audit(env, "show", "export", "--offline")
    assert result.exit_code == 1 and "no events of export" in result.stderr
    assert audit(env, "Not A Model", "--offline").exit_code == 1
