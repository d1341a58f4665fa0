"""Email tokens are single-use by their meaning, not their spelling (issue 16, item 2), written as
the attack: a used token with `!!` or `==` appended to its signature, re-padded or re-encoded.
Every other spelling is refused as malformed; and the receipt key is the token's id, derived from
what it decides and its nonce, so no spelling can make a new receipt."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.review_notifier.channels.email import tokens
from services.review_notifier.channels.email.tokens import TokenError

KEY = b"k" * 32
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
SID = uuid.uuid4()


def issued(**over) -> str:
    fields = dict(submission_id=SID, approver="bob", action="approve", expires=NOW + timedelta(hours=1))
    return tokens.issue(KEY, **{**fields, **over})


def refused(token: str) -> TokenError:
    with pytest.raises(TokenError) as info:
        tokens.verify(KEY, token, NOW)
    return info.value


def respelt_signature(token: str) -> str:
    """The same signature bytes, with the spare low bits of its last character set: decoders that
    ignore those bits (Python's among them) read the same MAC."""
    part, _, mac = token.partition(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(mac[-1]) | 0b11  # 32 bytes: 43 characters, the last carries 2 spare bits
    respelt = f"{part}.{mac[:-1]}{alphabet[last]}"
    assert respelt != token and base64.urlsafe_b64decode(mac[:-1] + alphabet[last] + "=") == \
        base64.urlsafe_b64decode(mac + "=")
    return respelt


@pytest.mark.parametrize("spell", [
    lambda t: t + "!!",
    lambda t: t + "==",
    lambda t: t + "=",
    lambda t: t.replace(".", "==.", 1),  # padding on the claims part
    lambda t: t + " ",
    lambda t: " " + t,
    lambda t: t + "\n",
    lambda t: t + ".",
    lambda t: t + ".AAAA",
    respelt_signature,
], ids=["bang", "pad2", "pad1", "claims-pad", "space-after", "space-before", "newline", "dot", "third-part",
        "spare-bits"])
def test_another_spelling_of_a_valid_token_is_malformed(spell):
    token = issued()
    tokens.verify(KEY, token, NOW)  # the token itself is good
    error = refused(spell(token))
    assert (error.status, error.message) == (400, "the link is malformed: it has no valid token")


def test_before_the_fix_the_appended_bytes_verified():
    """The attack as it was: Python's lenient decoder reads the same MAC from `mac + "!!"`."""
    mac = issued().partition(".")[2]
    assert base64.urlsafe_b64decode(mac + "!!" + "=" * (-len(mac + "!!") % 4)) == \
        base64.urlsafe_b64decode(mac + "=")


def test_an_oversized_token_is_malformed_before_any_decoding():
    assert refused("A" * (tokens.MAX_TOKEN_CHARS + 1)).status == 400


def test_a_signature_of_the_wrong_length_is_malformed():
    part, _, mac = issued().partition(".")
    assert refused(f"{part}.{mac[:-2]}").status == 400


def test_the_token_id_is_its_meaning_and_nonce_not_its_text():
    token = issued(nonce="n-1")
    claims = tokens.verify(KEY, token, NOW)
    again = tokens.verify(KEY, issued(nonce="n-1"), NOW)  # the same claims issued again: the same id
    assert claims.token_id == again.token_id
    assert claims.token_id != tokens.verify(KEY, issued(nonce="n-2"), NOW).token_id
    assert claims.token_id != tokens.verify(KEY, issued(nonce="n-1", action="reject"), NOW).token_id
    assert token not in claims.token_id and claims.token_id != tokens.legacy_id(token)
    assert len(claims.token_id) == 64
