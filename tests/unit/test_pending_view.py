"""`signoff pending` prints one line per review a person can act on: id, model, version, age,
deadline (or how overdue), votes so far and the quorum."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from signoff.pending_view import row, span

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def review(**over: object) -> dict:
    return {"submission_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "model": "churn-model", "version": "1.0.0",
            "requested_at": (NOW - timedelta(minutes=12)).isoformat(),
            "deadline": (NOW + timedelta(hours=23, minutes=48)).isoformat(), "quorum": 2,
            "votes": [{"approver": "bob", "decision": "approve"}], **over}


def test_a_row_says_what_to_act_on():
    assert row(review(), NOW) == ("3fa85f64-5717-4562-b3fc-2c963f66afa6  churn-model 1.0.0  asked 12m ago  "
                                  "due in 23h48m  votes: bob approve (quorum 2)")


def test_an_overdue_review_without_votes_says_so():
    line = row(review(deadline=(NOW - timedelta(days=2, hours=3)).isoformat(), votes=[]), NOW)
    assert "overdue by 2d03h" in line and "votes: none (quorum 2)" in line


def test_spans_read_as_a_person_reads_them():
    assert [span(timedelta(seconds=s)) for s in (0, 45, 60, 3600 + 5 * 60, 86400 * 3 + 3600)] == [
        "0s", "45s", "1m", "1h05m", "3d01h"]
    assert span(timedelta(seconds=-5)) == "0s"
