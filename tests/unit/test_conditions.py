"""CEL conditions: checked when compiled (parse, names, required metrics), evaluated to a boolean or
a ConditionError, never anything else."""

from __future__ import annotations

import pytest

from shared.workflow.conditions import (
    CARRY_FORWARD_ROOTS,
    SUBMISSION_ROOTS,
    Condition,
    ConditionError,
    compile_condition,
)

METRICS = {"accuracy", "recall"}
CONTEXT = {
    "model": "fraud-detector", "version": "1.4.0", "submitter": "carol", "data_version": "2026-11-01",
    "code_commit": "3f2c9ab", "training_run_id": "run-7",
    "metrics": {"accuracy": 0.93, "recall": 0.8},
    "group_metrics": {"group_a": {"selection_rate": 0.3}, "group_b": {"selection_rate": 0.27}},
    "checks": {"integrity": {"passed": True, "measured": "ab", "threshold": "ab"},
               "metric:accuracy": {"passed": True, "measured": 0.93, "threshold": 0.8}},
    "production": {"version": "1.3.0", "data_version": "2026-10-01", "code_commit": "3f2c9ab",
                   "artifact_sha256": "cd", "metrics": {"accuracy": 0.925}},
}


def compiled(expression: str, roots=CARRY_FORWARD_ROOTS, metrics=METRICS) -> Condition:
    return compile_condition(expression, roots, metrics)


def refused(expression: str, roots=SUBMISSION_ROOTS, metrics=METRICS) -> str:
    with pytest.raises(ConditionError) as caught:
        compile_condition(expression, roots, metrics)
    return str(caught.value)


@pytest.mark.parametrize(("expression", "expected"), [
    ("metrics.accuracy < 0.9", False),
    ("metrics.accuracy >= 0.9 && metrics.recall > 0.75", True),
    ('metrics["recall"] == 0.8', True),
    ('model.startsWith("fraud-") && submitter != "pipeline"', True),
    ("code_commit == production.code_commit && metrics.accuracy >= production.metrics.accuracy - 0.01", True),
    ("version != production.version", True),
    ("checks.integrity.passed", True),
    ('checks["metric:accuracy"].measured > 0.9', True),
    ("group_metrics.all(g, group_metrics[g].selection_rate > 0.25)", True),
    ("size(group_metrics) >= 3", False),
    ("has(group_metrics.group_c)", False),
])
def test_evaluates_to_a_boolean(expression, expected):
    assert compiled(expression)(CONTEXT) is expected


def test_a_condition_that_does_not_parse_names_line_and_column():
    assert refused("metrics.accuracy < < 0.9") == (
        "'metrics.accuracy < < 0.9' does not parse at line 1, column 20: check the operators and parentheses")
    assert "does not parse at line 2, column 6" in refused("metrics.accuracy < 0.9 &&\n foo <")
    assert "does not parse at line 1, column 18" in refused("metrics.accuracy = 0.9")


@pytest.mark.parametrize(("expression", "name", "column"), [
    ("team == 'risk'", "'team'", 1),
    ("metrics.accuracy < 0.9 || owner.name == 'x'", "'owner'", 27),
])
def test_a_name_the_submission_does_not_have(expression, name, column):
    message = refused(expression)
    assert f"names {name} at column {column}, which a submission does not have; use one of: " in message
    assert ", ".join(sorted(SUBMISSION_ROOTS)) in message


@pytest.mark.parametrize("expression", ["metrics.f1 > 0.5", 'metrics["f1"] > 0.5', "has(metrics.f1)"])
def test_a_metric_the_checks_step_does_not_require(expression):
    message = refused(expression)
    assert "names metrics.f1" in message
    assert ("which the checks step does not require (it requires: accuracy, recall); add it to the "
            "checks step's inputs.min or inputs.max, or fix the name") in message


def test_no_required_metric_says_none():
    assert "(it requires: none)" in refused("metrics.accuracy > 0.5", metrics=set())


def test_production_only_where_allowed_and_only_its_fields():
    assert "names 'production' at column 1, which a submission does not have" in refused(
        "production.version == version")
    assert "names production.owner at column 1; production has: artifact_sha256, code_commit, " \
           "data_version, metrics, version" in refused("production.owner == submitter", CARRY_FORWARD_ROOTS)


def test_macro_variables_are_not_references():
    assert compiled("checks.exists(c, checks[c].passed == false)")(CONTEXT) is False
    assert compiled("group_metrics.exists_one(g, g == 'group_a')")(CONTEXT) is True


def test_a_metric_indexed_by_a_macro_variable_is_not_a_metric_named_after_the_variable():
    """`metrics[m]` with `m` bound by a macro names no metric: only a string-literal index does."""
    assert compiled("metrics.exists(m, metrics[m] < 0.5)")(CONTEXT) is False


@pytest.mark.parametrize(("expression", "fragment"), [
    ("group_metrics.group_c.selection_rate < 0.3", "could not be evaluated"),
    ("int(submitter) > 3", "could not be evaluated"),
    ("metrics.accuracy", "gave DoubleType(0.93), not true or false"),
    ("version", "not true or false"),
])
def test_an_evaluation_that_errs_or_is_not_boolean_raises(expression, fragment):
    condition = compiled(expression)
    with pytest.raises(ConditionError) as caught:
        condition(CONTEXT)
    assert str(caught.value).startswith(repr(expression))
    assert fragment in str(caught.value)


def test_a_missing_production_metric_raises_rather_than_deciding():
    condition = compiled("metrics.recall >= production.metrics.recall")
    with pytest.raises(ConditionError, match="could not be evaluated"):
        condition(CONTEXT)
