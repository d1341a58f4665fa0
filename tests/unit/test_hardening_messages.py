"""No untrusted content in messages (issue 16, item 5), written as the attacks: an evaluation file
whose first line is markup, values, group names, zip members, pickle globals and tensor names
crafted as markup. A check's message reports the problem and where it is, never the submitted
content; what a submission does put in front of a reviewer (its metric names, texts) is escaped in
Slack's mrkdwn and in HTML mail and pages."""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.review_notifier.channels.email import messages
from services.review_notifier.channels.slack import blocks
from services.review_notifier.reviews import Review
from services.validator import checks, fairness, security
from shared.events import CheckResult
from tests.unit import factories as f

MARKUP = "<https://evil.example|Approved by security> <!channel> &amp; <b>ok</b>"
# What must never reach a check's message: the markup, or any telling piece of it.
LEAKS = ("evil.example", "<!channel>", "<b>", "Approved by security", "<https")


def clean(message: str) -> None:
    for leak in LEAKS:
        assert leak not in message, (leak, message)


def evaluation(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "evaluation.csv"
    path.write_text(text)
    return path


# --- the evaluation file ----------------------------------------------------------------------------

def test_an_evaluation_file_whose_first_line_is_markup_is_reported_by_position(tmp_path):
    [result] = fairness.from_evaluation(evaluation(tmp_path, f"{MARKUP},x\n1,1\n"), 0.8, None)
    assert not result.passed and result.name == fairness.EVALUATION
    assert "lacks column label, prediction, group in its header (line 1, 2 columns)" in result.message
    clean(result.message)


@pytest.mark.parametrize("column", ["label", "prediction"])
def test_a_bad_value_is_reported_by_line_and_column(tmp_path, column):
    row = {"label": "1", "prediction": "0", "group": "a"}
    row[column] = MARKUP.replace(",", "")
    text = "label,prediction,group\n0,0,b\n" + ",".join(row.values()) + "\n"
    [result] = fairness.from_evaluation(evaluation(tmp_path, text), 0.8, None)
    column_number = ("label", "prediction").index(column) + 1
    assert f"{column} at line 3 (column {column_number}) is not 0 or 1" in result.message
    clean(result.message)


def test_group_names_that_are_markup_are_named_by_where_they_first_appear(tmp_path):
    evil = MARKUP.replace(",", "")
    rows = ["label,prediction,group", "1,1,a", "0,0,a", "1,1," + evil, "0,1," + evil]
    results = fairness.from_evaluation(evaluation(tmp_path, "\n".join(rows) + "\n"), 0.8, 0.1)
    assert [r.name for r in results] == [fairness.PARITY_EVALUATED, fairness.EQUALIZED_ODDS_EVALUATED]
    assert "(a 0.500 / (group first on line 4) 1.000)" in results[0].message
    for r in results:
        clean(r.message)


def test_a_file_with_one_markup_group_says_so_without_it(tmp_path):
    [result] = fairness.from_evaluation(evaluation(tmp_path, f"label,prediction,group\n1,1,<{MARKUP}>\n"), 0.8, None)
    assert "one group only ('(group first on line 2)')" in result.message
    clean(result.message)


def test_plain_group_names_are_still_shown(tmp_path):
    rows = ["label,prediction,group", "1,1,age 18-25", "0,0,age 18-25", "1,1,age 65+", "0,1,age 65+"]
    [parity] = fairness.from_evaluation(evaluation(tmp_path, "\n".join(rows) + "\n"), 0.8, None)
    assert "age 18-25" in parity.message and "age 65+" in parity.message


def test_plain_name_and_what_stands_in_for_others():
    assert checks.plain_name("group_a", "x") == "group_a"
    for bad in (MARKUP, "a" * 65, "a\nb", "*bold*", "`code`", "name'quote", ""):
        assert checks.plain_name(bad, "(elsewhere)") == "(elsewhere)"


# --- the security scan ------------------------------------------------------------------------------

def scan(tmp_path: Path, name: str, data: bytes) -> CheckResult:
    path = tmp_path / name
    path.write_bytes(data)
    return security.scan(path, allowed_globals=())


def test_a_zip_member_whose_name_is_markup_is_named_by_number(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/ok.txt", b"x")
        archive.writestr(f"{MARKUP}.pkl", pickle.dumps(Path("a"), protocol=2))
    result = scan(tmp_path, "model.zip", buffer.getvalue())
    assert not result.passed and "zip member 2: imports pathlib.PosixPath" in result.message
    clean(result.message)


def test_a_pickle_global_that_is_not_an_identifier_is_not_repeated(tmp_path):
    evil = MARKUP.replace("\n", "")
    data = b"\x80\x02c" + evil.encode() + b"\nname\n)R."  # GLOBAL '<markup> name', then REDUCE
    result = scan(tmp_path, "model.pkl", data)
    assert not result.passed and "imports a global whose name is not a Python identifier" in result.message
    clean(result.message)


def test_a_tensor_name_that_is_markup_is_named_by_number(tmp_path):
    header = json.dumps({"ok": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                         MARKUP: {"dtype": "F32"}}).encode()
    result = scan(tmp_path, "model.safetensors", struct.pack("<Q", len(header)) + header + b"\x00" * 4)
    assert not result.passed and "tensor number 2 in the header needs dtype" in result.message
    clean(result.message)


def test_a_corrupt_zip_is_described_in_our_words(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(MARKUP, b"x" * 100)
    data = bytearray(buffer.getvalue())
    data[data.index(b"x" * 100)] = ord("y")  # a CRC error, whose text quotes the member's name
    result = scan(tmp_path, "model.zip", bytes(data))
    assert not result.passed
    clean(result.message)


# --- what a reviewer is shown -------------------------------------------------------------------

def review_with(reason: str = MARKUP, **submission: object) -> Review:
    cause = f.submitted(f.submission(**submission))
    evil = CheckResult(name="fairness:evaluation", passed=False, message=MARKUP)
    request = f.review_requested(cause, results=(evil,), reason=reason,
                                 occurred_at=datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    return Review(request=request)


def mrkdwn_texts(message: dict) -> list[str]:
    """Every mrkdwn string of a Block Kit message, and the message's own `text` (mrkdwn too)."""
    found = [message["text"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message["blocks"])
    return found


def test_slack_escapes_submitted_text_everywhere_it_is_mrkdwn():
    review = review_with(reason="pipeline <!here>", metrics={MARKUP[:60]: 0.9, "accuracy": 0.95})
    texts = mrkdwn_texts(blocks.message(review))
    assert any("&lt;https://evil.example|Approved by security&gt;" in t for t in texts)
    assert any("`&lt;https://evil.example|Approved by security&gt; &lt;!channel&gt;" in t for t in texts)  # metric
    for text in texts:
        assert "<https" not in text and "<!channel>" not in text and "<!here>" not in text, text


def test_the_notification_text_of_slack_is_escaped_too():
    """A break-glass justification is typed by a voter and shown in the message's `text`."""
    review = review_with()
    decision = f.decided(outcome="approved", reason=MARKUP, break_glass=True, mode="human")
    message = blocks.message(review.model_copy(update={"decision": decision}))
    assert "APPROVED BY BREAK-GLASS" in message["text"] and "&lt;!channel&gt;" in message["text"]
    assert "<!channel>" not in message["text"]


def test_html_mail_and_pages_escape_submitted_text():
    review = review_with(reason="<script>alert(1)</script>")
    mail = messages.review_mail(review, "signoff@example.com", "bob@example.com", "bob", "https://a", "https://r")
    html = next(part for part in mail.walk() if part.get_content_type() == "text/html").get_content()
    page = messages.confirm_page(review, "bob", "approve", "tok")
    for shown in (html, page):
        assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert "<https://evil.example" not in html and "&lt;https://evil.example" in html  # a check's message
