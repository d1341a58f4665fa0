"""Per-person API tokens: issued once, stored hashed, refused when wrong, expired or revoked;
and `signoff token create/list/revoke` on the file the service reads."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from typer.testing import CliRunner

from services.review_notifier.api_tokens import TokenError, TokenFile, check, issue
from signoff.cli import app
from tests.unit.factories import workflow_folder

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_a_token_proves_its_record_and_the_file_keeps_only_a_hash(tmp_path):
    token, record = issue("alice", "approver", timedelta(days=90), NOW)
    assert token.startswith(f"so_{record.id}_") and len(token) == len("so_") + 12 + 1 + 43
    tokens = TokenFile(tmp_path / "tokens.json")
    tokens.add(record)
    assert tokens.verify(token, NOW) == record
    text = (tmp_path / "tokens.json").read_text()
    assert token.split("_", 2)[2] not in text and record.sha256 in text
    assert stat.S_IMODE(os.stat(tmp_path / "tokens.json").st_mode) == 0o600


def test_each_token_is_new():
    first, second = (issue("alice", "approver", timedelta(days=1), NOW)[0] for _ in range(2))
    assert first != second


@pytest.mark.parametrize(("token", "says"), [
    ("", "malformed"), ("so_", "malformed"), ("so_0123456789ab_short", "malformed"),
    ("so_0123456789AB_" + "A" * 43, "malformed"),  # ids are lower-case hex
    ("so_0123456789ab_" + "A" * 43, "not valid"),  # no such id: told like a wrong secret
])
def test_malformed_or_unknown_tokens(token, says):
    with pytest.raises(TokenError, match=says) as refused:
        check(None, token, NOW)
    assert refused.value.status == 401


def test_wrong_expired_and_revoked():
    token, record = issue("alice", "approver", timedelta(hours=1), NOW)
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(TokenError, match="not valid"):
        check(record, wrong, NOW)
    assert check(record, token, NOW + timedelta(minutes=59)) == record
    with pytest.raises(TokenError, match="expired"):
        check(record, token, NOW + timedelta(hours=1))
    with pytest.raises(TokenError, match="revoked"):
        check(record.model_copy(update={"revoked": NOW}), token, NOW)


@pytest.mark.parametrize(("role", "ttl", "says"), [
    ("admin", timedelta(days=1), "role 'admin' does not exist"),
    ("approver", timedelta(0), "ttl"), ("approver", timedelta(days=400), "at most 366d"),
])
def test_issue_refuses(role, ttl, says):
    with pytest.raises(TokenError, match=says):
        issue("alice", role, ttl, NOW)


def test_the_file_is_read_again_when_it_changed(tmp_path):
    reader, writer = TokenFile(tmp_path / "tokens.json"), TokenFile(tmp_path / "tokens.json")
    token, record = issue("bob", "approver", timedelta(days=1), NOW)
    assert reader.get(record.id) is None  # no file yet
    writer.add(record)
    assert reader.verify(token, NOW) == record
    writer.revoke(record.id, NOW)
    with pytest.raises(TokenError, match="revoked"):
        reader.verify(token, NOW)


@pytest.mark.parametrize("content", ["not json", '{"version": 2, "tokens": []}', '{"tokens": [{"id": "x"}]}'])
def test_a_broken_file_is_503_and_names_itself(tmp_path, content):
    (tmp_path / "tokens.json").write_text(content)
    with pytest.raises(TokenError, match="tokens.json is not valid") as refused:
        TokenFile(tmp_path / "tokens.json").get("0123456789ab")
    assert refused.value.status == 503


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    folder = workflow_folder(tmp_path / "workflows", "risk: [dave, erin]\n", default="""\
name: default
default: true
steps:
  - name: manual_approval
    type: approval
    inputs: {approvers: ['alice', 'group:risk'], break_glass: ['erin']}
""")
    monkeypatch.setenv("SIGNOFF_WORKFLOWS", str(folder))
    monkeypatch.setenv("SIGNOFF_TOKENS_FILE", str(tmp_path / "state" / "tokens.json"))
    monkeypatch.setenv("SIGNOFF_KNOWN_USERS", '["zoe"]')
    return TokenFile(tmp_path / "state" / "tokens.json")


def test_cli_create_list_revoke(cli_env):
    runner = CliRunner()
    created = runner.invoke(app, ["token", "create", "Erin", "--role", "break-glass", "--ttl", "7d"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    (record,) = cli_env.records()
    assert (record.user, record.role, record.expires - record.created) == ("erin", "break-glass", timedelta(days=7))
    assert cli_env.verify(token, record.created) == record
    assert runner.invoke(app, ["token", "create", "zoe"]).exit_code == 0  # a configured known user

    listed = runner.invoke(app, ["token", "list", "--json"])
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["user"], r["role"], r["status"]) for r in rows] == [("erin", "break-glass", "active"),
                                                                   ("zoe", "approver", "active")]
    assert token.split("_", 2)[2] not in listed.stdout and record.sha256 not in listed.stdout

    assert runner.invoke(app, ["token", "revoke", record.id]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["token", "list"]).stdout
    missing = runner.invoke(app, ["token", "revoke", "0123456789ab"])
    assert missing.exit_code == 1 and "no token" in missing.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["token", "create", "\u0430lice"], "U+0430 CYRILLIC SMALL LETTER A"),
    (["token", "create", "mallory"], "not a known user"),
    (["token", "create", "alice", "--role", "admin"], "role 'admin' does not exist"),
    (["token", "create", "alice", "--ttl", "forever"], "--ttl 'forever' is not a duration"),
])
def test_cli_create_refuses(cli_env, args, says):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and says in result.stderr, result.output
    assert cli_env.records() == []


def test_cli_review_sends_only_the_persons_credential_and_shows_who_voted(monkeypatch):
    sent = {}

    def post(url, json, headers, timeout):
        sent.update(url=url, json=json, headers=headers)
        return httpx.Response(200, json={"approver": "erin", "outcome": "approved", "votes": 1, "break_glass": True})

    monkeypatch.setattr("signoff.client.httpx.post", post)
    monkeypatch.setenv("SIGNOFF_API_TOKEN", "so_0123456789ab_" + "A" * 43)
    sid = "6f1c9f8e-0000-4000-8000-000000000001"
    result = CliRunner().invoke(app, ["review", sid, "approve", "--reason", "fraud spike tonight, model misses it",
                                      "--break-glass"])
    assert result.exit_code == 0, result.output
    assert "recorded as erin (break-glass)" in result.stdout
    assert sent["json"] == {"decision": "approve", "reason": "fraud spike tonight, model misses it",
                            "break_glass": True}  # no name: the credential says who votes
    assert sent["headers"] == {"Authorization": "Bearer so_0123456789ab_" + "A" * 43}
    assert CliRunner().invoke(app, ["review", sid, "approve", "--as", "bob", "--reason", "x"]).exit_code != 0


def test_cli_review_without_a_credential_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv("SIGNOFF_API_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["review", "6f1c9f8e-0000-4000-8000-000000000001", "approve", "--reason", "x"])
    assert result.exit_code == 1 and "signoff token create" in result.stderr
