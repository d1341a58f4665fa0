"""Slack request signing, against the example Slack publishes (../shared/vectors/slack-signing.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.review_notifier.channels.slack.signing import SignatureError, sign, verify

VECTOR = json.loads((Path(__file__).resolve().parents[3] / "shared" / "vectors" / "slack-signing.json").read_text())
SECRET, TS, BODY = VECTOR["signing_secret"], VECTOR["timestamp"], VECTOR["raw_body"].encode()
EXPECTED = VECTOR["expected_signature"]
AT_THE_TIME = int(TS) + 1


def test_the_published_vector_signs_to_the_expected_signature():
    assert sign(SECRET, TS, BODY) == EXPECTED


def test_the_published_vector_verifies_at_its_own_time():
    verify(SECRET, TS, EXPECTED, BODY, now=AT_THE_TIME)


def test_the_published_vector_is_refused_today_as_stale():
    import time
    with pytest.raises(SignatureError, match="more than 5 minutes"):
        verify(SECRET, TS, EXPECTED, BODY, now=time.time())


@pytest.mark.parametrize("index", [0, len(BODY) // 2, len(BODY) - 1])
def test_a_one_byte_change_to_the_body_is_refused(index):
    altered = bytearray(BODY)
    altered[index] ^= 0x01
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, TS, EXPECTED, bytes(altered), now=AT_THE_TIME)


def test_six_minutes_old_is_refused_and_four_and_a_half_accepted():
    with pytest.raises(SignatureError, match="more than 5 minutes"):
        verify(SECRET, TS, EXPECTED, BODY, now=int(TS) + 6 * 60)
    verify(SECRET, TS, EXPECTED, BODY, now=int(TS) + 270)
    with pytest.raises(SignatureError):  # from the future, as far: refused too
        verify(SECRET, TS, EXPECTED, BODY, now=int(TS) - 6 * 60)


@pytest.mark.parametrize(("timestamp", "signature", "says"), [
    (None, EXPECTED, "missing"), (TS, None, "missing"), ("", EXPECTED, "missing"),
    ("12ab", EXPECTED, "Unix time"), (TS, EXPECTED.replace("v0=", "v1="), "does not match"),
    (TS, EXPECTED[:-1], "does not match"), (TS, "v0=" + "0" * 64, "does not match"),
])
def test_malformed_headers_are_refused(timestamp, signature, says):
    with pytest.raises(SignatureError, match=says):
        verify(SECRET, timestamp, signature, BODY, now=AT_THE_TIME)


def test_another_secret_or_timestamp_does_not_verify():
    with pytest.raises(SignatureError):
        verify(SECRET + "x", TS, EXPECTED, BODY, now=AT_THE_TIME)
    with pytest.raises(SignatureError):
        verify(SECRET, str(int(TS) + 1), EXPECTED, BODY, now=AT_THE_TIME)


def test_errors_never_contain_the_secret():
    with pytest.raises(SignatureError) as info:
        verify(SECRET, TS, "v0=bad", BODY, now=AT_THE_TIME)
    assert SECRET not in str(info.value)


@given(body=st.binary(max_size=300), ts=st.integers(1_500_000_000, 2_000_000_000))
def test_what_is_signed_verifies(body, ts):
    verify("s3cret", str(ts), sign("s3cret", str(ts), body), body, now=ts)
