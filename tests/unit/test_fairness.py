"""Fairness checks: equalized odds from reported rates, and figures recomputed from an evaluation file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_ratio, equalized_odds_difference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.validator import checks, fairness
from services.validator.fairness import EQUALIZED_ODDS, EQUALIZED_ODDS_EVALUATED, EVALUATION, PARITY_EVALUATED

HEADER = "label,prediction,group"


def rates(**groups: tuple[float, float]) -> dict[str, dict[str, float]]:
    return {g: {"tpr": tpr, "fpr": fpr} for g, (tpr, fpr) in groups.items()}


def rows(group: str, tn: int = 0, fp: int = 0, fn: int = 0, tp: int = 0) -> list[tuple[int, int, str]]:
    """(label, prediction, group) rows with the given confusion cells."""
    return [(0, 0, group)] * tn + [(0, 1, group)] * fp + [(1, 0, group)] * fn + [(1, 1, group)] * tp


def write(tmp_path: Path, data: list[tuple[int, int, str]], header: str = HEADER) -> Path:
    path = tmp_path / "evaluation.csv"
    path.write_text("\n".join([header, *(f"{y},{p},{g}" for y, p, g in data)]) + "\n")
    return path


def fairlearn_on(data: list[tuple[int, int, str]]) -> tuple[float, float]:
    """fairlearn on the raw rows, one by one: what the compressed computation must reproduce."""
    y, p, g = (np.array(col) for col in zip(*data, strict=True))
    return (demographic_parity_ratio(y, p, sensitive_features=g),
            equalized_odds_difference(y, p, sensitive_features=g))


# Group a selects 3 of 10 (TPR 2/5, FPR 1/5), group b 2 of 10 (TPR 2/5, FPR 0/5):
# parity ratio 0.2 / 0.3 = 0.666667, equalized odds difference max(0, 0.2) = 0.2, from FPR.
UNFAIR = rows("a", tn=4, fp=1, fn=3, tp=2) + rows("b", tn=5, fp=0, fn=3, tp=2)
FAIR = rows("a", tn=4, fp=1, fn=3, tp=2) + rows("b", tn=4, fp=1, fn=3, tp=2)


# --- equalized odds from reported rates ---

def test_equalized_odds_passes_within_the_maximum():
    r = fairness.equalized_odds(rates(a=(0.80, 0.10), b=(0.75, 0.12)), 0.1)
    assert (r.name, r.passed, r.measured, r.threshold) == (EQUALIZED_ODDS, True, 0.05, 0.1)
    assert "tpr: b 0.750 vs a 0.800" in r.message


def test_equalized_odds_fails_naming_the_rate_and_groups_of_the_gap():
    r = fairness.equalized_odds(rates(a=(0.80, 0.10), b=(0.78, 0.30), c=(0.79, 0.15)), 0.1)
    assert not r.passed and r.blocking
    assert r.measured == 0.2
    assert "equalized odds difference 0.200 (fpr: a 0.100 vs b 0.300), required <= 0.1" == r.message


def test_equalized_odds_exactly_on_the_maximum_passes():
    # 0.4 - 0.3 is 0.10000000000000003 in floating point.
    r = fairness.equalized_odds(rates(a=(0.4, 0.0), b=(0.3, 0.0)), 0.1)
    assert r.passed and r.measured == 0.1


@pytest.mark.parametrize(("group_metrics", "says"), [
    ({}, "needs at least two groups, got 0 (none)"),
    (rates(a=(0.8, 0.1)), "needs at least two groups, got 1 (a)"),
    ({"a": {"tpr": 0.8, "fpr": 0.1}, "b": {"fpr": 0.1}}, "group 'b' lacks 'tpr'"),
    ({"a": {"tpr": 0.8, "fpr": 0.1}, "b": {"tpr": 0.8, "selection_rate": 0.3}}, "group 'b' lacks 'fpr'"),
    (rates(a=(0.8, 0.1), b=(1.2, 0.1)), "group 'b' has tpr = 1.2, not a rate in [0, 1]"),
    (rates(a=(0.8, -0.1), b=(0.8, 0.1)), "group 'a' has fpr = -0.1, not a rate in [0, 1]"),
    (rates(a=(0.8, 0.1), b=(math.nan, 0.1)), "group 'b' has tpr = nan, not a rate in [0, 1]"),
    (rates(a=(0.8, math.inf), b=(0.8, 0.1)), "group 'a' has fpr = inf, not a rate in [0, 1]"),
    ({"a": {"tpr": "0.8", "fpr": 0.1}, "b": {"tpr": 0.8, "fpr": 0.1}}, "group 'a' has tpr = '0.8'"),
])
def test_equalized_odds_bad_input_fails_saying_what_to_report(group_metrics, says):
    r = fairness.equalized_odds(group_metrics, 0.1)
    assert not r.passed and r.measured is None and r.threshold == 0.1
    assert says in r.message
    assert "report tpr and fpr (each in [0, 1]) for at least two groups" in r.message


# --- figures recomputed from an evaluation file ---

def test_unfair_file_fails_with_the_hand_computed_figures(tmp_path):
    parity, odds = fairness.from_evaluation(write(tmp_path, UNFAIR), 0.8, 0.1)
    expected_ratio, expected_odds = fairlearn_on(UNFAIR)
    assert (parity.name, parity.passed, parity.threshold) == (PARITY_EVALUATED, False, 0.8)
    assert parity.measured == 0.666667 == round(expected_ratio, 6)
    assert parity.message == ("parity ratio 0.667 over 20 rows, 2 groups (b 0.200 / a 0.300), "
                              "required >= 0.8")
    assert (odds.name, odds.passed, odds.threshold) == (EQUALIZED_ODDS_EVALUATED, False, 0.1)
    assert odds.measured == 0.2 == round(expected_odds, 6)
    assert odds.message == ("equalized odds difference 0.200 over 20 rows, 2 groups "
                            "(fpr: b 0.000 vs a 0.200), required <= 0.1")


def test_fair_file_passes(tmp_path):
    results = fairness.from_evaluation(write(tmp_path, FAIR), 0.8, 0.1)
    assert [(r.name, r.passed, r.measured) for r in results] == [
        (PARITY_EVALUATED, True, 1.0), (EQUALIZED_ODDS_EVALUATED, True, 0.0)]


def test_no_maximum_means_no_equalized_odds_result(tmp_path):
    results = fairness.from_evaluation(write(tmp_path, UNFAIR), 0.6, None)
    assert [(r.name, r.passed) for r in results] == [(PARITY_EVALUATED, True)]


def test_evaluated_figures_agree_with_the_reported_rate_checks(tmp_path):
    parity, odds = fairness.from_evaluation(write(tmp_path, UNFAIR), 0.8, 0.1)
    assert checks.parity_ratio({"a": {"selection_rate": 0.3}, "b": {"selection_rate": 0.2}}, 0.8).measured \
        == parity.measured
    assert fairness.equalized_odds(rates(a=(0.4, 0.2), b=(0.4, 0.0)), 0.1).measured == odds.measured


def test_nobody_selected_is_parity_as_in_the_reported_check(tmp_path):
    data = rows("a", tn=3, fn=2) + rows("b", tn=1, fn=4)
    parity, odds = fairness.from_evaluation(write(tmp_path, data), 0.8, 0.1)
    assert (parity.passed, parity.measured) == (True, 1.0)
    assert (odds.passed, odds.measured) == (True, 0.0)


def test_header_may_reorder_pad_and_add_columns_and_carry_a_bom(tmp_path):
    lines = ["\ufeff group , id, prediction ,label"] + [f"{g},{i},{p},{y}" for i, (y, p, g) in enumerate(UNFAIR)]
    path = tmp_path / "evaluation.csv"
    path.write_text("\n".join(lines[:5] + [""] + lines[5:]) + "\n", encoding="utf-8")
    parity, _ = fairness.from_evaluation(path, 0.8, 0.1)
    assert parity.measured == 0.666667 and "20 rows" in parity.message


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.sampled_from("abc")),
                min_size=2, max_size=300))
def test_figures_equal_fairlearn_on_the_raw_rows(tmp_path, data):
    groups = {g for _, _, g in data}
    both_labels = all({y for y, _, h in data if h == g} == {0, 1} for g in groups)
    results = fairness.from_evaluation(write(tmp_path, data), 0.8, 0.1)
    if len(groups) < 2:
        assert [r.name for r in results] == [EVALUATION]
        return
    expected_ratio, expected_odds = fairlearn_on(data)
    assert results[0].measured == (1.0 if math.isnan(expected_ratio) else round(expected_ratio, 6))
    if both_labels:
        assert results[1].measured == round(expected_odds, 6)
    else:
        assert not results[1].passed and results[1].measured is None


@pytest.mark.parametrize(("label", "says"), [(1, "group 'b' has no rows with label 1"),
                                             (0, "group 'b' has no rows with label 0")])
def test_a_group_with_one_label_only_leaves_equalized_odds_undefined(tmp_path, label, says):
    data = rows("a", tn=2, fp=1, fn=1, tp=2) + [(1 - label, 1, "b"), (1 - label, 0, "b")]
    parity, odds = fairness.from_evaluation(write(tmp_path, data), 0.8, 0.1)
    assert parity.passed and parity.measured == 1.0
    assert (odds.name, odds.passed, odds.measured) == (EQUALIZED_ODDS_EVALUATED, False, None)
    assert says in odds.message and "evaluate on data with both labels in every group" in odds.message


BAD_FILES = [
    (b"", "evaluation file is empty", "header naming label, prediction and group"),
    (b"label,prediction,group\n", "header but no rows", "add one row per example"),
    (b"label,group\n1,a\n", "lacks column prediction in its header (line 1, 2 columns)", "header naming label"),
    (b"label,prediction,group\n1,1,a\n2,0,b\n", "label at line 3 (column 1) is not 0 or 1", "label must be 0 or 1"),
    (b"label,prediction,group\n1,yes,a\n", "prediction at line 2 (column 2) is not 0 or 1",
     "prediction must be 0 or 1"),
    (b"label,prediction,group\n1.0,1,a\n", "label at line 2 (column 1) is not 0 or 1", "must be 0 or 1"),
    (b"label,prediction,group\n1,1,a\n0,0,a\n", "one group only ('a')", "at least two values"),
    (b"label,prediction,group\n1,1,a\n0,0\n", "line 3 has 2 fields, the header has 3", "quote values"),
    (b"label,prediction,group\n1,1,\n", "group is empty at line 2", "needs its sensitive group"),
    (b"label,prediction,group\n1,1,caf\xe9\n", "evaluation file is not UTF-8 text", "must be UTF-8 CSV"),
    (b"label,prediction,group\n1,1," + b"x" * 200_000, "not valid CSV at line 2: field larger",
     "must be UTF-8 CSV"),
]


@pytest.mark.parametrize(("content", "says", "fix"), BAD_FILES)
def test_bad_file_fails_once_naming_problem_and_fix(tmp_path, content, says, fix):
    path = tmp_path / "evaluation.csv"
    path.write_bytes(content)
    assert_unusable(fairness.from_evaluation(path, 0.8, 0.1), says, fix)


def test_missing_file_fails(tmp_path):
    assert_unusable(fairness.from_evaluation(tmp_path / "nope.csv", 0.8, None),
                    "cannot read evaluation file", "attach a readable file")


def test_directory_fails(tmp_path):
    assert_unusable(fairness.from_evaluation(tmp_path, 0.8, None),
                    "cannot read evaluation file", "attach a readable file")


@pytest.mark.parametrize(("cap", "value", "says", "fix"), [
    ("MAX_ROWS", 19, "more than 19 rows", "evaluate on a sample of at most 19"),
    ("MAX_BYTES", 100, "larger than 0 MiB", "evaluate on a sample"),
    ("MAX_GROUPS", 1, "more than 1 groups (line 12)", "sensitive attribute"),
    ("MAX_GROUP_CHARS", 0, "group at line 2 is longer than 0 characters", "short group name"),
])
def test_caps_bound_the_file(tmp_path, monkeypatch, cap, value, says, fix):
    path = write(tmp_path, UNFAIR)
    assert fairness.from_evaluation(path, 0.8, 0.1)[0].name == PARITY_EVALUATED  # within the defaults
    monkeypatch.setattr(fairness, cap, value)
    assert_unusable(fairness.from_evaluation(path, 0.8, 0.1), says, fix)


def assert_unusable(results, says: str, fix: str) -> None:
    assert len(results) == 1
    r = results[0]
    assert (r.name, r.passed, r.blocking, r.measured) == (EVALUATION, False, True, None)
    assert says in r.message and fix in r.message, r.message
