"""Email-link tokens: bound to submission, approver, action and expiry; any change is refused."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.review_notifier.channels.email import tokens
from services.review_notifier.channels.email.tokens import TokenError

KEY = b"k" * 32
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
SID = uuid.uuid4()


def issued(**over) -> str:
    fields = dict(submission_id=SID, approver="bob", action="reject", expires=NOW + timedelta(hours=1))
    return tokens.issue(KEY, **{**fields, **over})


def refused(token: str, now: datetime = NOW, key: bytes = KEY) -> TokenError:
    with pytest.raises(TokenError) as info:
        tokens.verify(key, token, now)
    return info.value


def test_a_token_carries_what_it_is_bound_to():
    claims = tokens.verify(KEY, issued(), NOW)
    assert (claims.submission_id, claims.approver, claims.action) == (SID, "bob", "reject")
    assert claims.expires == NOW + timedelta(hours=1)


def test_two_tokens_for_the_same_thing_differ():
    first, second = tokens.verify(KEY, issued(), NOW), tokens.verify(KEY, issued(), NOW)
    assert issued() != issued() and first.token_id != second.token_id


def test_expired_is_410():
    token = issued()
    assert refused(token, now=NOW + timedelta(hours=1)).status == 410
    tokens.verify(KEY, token, NOW + timedelta(minutes=59))


def _rewrite(token: str, **claims) -> str:
    part, _, mac = token.partition(".")
    data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    data.update(claims)
    new = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{new}.{mac}"


@pytest.mark.parametrize("change", [
    {"a": "alice"}, {"d": "approve"}, {"s": str(uuid.uuid4())}, {"e": 9_999_999_999},
])
def test_changing_any_claim_is_403(change):
    assert refused(_rewrite(issued(), **change)).status == 403


def test_a_flipped_signature_byte_is_403_and_another_key_too():
    token = issued()
    part, _, mac = token.partition(".")
    flipped = mac[:5] + ("A" if mac[5] != "A" else "B") + mac[6:]
    assert refused(f"{part}.{flipped}").status == 403
    assert refused(token, key=b"other key").status == 403


@pytest.mark.parametrize("token", ["", "nodot", ".", "abc.", ".abc", "a.b.c", "%%%.%%%"])
def test_malformed_is_400_or_403(token):
    assert refused(token).status in (400, 403)


def test_a_signed_token_with_a_foreign_action_is_400():
    assert refused(issued(action="delete")).status == 400


def test_errors_never_contain_the_token():
    token = issued()
    assert token not in refused(token, now=NOW + timedelta(days=1)).message
